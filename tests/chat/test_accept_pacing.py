"""The pacing of new connections (chat/workers.py, "Pacing new connections"): while
``CHAT_HANDSHAKES_IN_WORK`` handshakes have the server's own work under way, the listening
sockets are paused; a client that connects and never sends its key holds no place.

The RSA work is held on an Event, so which handshakes are in work is decided by the test.
"""

from __future__ import annotations

import pytest

from tests.chat.held_handshakes import greeted, hold_key_messages, until

pytestmark = pytest.mark.django_db(transaction=True)

IN_WORK = 2


class Listener:
    """What the server's shell would pause: counts pauses and resumes."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pause(self):
        assert not self.paused, "paused twice without a resume"
        self.paused, self.pauses = True, self.pauses + 1
        return self.resume

    def resume(self) -> None:
        assert self.paused
        self.paused = False


@pytest.fixture
def held_rsa(chat_settings, monkeypatch):
    """Two RSA threads, pacing at 2 handshakes in work, key messages held until ``.set()``."""
    chat_settings.CHAT_HANDSHAKE_THREADS = 2
    chat_settings.CHAT_HANDSHAKES_IN_WORK = IN_WORK
    chat_settings.CHAT_HANDSHAKE_RATE = (1000, 60)
    gate = hold_key_messages(monkeypatch)
    yield gate
    gate.set()


@pytest.fixture
def listener(runtime) -> Listener:
    listening = Listener()
    runtime.workers.accept_pacing.listen_through(listening.pause)
    return listening


async def test_clients_that_never_send_their_key_hold_no_place(held_rsa, listener, runtime):
    silent = [await greeted() for _ in range(3 * IN_WORK)]
    assert runtime.workers.accept_pacing.working == 0
    assert listener.pauses == 0  # a slowloris keeps nobody out
    for session, _key in silent:
        await session.close()


async def test_listening_pauses_while_keys_are_in_work_and_resumes_after(
    held_rsa, listener, runtime
):
    (first, first_key), (second, second_key) = [await greeted() for _ in range(IN_WORK)]
    await first.send_text(first_key)
    await until(lambda: runtime.workers.accept_pacing.working == 1)
    assert not listener.paused
    await second.send_text(second_key)
    await until(lambda: runtime.workers.accept_pacing.working == IN_WORK)
    assert listener.paused  # new connections wait in the kernel's backlog
    held_rsa.set()
    for session in (first, second):
        greeting = session.protocol.receive_greeting(await session.read_frame())
        assert greeting["type"] == "greeting"
    await until(lambda: not listener.paused)
    assert runtime.workers.accept_pacing.working == 0
    assert listener.pauses == 1
    for session in (first, second):
        await session.close()


async def test_a_refused_key_gives_its_place_back(held_rsa, listener, runtime, chat_settings):
    chat_settings.CHAT_HANDSHAKE_QUEUE = 1
    (first, first_key), (second, second_key) = [await greeted() for _ in range(IN_WORK)]
    await first.send_text(first_key)
    await until(lambda: runtime.workers.handshake_queue.waiting == 1)
    await second.send_text(second_key)  # the queue is full: 4008 before any RSA work
    assert await second.expect_close() == 4008
    assert runtime.workers.accept_pacing.working == 1
    held_rsa.set()
    first.protocol.receive_greeting(await first.read_frame())
    await until(lambda: runtime.workers.accept_pacing.working == 0)
    assert not listener.paused
    for session in (first, second):
        await session.close()
