"""The handshake queue (chat/workers.py): key messages waiting for or in RSA work are held to
``CHAT_HANDSHAKE_QUEUE``; past it a new connection, or a key message, is closed with 4008, and
every place comes back when its RSA work ends, fails or is cancelled.

The RSA work is held on an Event in two threads with a bound of 3, so that which handshakes
are in the queue is decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.chat.held_handshakes import greeted, hold_key_messages, until
from tests.protocol_client.inprocess import TIMEOUT, InProcessClient, communicator, open_session

pytestmark = pytest.mark.django_db(transaction=True)

BOUND = 3


@pytest.fixture
def held_rsa(chat_settings, monkeypatch):
    """Two RSA threads, a queue of 3, and key messages held in their thread until ``.set()``."""
    chat_settings.CHAT_HANDSHAKE_THREADS = 2
    chat_settings.CHAT_HANDSHAKE_QUEUE = BOUND
    chat_settings.CHAT_HANDSHAKE_RATE = (1000, 60)
    gate = hold_key_messages(monkeypatch)
    yield gate
    gate.set()


async def queued(runtime, count: int) -> list[InProcessClient]:
    """``count`` connections whose key messages are in the queue, one at a time."""
    sessions = []
    for _ in range(count):
        session, key = await greeted()
        waiting = runtime.workers.handshake_queue.waiting
        await session.send_text(key)
        await until(lambda waiting=waiting: runtime.workers.handshake_queue.waiting == waiting + 1)
        sessions.append(session)
    return sessions


async def greeting_of(session: InProcessClient) -> dict:
    return session.protocol.receive_greeting(await session.read_frame())


async def refused_before_the_hello() -> None:
    comm = communicator()
    connected, _ = await comm.connect(TIMEOUT)
    assert connected
    output = await comm.receive_output(TIMEOUT)
    assert (output["type"], output.get("code")) == ("websocket.close", 4008)  # no hello: no RSA
    await comm.disconnect()


async def test_a_flood_past_the_queue_is_closed_4008_while_the_queue_completes(held_rsa, runtime):
    late, late_key = await greeted()  # greeted while there was room, its key comes too late
    within = await queued(runtime, BOUND)
    # A new connection while the queue is full: closed before its hello.
    await refused_before_the_hello()
    # A key message that finds the queue full: closed, never decrypted.
    await late.send_text(late_key)
    assert await late.expect_close() == 4008
    assert runtime.workers.handshake_queue.waiting == BOUND
    held_rsa.set()
    for session in within:
        assert (await greeting_of(session))["type"] == "greeting"
    assert runtime.workers.handshake_queue.waiting == 0
    served = await open_session()  # the flood is over: a new connection is served
    for session in (*within, late, served):
        await session.close()


async def test_a_failed_handshake_gives_its_place_back(held_rsa, runtime):
    held_rsa.set()
    for _ in range(BOUND + 1):
        session, _key = await greeted()
        await session.send_text('{"type": "key", "version": 1, "key": "AAAA", "eph": "AAAA"}')
        assert await session.expect_close() == 4000  # a bad handshake, not the queue's 4008
        await session.close()
    assert runtime.workers.handshake_queue.waiting == 0
    served = await open_session()
    await served.close()


async def test_peers_that_leave_mid_queue_give_their_places_back(held_rsa, runtime):
    running_one, running_two, waiting = await queued(runtime, BOUND)
    # The third waits for a thread. Its peer leaves, and the application is cancelled (as
    # daphne does to one that outlives its connection): the key is never decrypted.
    await waiting.comm.disconnect(timeout=0.1)
    await until(lambda: runtime.workers.handshake_queue.waiting == BOUND - 1)
    (replacement,) = await queued(runtime, 1)
    # A peer whose key is being decrypted leaves: its place is held until the thread is done.
    await running_one.comm.disconnect(timeout=0.1)
    for _ in range(10):
        await asyncio.sleep(0)  # the cancellation reaches the thread's future, which runs on
    assert runtime.workers.handshake_queue.waiting == BOUND
    held_rsa.set()
    await until(lambda: runtime.workers.handshake_queue.waiting == 0)
    for session in (running_two, replacement):
        assert (await greeting_of(session))["type"] == "greeting"
    served = await open_session()
    for session in (running_two, replacement, served):
        await session.close()


async def test_a_burst_of_refusals_is_logged_once(held_rsa, runtime, caplog):
    within = await queued(runtime, BOUND)
    caplog.set_level("INFO", logger="chat.sessions")
    for _ in range(3):
        await refused_before_the_hello()
    warnings = [r for r in caplog.records if "handshake queue full" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"
    assert "127.0.0.1" not in warnings[0].getMessage()
    held_rsa.set()
    for session in within:
        await greeting_of(session)
    ended = [r for r in caplog.records if "handshake queue below half" in r.getMessage()]
    assert len(ended) == 1 and "3 connections were refused" in ended[0].getMessage()
    for session in within:
        await session.close()
