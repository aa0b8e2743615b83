"""The logic/window split: only the views and their wiring may touch tkinter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tk_client"
TK_FREE = [
    "address",
    "cli",
    "completion",
    "config",
    "controller",
    "events",
    "known_servers",
    "model",
    "partials",
    "session",
    "transport",
]


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names.add("." * node.level + module)
    return names


@pytest.mark.parametrize("module", TK_FREE)
def test_logic_modules_do_not_import_tkinter_or_the_views(module):
    names = imported_names(PACKAGE / f"{module}.py")

    assert not {n for n in names if n.split(".")[0] in ("tkinter", "_tkinter", "idlelib")}
    assert not {n for n in names if n.lstrip(".").startswith(("views", "gui"))}


def test_views_do_no_networking():
    for path in (PACKAGE / "views").glob("*.py"):
        names = imported_names(path)
        assert not {n for n in names if n.split(".")[0] in ("socket", "websocket", "threading")}
        assert not {n for n in names if n.lstrip(".").startswith(("session", "transport"))}
