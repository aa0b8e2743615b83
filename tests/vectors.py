"""The one loader of the known-answer data in ``tests/data/``.

``protocol_vectors()`` is the worked example of docs/protocol.md; ``wycheproof(name)``
is one Wycheproof file (see ``tests/data/wycheproof/SOURCE.md``), flattened into
(group, test) cases. The loader refuses a file whose case count differs from its
``numberOfTests`` or whose ``tcId`` repeat, so nothing can be skipped silently.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
WYCHEPROOF = DATA / "wycheproof"


@functools.cache
def protocol_vectors() -> dict[str, Any]:
    """``tests/data/protocol-vectors.json`` (cached: treat it as read-only)."""
    return json.loads((DATA / "protocol-vectors.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class WycheproofCase:
    """One test of a Wycheproof file together with the parameters of its group."""

    group: dict[str, Any]
    test: dict[str, Any]

    @property
    def tc_id(self) -> int:
        return self.test["tcId"]

    @property
    def result(self) -> str:
        return self.test["result"]

    def hex(self, name: str) -> bytes:
        """A hex field of the test as bytes."""
        return bytes.fromhex(self.test[name])


@dataclass(frozen=True)
class WycheproofFile:
    name: str
    algorithm: str
    number_of_tests: int
    cases: tuple[WycheproofCase, ...]


@functools.cache
def wycheproof(name: str) -> WycheproofFile:
    """Load ``tests/data/wycheproof/<name>``; ValueError if its count is inconsistent."""
    data = json.loads((WYCHEPROOF / name).read_text(encoding="utf-8"))
    cases = tuple(
        WycheproofCase(
            {key: value for key, value in group.items() if key != "tests"},
            test,
        )
        for group in data["testGroups"]
        for test in group["tests"]
    )
    ids = [case.tc_id for case in cases]
    if len(cases) != data["numberOfTests"] or len(set(ids)) != len(ids):
        raise ValueError(
            f"{name}: {len(cases)} tests with {len(set(ids))} distinct tcIds, "
            f"but numberOfTests says {data['numberOfTests']}"
        )
    return WycheproofFile(name, data["algorithm"], data["numberOfTests"], cases)
