"""Installing: the clients alone from this checkout, the server's needs and the tools apart.

``pip install '.[client]'`` gives both clients without Django or Twisted;
``requirements.txt`` is what running needs, ``requirements-dev.txt`` the tools, pinned.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tomllib
import venv

import pytest

from tests.live_server import PROJECT_DIR

PYPROJECT = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))
TOOLS = (
    "pytest",
    "pytest-django",
    "pytest-asyncio",
    "pytest-timeout",
    "hypothesis",
    "ruff",
    "mypy",
)


def requirement_lines(name: str) -> dict[str, str]:
    """``{distribution name (lower case): requirement}`` of a requirements file."""
    lines = {}
    for raw in (PROJECT_DIR / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines[re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0].lower()] = line
    return lines


def test_the_client_extra_matches_requirements_txt():
    running = requirement_lines("requirements.txt")
    client = PYPROJECT["project"]["optional-dependencies"]["client"]
    for requirement in [*PYPROJECT["project"]["dependencies"], *client]:
        name = re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()
        assert running[name] == requirement, f"{name}: pyproject and requirements.txt differ"


def test_the_package_holds_the_protocol_core_and_the_clients_only():
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(found) == ["chatproto", "chatproto.*", "tk_client", "tk_client.*"]
    assert not {"django", "twisted", "channels", "daphne"} & {
        name.split(">")[0].split("=")[0].lower() for name in PYPROJECT["project"]["dependencies"]
    }


@pytest.mark.parametrize("script", ["chat-desktop", "chat-cli"])
def test_each_console_script_names_a_main_function(script):
    module, function = PYPROJECT["project"]["scripts"][script].split(":")
    path = PROJECT_DIR / (module.replace(".", "/") + ".py")
    names = {
        node.name
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef)
    }
    assert function in names


def test_running_needs_no_tool_and_every_tool_is_pinned():
    running, dev = requirement_lines("requirements.txt"), requirement_lines("requirements-dev.txt")
    assert not set(TOOLS) & set(running)
    for tool in TOOLS:
        assert re.fullmatch(rf"{re.escape(tool)}==[0-9][0-9.]*", dev[tool]), dev[tool]
    assert "-r requirements.txt" in (PROJECT_DIR / "requirements-dev.txt").read_text()


def test_the_slow_marker_is_registered():
    markers = PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]
    assert any(marker.startswith("slow:") for marker in markers)


@pytest.mark.slow
def test_the_clients_install_alone_without_the_server_stack(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_DIR / name, source / name)
    for package in ("chatproto", "tk_client"):
        shutil.copytree(
            PROJECT_DIR / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python, bin_dir = target / "bin" / "python", target / "bin"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", f"{source}[client]"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    for server_module in ("django", "twisted", "channels", "daphne"):
        result = subprocess.run([python, "-c", f"import {server_module}"], capture_output=True)
        assert result.returncode != 0, f"{server_module} was installed with the clients"
    subprocess.run([python, "-c", "import websocket, cryptography, tkinterdnd2"], check=True)
    result = subprocess.run(
        [bin_dir / "chat-cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--server" in result.stdout, result.stderr
    assert (bin_dir / "chat-desktop").exists()
