"""No mutable module-level state in the server's Django apps (``chat/``, ``accounts/``).

The server's runtime state (sessions, fan-out, transfers, counters, timers,
worker pools, the server key) has one owner per process, ``chat.runtime.ChatRuntime``,
made with the ASGI application; tests make a fresh one. A module global that
holds state instead survives from one test to the next and from one
application to another in the same process, which is what this test refuses.

It reads every module's AST (nothing is imported) and refuses, at module level:

- names bound to a mutable literal or comprehension (``{}``, ``[]``, ``{1}``...);
- names bound to a call, unless the call makes something known to be immutable
  (``frozenset(...)``, ``re.compile(...)``, ``logging.getLogger(...)``, a frozen
  dataclass defined in the module...);
- functions decorated with ``functools.cache``/``lru_cache`` (a cache is state);
- ``global`` statements anywhere.

Constants (ALL_CAPS names bound to immutable values: numbers, strings, tuples,
frozensets, compiled patterns) and loggers are allowed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chat", "accounts")

# Calls whose result cannot change after it is made.
IMMUTABLE_CALLS = frozenset(
    {
        "frozenset",
        "tuple",
        "str",
        "int",
        "float",
        "bool",
        "bytes",
        "re.compile",
        "logging.getLogger",
        "getLogger",
        "ParamSpec",
        "TypeVar",
        "contextvars.ContextVar",  # its value lives in the context, not in the module
        "ContextVar",
        "secrets.token_hex",
        "_after_commit",  # a plain function (chat.delivery)
        "Path",
        "staticmethod",
        "property",
        "RegexValidator",  # Django's validators are deconstructible configuration
        "Signal",  # Django's signals: wiring made once at import, as its model signals are
    }
)
CACHE_DECORATORS = frozenset({"cache", "lru_cache", "functools.cache", "functools.lru_cache"})


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def _frozen_classes(tree: ast.Module) -> set[str]:
    """Classes of the module that are frozen dataclasses, enums or NamedTuples."""
    frozen = set()
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            is_dataclass = isinstance(decorator, ast.Call) and _dotted(decorator).endswith(
                "dataclass"
            )
            if is_dataclass and any(
                k.arg == "frozen" and isinstance(k.value, ast.Constant) and k.value.value
                for k in decorator.keywords  # type: ignore[union-attr]  # the decorator is an ast.Call here
            ):
                frozen.add(node.name)
        if any(_dotted(base).endswith(("Enum", "NamedTuple")) for base in node.bases):
            frozen.add(node.name)
    return frozen


def _mutable(value: ast.expr | None, frozen: set[str]) -> str | None:
    """Why ``value`` makes a mutable object, or None when it cannot."""
    if value is None:
        return None
    if isinstance(value, ast.Dict | ast.List | ast.Set):
        return "a mutable literal"
    if isinstance(value, ast.DictComp | ast.ListComp | ast.SetComp):
        return "a mutable comprehension"
    if isinstance(value, ast.Tuple):
        for element in value.elts:
            if reason := _mutable(element, frozen):
                return reason
        return None
    if isinstance(value, ast.Call):
        name = _dotted(value.func)
        if name in IMMUTABLE_CALLS or name in frozen:
            return None
        if isinstance(value.func, ast.Attribute) and name.split(".")[-1] in frozen:
            return None
        return f"a call of {name or 'something'}()"
    return None


def _cached(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_dotted(d) in CACHE_DECORATORS for d in node.decorator_list)


def _targets(node: ast.stmt) -> list[tuple[str, ast.expr | None]]:
    if isinstance(node, ast.Assign):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        return [(name, node.value) for name in names]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value)]
    return []


def problems_in(source: str, filename: str) -> Iterator[tuple[str, str]]:
    """``(name, why)`` for every piece of module-level state in ``source``."""
    tree = ast.parse(source, filename)
    frozen = _frozen_classes(tree)
    for node in tree.body:
        for name, value in _targets(node):
            if name != "__all__" and (reason := _mutable(value, frozen)):
                yield name, f"bound to {reason}"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _cached(node):
            yield node.name, "a cached function (the cache is state)"
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            yield ", ".join(node.names), "rebound with `global`"


def _modules() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                found.append(path)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_holds_no_mutable_state(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    found = [
        f"{relative}: {name} is {why}"
        for name, why in problems_in(path.read_text(encoding="utf-8"), relative)
    ]
    assert not found, "module-level state (give it to chat.runtime.ChatRuntime):\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    "source",
    [
        "_local = {}",
        "_routed: list[int] = []",
        "_seen = set()",
        "_counts = collections.Counter()",
        "_here = weakref.WeakSet()",
        "_tls = threading.local()",
        "class Config:\n    pass\n\nCONFIG = Config()",
        "import functools\n\n@functools.cache\ndef server_key():\n    return 1",
        "_task = None\n\ndef start():\n    global _task\n    _task = 1",
    ],
)
def test_the_check_refuses_state(source: str) -> None:
    assert list(problems_in(source, "example.py"))


@pytest.mark.parametrize(
    "source",
    [
        "log = logging.getLogger(__name__)",
        "MAX = 10",
        "TYPES = frozenset({'send', 'pm'})",
        "PAIR = (1, 'a')",
        "USERNAME = re.compile('[a-z]+')",
        "from dataclasses import dataclass\n\n@dataclass(frozen=True)\nclass P:\n    x: int\n\n"
        "ORIGIN = P(0)",
    ],
)
def test_the_check_allows_constants_and_loggers(source: str) -> None:
    assert not list(problems_in(source, "example.py"))
