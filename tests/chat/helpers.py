"""In-process sessions for consumer tests: Channels' WebsocketCommunicator + ClientConnection.

``ProtocolSession`` drives the real WebSocket application (origin check, routing,
consumer: ``chat.routing.websocket_application`` with the test's fresh runtime) on the
in-memory channel layer, speaking the protocol through
chatproto's client side, so a test reads like a conversation::

    alice = await open_session()
    await alice.login("alice", "pw")
    ack = await alice.request({"type": "send", "room": "lobby", "text": "hi"})
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import Any

from channels.testing import WebsocketCommunicator
from django.contrib.auth.hashers import Argon2PasswordHasher

from chatproto.connection import ClientConnection, Greeting, MessageReceived, ServerHello

TIMEOUT = 5.0

# The application sessions are opened on, and its runtime: set for each test by the
# ``chat_settings`` fixture (tests/chat/conftest.py), a fresh runtime every time.
APPLICATION: Any = None
RUNTIME: Any = None


class FastArgon2PasswordHasher(Argon2PasswordHasher):
    """Argon2 at a tiny cost, for in-process tests only (settings override, never an env switch)."""

    time_cost = 1
    memory_cost = 64
    parallelism = 1


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


def communicator(
    *,
    origin: bytes | None = b"http://127.0.0.1:8000",
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> WebsocketCommunicator:
    assert APPLICATION is not None, "use the chat_settings fixture: it builds the application"
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin))
    comm = WebsocketCommunicator(APPLICATION, "/ws/chat/", headers=headers)
    comm.scope["client"] = client  # read by the consumer when it connects
    return comm


class ProtocolSession:
    """A client session over the in-process application.

    ``presence`` deltas come at the server's ticks, whatever a test does: unless
    ``watch_presence`` is set (tests of presence), they are set aside in
    ``presence_seen`` and never returned by :meth:`recv` or counted by :meth:`nothing`.
    """

    def __init__(self, comm: WebsocketCommunicator, *, watch_presence: bool = False) -> None:
        self.comm = comm
        self.watch_presence = watch_presence
        self.presence_seen: list[dict[str, Any]] = []
        self.conn = ClientConnection()
        self.greeting: dict[str, Any] | None = None
        self.hello: ServerHello | None = None
        self.pending: collections.deque[dict[str, Any]] = collections.deque()
        self.close_code: int | None = None
        self._ids = itertools.count(1)

    async def connect(self) -> None:
        connected, _ = await self.comm.connect(timeout=TIMEOUT)
        assert connected, "the WebSocket was refused"

    async def handshake(self) -> None:
        """Receive hello, send key, verify the greeting."""
        hello = await self.comm.receive_from(TIMEOUT)
        (self.hello,) = self.conn.receive_text(hello)
        await self.comm.send_to(text_data=self.conn.send_key())
        events = self.conn.receive_bytes(await self._output_bytes())
        assert isinstance(events[0], Greeting), events
        self.greeting = events[0].message

    async def _output_bytes(self, timeout: float = TIMEOUT) -> bytes:
        output = await self.comm.receive_output(timeout)
        if output["type"] == "websocket.close":
            self.close_code = output.get("code")
            raise Closed(self.close_code)
        assert output["type"] == "websocket.send", output
        assert "bytes" in output and output.get("text") is None, "expected a binary record"
        return output["bytes"]

    async def send(self, message: dict[str, Any]) -> bytes:
        data = self.conn.send(message)
        await self.comm.send_to(bytes_data=data)
        return data

    async def send_bytes(self, data: bytes) -> None:
        await self.comm.send_to(bytes_data=data)

    def _received(self, event: object) -> dict[str, Any] | None:
        """The message an event brings for :meth:`recv`, if any (``presence`` set aside
        unless ``watch_presence``); subclasses keep other events (file chunks) here."""
        if not isinstance(event, MessageReceived):
            return None
        if event.message["type"] == "presence" and not self.watch_presence:
            self.presence_seen.append(event.message)
            return None
        return event.message

    async def _next_message(self, timeout: float) -> dict[str, Any]:
        while True:
            for event in self.conn.receive_bytes(await self._output_bytes(timeout)):
                if (message := self._received(event)) is not None:
                    return message

    async def _only_presence(self, timeout: float) -> bool:
        """True when nothing but set-aside ``presence`` arrives within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            if await self.comm.receive_nothing(left):
                return True
            other = False
            for event in self.conn.receive_bytes(await self._output_bytes(TIMEOUT)):
                if (message := self._received(event)) is not None:
                    self.pending.append(message)
                    other = True
            if other:
                return False
        return True

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        if self.pending:
            return self.pending.popleft()
        return await self._next_message(timeout)

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        message = await self.recv(timeout)
        assert message["type"] == kind, message
        return message

    async def find(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message of type ``kind``, dropping others before it."""
        while True:
            message = await self.recv(timeout)
            if message["type"] == kind:
                return message

    async def drain(self, quiet: float = 0.2) -> list[dict[str, Any]]:
        """Everything that arrives until ``quiet`` seconds pass without a message.

        (A timeout of ``receive_output`` would cancel the application, so this
        polls with ``receive_nothing`` instead.)
        """
        received = list(self.pending)
        self.pending.clear()
        while not await self._only_presence(quiet):
            received.extend(self.pending)
            self.pending.clear()
        return received

    async def request(self, message: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        message = dict(message)
        message.setdefault("id", f"r{next(self._ids)}")
        await self.send(message)
        while True:
            received = await self._next_message(timeout)
            if received.get("ref") == message["id"]:
                return received
            self.pending.append(received)

    async def login(self, username: str, password: str = "pw") -> dict[str, Any]:  # noqa: S107
        """Log in and read what follows login_ok up to and including ``users``."""
        answer = await self.request({"type": "login", "username": username, "password": password})
        assert answer["type"] == "login_ok", answer
        self.after_login = []
        while True:
            message = await self.recv()
            self.after_login.append(message)
            if message["type"] == "users":
                return answer

    async def expect_close(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the server closes; the close code."""
        try:
            while True:
                await self._output_bytes(timeout)
        except Closed as closed:
            return closed.code

    async def nothing(self, timeout: float = 0.3) -> bool:
        """True when nothing arrives within ``timeout`` (and nothing is pending)."""
        if self.pending:
            return False
        return await self._only_presence(timeout)

    async def close(self) -> None:
        await self.comm.disconnect()
        # Let the consumer's disconnect (presence, users push) finish before the next step.
        await asyncio.sleep(0.05)


async def open_session(*, watch_presence: bool = False, **kwargs) -> ProtocolSession:
    session = ProtocolSession(communicator(**kwargs), watch_presence=watch_presence)
    await session.connect()
    await session.handshake()
    return session
