"""Fixtures shared by the whole suite.

Real servers (``live_server``) run in subprocesses with their own environment
and data dir: see ``tests/live_server.py``. In-process tests point the key
files at temporary paths with settings fixtures (``tests/chat/conftest.py``).
"""

from __future__ import annotations

import pytest

from tests.live_server import LiveServer, start_live_server

SLOW_MARKER = "slow: over ~10 s or starts servers; left out of make check"


def pytest_configure(config: pytest.Config) -> None:
    """Register ``slow`` unless pyproject.toml does (``--strict-markers`` refuses unknown
    marks): ``pytest -m "not slow"`` is the quick tier. Drop this once pyproject has it."""
    if not any(line.split(":", 1)[0].strip() == "slow" for line in config.getini("markers")):
        config.addinivalue_line("markers", SLOW_MARKER)


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
