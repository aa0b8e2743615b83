"""chatproto stays sans-I/O: it imports only the standard library and ``cryptography``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import chatproto

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


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module that ``source`` (the module ``module``) imports.

    Relative imports are resolved against ``module``; imports inside functions,
    ``if TYPE_CHECKING`` blocks and ``try`` blocks count like any other.
    """
    package = module.rsplit(".", 1)[0] if "." in module else module
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                prefix = f"{base}.{node.module}" if node.module else base
                # "from . import x" may import the submodule x
                names.update(f"{prefix}.{alias.name}" for alias in node.names)
                names.add(prefix)
            else:
                names.add(node.module or "")
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def forbidden_imports(source: str, module: str) -> set[str]:
    """The imports of ``source`` whose top-level package is forbidden in chatproto."""
    return {name for name in imported_modules(source, module) if name.split(".")[0] in FORBIDDEN}


def package_sources() -> dict[str, str]:
    sources = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        # a package's __init__ resolves "." to itself: give it a child name
        module = ".".join(parts) + (".__init__" if relative.name == "__init__" else "")
        sources[module] = path.read_text(encoding="utf-8")
    return sources


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
