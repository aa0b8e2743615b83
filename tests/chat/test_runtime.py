"""The runtime: one object per server process holds what the server keeps in memory."""

from __future__ import annotations

import asyncio
import logging

from chat.runtime import ChatRuntime
from tests.protocol_client.inprocess import open_session


async def test_sessions_live_in_the_runtime_of_the_application_that_serves_them(
    create_users, runtime
):
    await create_users("alice")
    alice = await open_session()
    await alice.login("alice")
    assert [s.username for s in runtime.sessions.local_sessions()] == ["alice"]
    assert ChatRuntime().sessions.local_sessions() == []  # another runtime knows nothing of it
    await alice.close()
    assert runtime.sessions.local_sessions() == []


def test_the_server_key_is_read_once_per_runtime(chat_settings):
    runtime = ChatRuntime()
    assert runtime.server_key() is runtime.server_key()
    assert asyncio.run(runtime.aserver_key()) is runtime.server_key()


def test_background_work_that_fails_is_logged(chat_settings, caplog):
    runtime = ChatRuntime()

    async def failing() -> None:
        raise RuntimeError("boom")

    async def run() -> None:
        runtime.in_background(failing())
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="chat.sessions"):
        asyncio.run(run())
    assert "background work failed" in caplog.text


async def test_closing_a_runtime_stops_its_transfer_timers(runtime, create_users):
    await create_users("alice", "bob")
    alice = await open_session()
    await alice.login("alice")
    bob = await open_session()
    await bob.login("bob")
    await alice.request(
        {"type": "file_offer", "transfer": "ab" * 16, "to": "bob", "name": "f", "size": 1,
         "sha256": "ab" * 32}
    )  # fmt: skip
    assert not runtime.transfers.idle
    assert runtime.transfers.timer is not None  # the offer's expiry
    runtime.close()
    assert runtime.transfers.timer is None
    await alice.close()
    await bob.close()
    assert runtime.transfers.idle  # the sessions' ends closed what the runtime held
