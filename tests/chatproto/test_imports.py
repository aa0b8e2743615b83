"""The layers hold: chatproto stays sans-I/O, and the Django apps import downwards only.

chatproto imports only the standard library and ``cryptography``; ``accounts`` never
imports ``chat`` or ``chatsite``; ``chat`` never imports ``chatsite``
(:mod:`tests.import_rules` has the rules; the client's are in
``tests/tk_client/test_layering.py``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import chatproto
from tests import import_rules
from tests.import_rules import RULES, Rule, imported_modules

PACKAGE = Path(chatproto.__file__).resolve().parent
FORBIDDEN = frozenset(
    {
        "django",
        "asyncio",
        "socket",
        "threading",
        "websocket",
        "websockets",
        "tkinter",
        "channels",
        "daphne",
        "twisted",
        "selectors",
        "ssl",
        "subprocess",
        "urllib",
        "http",
        "requests",
    }
)


def forbidden_imports(source: str, module: str) -> set[str]:
    """The imports of ``source`` whose top-level package is forbidden in chatproto."""
    return {name for name in imported_modules(source, module) if name.split(".")[0] in FORBIDDEN}


def package_sources() -> dict[str, str]:
    return import_rules.package_sources("chatproto", PACKAGE.parent)


def test_the_checker_sees_every_module():
    modules = set(package_sources())
    assert {"chatproto.connection", "chatproto.crypto_utils", "chatproto.records"} <= modules
    assert len(modules) >= 10


def test_chatproto_imports_nothing_forbidden():
    found = {
        module: sorted(forbidden_imports(source, module))
        for module, source in package_sources().items()
    }
    assert {module: names for module, names in found.items() if names} == {}


def test_chatproto_imports_only_stdlib_cryptography_and_itself():
    allowed_roots = set(sys.stdlib_module_names) | {"cryptography", "chatproto", "__future__"}
    for module, source in package_sources().items():
        roots = {name.split(".")[0] for name in imported_modules(source, module)}
        assert roots <= allowed_roots, (module, roots - allowed_roots)


# Outside crypto_utils, cryptography is imported for key classes in type hints only.
KEY_CLASSES = {
    "cryptography.hazmat.primitives.asymmetric.rsa": {"RSAPrivateKey", "RSAPublicKey"},
    "cryptography.hazmat.primitives.asymmetric.x25519": {"X25519PrivateKey"},
}


def test_only_crypto_utils_uses_cryptographic_primitives():
    for module, source in package_sources().items():
        if module == "chatproto.crypto_utils":
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("cryptography") for a in node.names), module
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "cryptography"
            ):
                names = {alias.name for alias in node.names}
                assert names <= KEY_CLASSES.get(node.module, set()), (module, node.module, names)


SYNTHETIC = """
import os
import asyncio
from socket import socket
import django.conf as settings
from http.client import HTTPConnection
from . import framing
from .records import RecordSealer

def later():
    import threading
    return __import__("ssl")
"""


def test_the_checker_reports_forbidden_imports_of_every_form():
    found = forbidden_imports(SYNTHETIC, "chatproto.example")
    assert {"asyncio", "socket", "django.conf", "http.client", "threading", "ssl"} <= found
    assert not {name for name in found if name.startswith(("os", "chatproto"))}


def test_the_checker_resolves_relative_imports():
    names = imported_modules(SYNTHETIC, "chatproto.example")
    assert {"chatproto", "chatproto.framing", "chatproto.records"} <= names
    assert imported_modules("from ..x import y", "a.b.c") >= {"a.x", "a.x.y"}


def test_the_checker_reports_nothing_for_clean_source():
    assert forbidden_imports("import os\nfrom . import records\n", "chatproto.x") == set()


# --- the Django apps -------------------------------------------------------------------------

APP_RULES = [rule for rule in RULES if rule.package in ("accounts", "chat")]


@pytest.mark.parametrize("rule", APP_RULES, ids=lambda rule: rule.package)
def test_the_apps_import_only_downwards(rule):
    assert len(import_rules.package_sources(rule.package)) >= 5
    assert rule.check() == {}, rule.why


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("accounts", "from chat import services", "chat"),
        ("accounts", "def action():\n    from chat.services import end_sessions_of", "chat"),
        ("accounts", "from chatsite.env import read", "chatsite"),
        ("chat", "from chatsite.env import read_or_create_secret", "chatsite"),
        ("chat", "import chatsite.settings", "chatsite"),
    ],
)
def test_each_app_rule_fails_on_a_forbidden_import(package, source, expected):
    (rule,) = [rule for rule in APP_RULES if rule.package == package]
    found = rule.violations({f"{package}.example": source})
    assert {name.split(".")[0] for name in found[f"{package}.example"]} == {expected}


def test_an_app_importing_a_lower_layer_passes():
    rules = {rule.package: rule for rule in APP_RULES}
    assert rules["accounts"].violations({"accounts.x": "from chatproto import messages"}) == {}
    assert rules["chat"].violations({"chat.x": "from accounts.signals import x"}) == {}
    assert Rule("chat", frozenset({"chatsite"})).violations({"chat.x": "from . import y"}) == {}
