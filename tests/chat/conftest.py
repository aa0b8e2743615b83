"""Fixtures for in-process chat tests: fresh keys, fast hashing, in-memory layer and cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from chatproto import crypto_utils


@pytest.fixture(scope="session")
def server_key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("server-key") / "server_key.pem"
    crypto_utils.write_secret_file(
        path, crypto_utils.private_key_pem(crypto_utils.generate_private_key())
    )
    return path


@pytest.fixture
def chat_settings(settings, tmp_path, server_key_file, monkeypatch):
    """Settings every chat test runs with; yields them for further overrides.

    Also a fresh :class:`chat.runtime.ChatRuntime` (the ``runtime`` fixture) behind
    the application that :mod:`tests.protocol_client.inprocess` opens sessions on:
    no session, transfer or counter of one test reaches the next.
    """
    from chat import storage
    from chat.routing import websocket_application
    from chat.runtime import ChatRuntime
    from tests.protocol_client import inprocess

    settings.PASSWORD_HASHERS = ["tests.chat.helpers.FastArgon2PasswordHasher"]
    settings.CHAT_SERVER_KEY = server_key_file
    settings.CHAT_STORAGE_KEY = tmp_path / "storage.key"
    settings.CHAT_OPEN_REGISTRATION = True
    settings.CHAT_HEARTBEAT_SECONDS = 30
    settings.CHAT_PRESENCE_INTERVAL = 1
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": str(tmp_path),
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
    cache.clear()
    storage.storage_key(create=True)  # as the server's start does
    runtime = ChatRuntime()
    monkeypatch.setattr(inprocess, "RUNTIME", runtime)
    monkeypatch.setattr(inprocess, "APPLICATION", websocket_application(runtime))
    yield settings
    runtime.close()


@pytest.fixture
def runtime(chat_settings):
    """The test's fresh :class:`chat.runtime.ChatRuntime` (see ``chat_settings``)."""
    from tests.protocol_client import inprocess

    return inprocess.RUNTIME


@pytest.fixture
def make_user(chat_settings, transactional_db):
    """``make_user("alice")``: an active account with password ``pw`` (through the service)."""
    from accounts import services

    def make(username: str, password: str = "pw", **fields):  # noqa: S107
        return services.create_user(username, password, validate=False, **fields)

    return make


@pytest.fixture
def create_users(make_user):
    """``await create_users("alice", "bob")`` from async tests."""
    from asgiref.sync import sync_to_async

    async def create(*names: str, **fields):
        return [await sync_to_async(make_user)(name, **fields) for name in names]

    return create


@pytest.fixture
def run_sync():
    """``await run_sync(func, *args)``: ORM and services from async tests."""
    from asgiref.sync import sync_to_async

    async def run(func, *args, **kwargs):
        return await sync_to_async(func)(*args, **kwargs)

    return run
