"""The client's layers: only the views and their wiring touch tkinter, and nothing of the
server (Django, Channels, daphne, Twisted, the apps, ``chatsite``) is imported at all, so
``pip install .[client]`` gives a working client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.import_rules import RULES, package_sources

PACKAGE = Path(__file__).resolve().parents[2] / "tk_client"
# Every module but the desktop's entry points: the logic, the network, the terminal client.
WINDOW_MODULES = frozenset({"gui", "__main__"})
TK_FREE = sorted(
    path.relative_to(PACKAGE).with_suffix("").as_posix()
    for path in PACKAGE.rglob("*.py")
    if "views" not in path.parts and path.stem not in WINDOW_MODULES
)


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


# --- the whole package: what the clients may import at all (tests/import_rules.py) ----------

CLIENT_RULES = [rule for rule in RULES if rule.package == "tk_client"]


@pytest.mark.parametrize("rule", CLIENT_RULES, ids=["no-server", "tk-only-in-views"])
def test_the_client_package_keeps_its_layering(rule):
    assert len(package_sources("tk_client")) >= 20
    assert rule.check() == {}, rule.why


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("tk_client.session", "import django", "django"),
        ("tk_client.cli", "from channels.layers import get_channel_layer", "channels"),
        ("tk_client.transport", "import daphne.server", "daphne"),
        ("tk_client.session", "from twisted.internet import reactor", "twisted"),
        ("tk_client.controller", "from chat import services", "chat"),
        ("tk_client.config", "def f():\n    from accounts.models import User", "accounts"),
        ("tk_client.cli", "import chatsite.env", "chatsite"),
        ("tk_client.controller", "import tkinter as tk", "tkinter"),
        ("tk_client.model", "from tkinter import ttk", "tkinter"),
        ("tk_client.__init__", "import tkinterdnd2", "tkinterdnd2"),
    ],
)
def test_each_client_rule_fails_on_a_forbidden_import(module, source, expected):
    found = {}
    for rule in CLIENT_RULES:
        found.update(rule.violations({module: source}))
    assert {name.split(".")[0] for name in found[module]} == {expected}


def test_the_views_and_gui_may_import_tkinter_but_not_the_server():
    tk_rule, server_rule = (
        next(rule for rule in CLIENT_RULES if "tkinter" in rule.forbidden),
        next(rule for rule in CLIENT_RULES if "django" in rule.forbidden),
    )
    views = {"tk_client.views.sidebar": "import tkinter as tk", "tk_client.gui": "import tkinter"}
    assert tk_rule.violations(views) == {}
    assert server_rule.violations({"tk_client.views.sidebar": "import django"}) != {}
