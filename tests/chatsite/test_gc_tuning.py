"""The start-up freeze (chatsite/gc_tuning.py): what exists then leaves the collector's
walks; what is made later is still collected, so run-time cycles cannot leak."""

from __future__ import annotations

import gc
import weakref

import pytest

from chatsite.gc_tuning import freeze_startup_objects


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def frozen():
    try:
        yield freeze_startup_objects()
    finally:
        gc.unfreeze()


def test_objects_alive_at_start_up_are_no_longer_walked(frozen):
    assert frozen > 0
    assert not any(type(obj) is _Startup for obj in gc.get_objects())


def test_cycles_made_after_start_up_are_still_collected(frozen):
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    gc.collect()
    assert alive() is None


class _Startup:
    pass


_STARTUP_OBJECT = _Startup()  # made at import, i.e. before the freeze
