"""Redis and PostgreSQL for the scale-out tests: a usable URL, or skip (fail in CI).

On a developer's machine without the services the tests skip with a how-to;
with ``CHAT_REQUIRE_SERVICES=1`` (``.ci/run`` sets it) a missing service fails
the run, so CI can never pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

REDIS_URL = os.environ.get("CHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("CHAT_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


def _unavailable(what: str, how: str) -> None:
    message = f"{what} is not available: {how}; set CHAT_REQUIRE_SERVICES=1 in CI to fail instead"
    if os.environ.get("CHAT_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def redis_url() -> str:
    """A Redis URL that answers PING (``CHAT_TEST_REDIS_URL``, default the local server)."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        _unavailable(
            f"Redis at {REDIS_URL} ({type(exc).__name__})",
            "start Redis with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379",
        )
    return REDIS_URL


def postgres_url() -> str:
    """A PostgreSQL server URL we can create databases on (``CHAT_TEST_POSTGRES_URL``)."""
    import psycopg

    try:
        with psycopg.connect(_conninfo(POSTGRES_URL), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        _unavailable(
            f"PostgreSQL at {POSTGRES_URL} ({type(exc).__name__})",
            "start PostgreSQL with: pg_ctlcluster <version> main start "
            "(user postgres, trust authentication on 127.0.0.1)",
        )
    return POSTGRES_URL


def _conninfo(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database ``chat_test_<random>`` for this run; dropped afterwards."""
    import psycopg

    base = postgres_url()
    name = f"chat_test_{secrets.token_hex(6)}"
    with psycopg.connect(_conninfo(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(_conninfo(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of its own for this run; its keys are deleted afterwards."""
    import redis

    url = redis_url()
    prefix = f"chat-test-{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        try:
            for key in client.scan_iter(match=f"*{prefix}*", count=1000):
                client.delete(key)
        finally:
            client.close()
