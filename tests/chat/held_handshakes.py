"""What the tests of the handshake queue and of the pacing of new connections share: key
messages held in their RSA thread until the test lets them go, and connections that got
their hello, so that which handshakes are in work is decided by the test, not by timing."""

from __future__ import annotations

import asyncio
import threading

from chatproto.connection import ServerConnection, State
from tests.protocol_client.inprocess import TIMEOUT, InProcessClient, communicator


def hold_key_messages(monkeypatch) -> threading.Event:
    """Key messages wait in their RSA thread until the returned Event is set."""
    gate = threading.Event()
    receive_text = ServerConnection.receive_text

    def held(self, text):
        if self.state is State.AWAITING_KEY:
            gate.wait(TIMEOUT)
        return receive_text(self, text)

    monkeypatch.setattr(ServerConnection, "receive_text", held)
    return gate


async def until(condition) -> None:
    """Let the application run until ``condition()`` holds (a test failure if it never does)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


async def greeted() -> tuple[InProcessClient, str]:
    """A connection that got its hello; the key message it has not sent yet."""
    session = InProcessClient(communicator())
    await session.connect()
    return session, session.protocol.receive_hello(await session.read_frame())
