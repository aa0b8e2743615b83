"""Fixtures of the hardening tests: the chat tests' in-process ones, and a PostgreSQL server."""

from __future__ import annotations

import pytest

from tests import services
from tests.chat.conftest import (  # noqa: F401
    chat_settings,
    create_users,
    make_user,
    run_sync,
    server_key_file,
)
from tests.hardening.helpers import FAST_HASHING
from tests.live_server import start_live_server


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """One daphne on a fresh PostgreSQL database (``.database_url`` says which), no Redis."""
    with (
        services.fresh_postgres_database() as database_url,
        start_live_server(
            tmp_path_factory.mktemp("postgres-server"),
            env={"DATABASE_URL": database_url, **FAST_HASHING},
        ) as server,
    ):
        server.database_url = database_url
        yield server
