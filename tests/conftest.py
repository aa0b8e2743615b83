"""Fixtures shared by the whole suite.

Real servers (``live_server``) run in subprocesses with their own environment
and data dir: see ``tests/live_server.py``. In-process tests point the key
files at temporary paths with settings fixtures (``tests/chat/conftest.py``).
"""

from __future__ import annotations

import pytest

from tests.live_server import LiveServer, start_live_server

# Fixtures that start a server process or a display: a test that uses one is slow
# (``pytest -m "not slow"``, the quick tier of ``make check``, leaves it out).
SLOW_FIXTURES = frozenset({"live_server", "display"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that starts a server or a window, wherever it is."""
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


class _NoSettingsToChange:
    """pytest-django's autouse ``_live_server_helper`` toggles settings on any fixture named
    ``live_server``; ours runs in a subprocess with its own settings, so there is nothing to do."""

    def enable(self) -> None:
        return None

    def disable(self) -> None:
        return None


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> LiveServer:
    """A real server for the module: daphne, SQLite, in-memory layer, registration open."""
    with start_live_server(tmp_path_factory.mktemp("live-server")) as server:
        server._live_server_modified_settings = _NoSettingsToChange()
        yield server
