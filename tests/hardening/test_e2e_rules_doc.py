"""docs/e2e-rule-tests.md names, for every rule of protocol.md section 4, the test that
checks it: each name must be a test that exists, so the table cannot rot silently."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "e2e-rule-tests.md"


def test_every_test_the_rule_table_names_exists():
    named = set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", TABLE.read_text(encoding="utf-8")))
    assert len(named) > 100  # the table is there, and read
    missing = sorted(
        f"{path}::{name}"
        for path, name in named
        if not (ROOT / path).exists()
        or not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    )
    assert missing == []
