"""``docs/security.md`` names a test for each property: every name must be a real test."""

from __future__ import annotations

import ast
import re

from tests.live_server import PROJECT_DIR

DOC = PROJECT_DIR / "docs" / "security.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def test_every_test_named_in_the_threat_model_exists():
    references = REFERENCE.findall(DOC.read_text(encoding="utf-8"))
    assert len(references) > 50, "the threat model names too few tests: was it rewritten?"
    missing = []
    for path, name in sorted(set(references)):
        file = PROJECT_DIR / path
        if not file.exists():
            missing.append(f"{path} (no such file)")
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        tests = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if name not in tests:
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
