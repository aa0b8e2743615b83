"""Which package may import which: read every module's imports with ``ast``, import nothing.

The layers, bottom up: ``chatproto`` (the protocol core: the standard library and
``cryptography`` only) < ``accounts`` < ``chat`` < ``chatsite`` (settings, ASGI, the
project's commands); the clients, ``tk_client``, stand on ``chatproto`` alone. A rule
names a package, the top-level packages it must not import, and the modules it spares.
``tests/chatproto/test_imports.py`` and ``tests/tk_client/test_layering.py`` check them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module that ``source`` (the module ``module``) imports.

    Relative imports are resolved against ``module``; imports inside functions,
    ``if TYPE_CHECKING`` blocks and ``try`` blocks count like any other, and so do
    ``__import__("x")`` and ``importlib.import_module("x")`` with a literal name.
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
            and _called_name(node.func) in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def package_sources(package: str, root: Path = PROJECT_DIR) -> dict[str, str]:
    """``{module name: source}`` for every ``.py`` file of ``package`` (migrations too).

    A package's ``__init__`` is named ``package.__init__`` so that ``from . import x``
    in it resolves to ``package.x``.
    """
    sources = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        module = ".".join(parts) + (".__init__" if relative.name == "__init__" else "")
        sources[module] = path.read_text(encoding="utf-8")
    return sources


@dataclass(frozen=True)
class Rule:
    """``package``'s modules import none of ``forbidden`` (top-level names), except the
    modules in ``spared`` (a module name, or a package name ending in ``.``)."""

    package: str
    forbidden: frozenset[str]
    spared: tuple[str, ...] = field(default=())
    why: str = ""

    def applies_to(self, module: str) -> bool:
        name = module.removesuffix(".__init__")
        return not any(
            name.startswith(spared) if spared.endswith(".") else name == spared
            for spared in self.spared
        )

    def violations(self, sources: Mapping[str, str]) -> dict[str, list[str]]:
        """``{module: sorted forbidden imports}`` for the modules that break the rule."""
        found = {}
        for module, source in sources.items():
            if not self.applies_to(module):
                continue
            bad = sorted(
                name
                for name in imported_modules(source, module)
                if name.split(".")[0] in self.forbidden
            )
            if bad:
                found[module] = bad
        return found

    def check(self) -> dict[str, list[str]]:
        return self.violations(package_sources(self.package))


def rules_for(package: str, rules: Iterable[Rule]) -> list[Rule]:
    return [rule for rule in rules if rule.package == package]


SERVER_STACK = frozenset({"django", "channels", "daphne", "twisted", "autobahn", "channels_redis"})
TK = frozenset({"tkinter", "_tkinter", "tkinterdnd2", "idlelib"})

RULES = (
    Rule(
        "accounts",
        frozenset({"chat", "chatsite", "tk_client"}),
        why="accounts is below chat: chat reacts to accounts through signals",
    ),
    Rule(
        "chat",
        frozenset({"chatsite", "tk_client"}),
        why="apps read configuration through django.conf.settings",
    ),
    Rule(
        "tk_client",
        SERVER_STACK | {"chat", "accounts", "chatsite"},
        why="the clients install alone (pip install .[client]): chatproto is all they share",
    ),
    Rule(
        "tk_client",
        TK,
        spared=("tk_client.views.", "tk_client.gui"),
        why="logic and window in separate files: only the views and gui.py touch Tk",
    ),
)
