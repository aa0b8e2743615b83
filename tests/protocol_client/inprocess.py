"""An in-process test client: Channels' ``WebsocketCommunicator`` around :class:`ClientProtocol`.

It drives the real WebSocket application (origin check, routing, consumer:
``chat.routing.websocket_application``) on the test's own event loop and
settings, so a consumer test reads like a conversation::

    async with in_process_session() as alice:
        await alice.login("alice")                  # login_ok, then up to ``users``
        ack = await alice.request({"type": "send", "room": "lobby", "text": "hi"})
        assert (await alice.find("message"))["msg_id"] == ack["msg_id"]

(A timeout of ``receive_output`` cancels the application, so "nothing came"
is asked with ``receive_nothing``: :meth:`InProcessClient.nothing`, ``drain``.)

Sessions are opened on :data:`APPLICATION`, built around :data:`RUNTIME`, a fresh
:class:`chat.runtime.ChatRuntime` for each test: the ``chat_settings`` fixture
(``tests/chat/conftest.py``) sets both, so no session, transfer or counter of
one test reaches the next.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from channels.testing import WebsocketCommunicator

from chatproto.connection import ClientConnection
from chatproto.framing import FileChunk
from tests.protocol_client.core import ClientProtocol, Item, Message, SessionClosed

TIMEOUT = 5.0
ORIGIN = b"http://127.0.0.1:8000"
CLIENT = ("127.0.0.1", 40000)
PASSWORD = "pw"  # what the chat tests' ``make_user`` gives every account

# The application sessions are opened on, and the runtime behind it (for tests that look
# at the server's state): set for each test by the ``chat_settings`` fixture.
APPLICATION: Any = None
RUNTIME: Any = None


def communicator(
    *, origin: bytes | None = ORIGIN, client: tuple[str, int] = CLIENT
) -> WebsocketCommunicator:
    """A communicator to ``/ws/chat/`` of :data:`APPLICATION` (``origin=None``: no Origin
    header); ``client`` is the address the consumer sees."""
    assert APPLICATION is not None, "use the chat_settings fixture: it builds the application"
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin))
    comm = WebsocketCommunicator(APPLICATION, "/ws/chat/", headers=headers)
    comm.scope["client"] = client  # read by the consumer when it connects
    return comm


class InProcessClient:
    """One in-process session. Waits raise TimeoutError (the application is then cancelled,
    as the communicator does) or SessionClosed; ``after_login`` is what followed login_ok."""

    def __init__(
        self,
        comm: WebsocketCommunicator,
        protocol: ClientProtocol | None = None,
        *,
        watch_presence: bool = False,
    ) -> None:
        """``watch_presence``: ``presence`` deltas are read like any message (tests of
        presence); else they are set aside in ``presence_seen`` (see ClientProtocol)."""
        self.comm = comm
        self.protocol = protocol or ClientProtocol(id_prefix="r", watch_presence=watch_presence)
        self.after_login: list[Message] = []
        self.device: str | None = None  # login_ok's device (remember, resume): for e2e bodies

    @property
    def conn(self) -> ClientConnection:
        return self.protocol.conn

    @property
    def greeting(self) -> Message | None:
        return self.protocol.greeting

    @property
    def pending(self) -> collections.deque[Item]:
        """What came and was not the answer to an awaited request, in order."""
        return self.protocol.pending

    @property
    def presence_seen(self) -> list[Message]:
        """The ``presence`` deltas set aside (a session that does not watch presence)."""
        return self.protocol.presence_seen

    @property
    def close_code(self) -> int | None:
        return self.protocol.close_code

    # --- frames -------------------------------------------------------------------------------

    async def connect(self) -> None:
        connected, _ = await self.comm.connect(timeout=TIMEOUT)
        assert connected, "the WebSocket was refused"

    async def read_output(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next ASGI message the application sent, as it is (fuzzers judge them raw)."""
        return await self.comm.receive_output(timeout)

    async def read_frame(self, timeout: float = TIMEOUT) -> bytes | str:
        """The next data frame (bytes or text); SessionClosed when the application closes."""
        if self.protocol.close_code is not None:
            raise SessionClosed(self.protocol.close_code)
        output = await self.read_output(timeout)
        if output["type"] == "websocket.close":
            raise self.protocol.closed(output.get("code"))
        assert output["type"] == "websocket.send", output
        return output["bytes"] if output.get("bytes") is not None else output["text"]

    async def _pump(self, timeout: float) -> None:
        self.protocol.receive(await self.read_frame(timeout))

    async def send_text(self, text: str) -> None:
        # send_input, not send_to: the communicator refuses empty frames, a peer may not.
        await self.comm.send_input({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self.comm.send_input({"type": "websocket.receive", "bytes": data})

    # --- the protocol -------------------------------------------------------------------------

    async def handshake(self, timeout: float = TIMEOUT) -> Message:
        """Hello (pin checked if one was given), key, greeting; the greeting."""
        await self.send_text(self.protocol.receive_hello(await self.read_frame(timeout)))
        return self.protocol.receive_greeting(await self.read_frame(timeout))

    async def send(self, message: dict[str, Any]) -> bytes:
        data = self.protocol.seal(message)
        await self.send_bytes(data)
        return data

    async def send_chunk(self, chunk: FileChunk) -> None:
        await self.send_bytes(self.protocol.seal_chunk(chunk))

    async def request(self, message: dict[str, Any], timeout: float = TIMEOUT) -> Message:
        """Send a request (an ``id`` is added if missing) and return its direct answer."""
        ref, data = self.protocol.request(message)
        await self.send_bytes(data)
        while (answer := self.protocol.take_answer(ref)) is None:
            await self._pump(timeout)
        return answer

    async def recv_item(self, timeout: float = TIMEOUT) -> Item:
        while (item := self.protocol.take_item()) is None:
            await self._pump(timeout)
        return item

    async def recv(self, timeout: float = TIMEOUT) -> Message:
        """The next message (file chunks stay pending, for ``recv_chunk`` or ``recv_item``)."""
        while (message := self.protocol.take_message()) is None:
            await self._pump(timeout)
        return message

    async def recv_chunk(self, timeout: float = TIMEOUT) -> FileChunk:
        """The next file chunk (messages stay pending)."""
        while (chunk := self.protocol.take_chunk()) is None:
            await self._pump(timeout)
        return chunk

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> Message:
        """The next message, which must be of type ``kind``."""
        while (message := self.protocol.take_expected(kind)) is None:
            await self._pump(timeout)
        return message

    async def find(self, kind: str, timeout: float = TIMEOUT) -> Message:
        """The next message of type ``kind``; others before it go to ``protocol.skipped``."""
        while (message := self.protocol.take_kind(kind)) is None:
            await self._pump(timeout)
        return message

    async def login(
        self,
        username: str,
        password: str = PASSWORD,
        *,
        otp: str | None = None,
        remember: str | None = None,
    ) -> Message:
        """Log in (``otp``: a code for two-factor login; ``remember``: a device name, the
        answer then has ``device`` and ``token``); login_ok, after reading what follows it
        up to ``users`` (``after_login``; nothing follows a login that must first enrol)."""
        message: dict[str, Any] = {"type": "login", "username": username, "password": password}
        if otp is not None:
            message["otp"] = otp
        if remember is not None:
            message["remember"] = remember
        return await self._logged_in(username, await self.request(message))

    async def resume(self, username: str, token: str) -> Message:
        """Log in as a remembered device (PROTOCOL.md 3.4); login_ok, as :meth:`login`."""
        answer = await self.request({"type": "resume", "username": username, "token": token})
        return await self._logged_in(username, answer)

    async def _logged_in(self, username: str, answer: Message) -> Message:
        assert answer["type"] == "login_ok", f"login as {username} failed: {answer}"
        self.device = answer.get("device")
        if answer.get("otp_enrolment_required"):
            self.after_login = []
            return answer
        while (after := self.protocol.take_through("users")) is None:
            await self._pump(TIMEOUT)
        self.after_login = after
        return answer

    async def enable_two_factor(self) -> tuple[str, list[str]]:
        """``otp_setup`` then ``otp_confirm`` with the current code; the secret and the
        backup codes. The current step's code is then used up (a code works once): a
        login right after needs :func:`totp_code` ``(secret, ahead=1)``."""
        setup = await self.request({"type": "otp_setup"})
        assert setup["type"] == "otp_setup", setup
        enabled = await self.request({"type": "otp_confirm", "code": totp_code(setup["secret"])})
        assert enabled["type"] == "otp_enabled", enabled
        return setup["secret"], enabled["backup_codes"]

    async def drain(self, quiet: float = 0.2) -> list[Message]:
        """Every pending message and every one that arrives until ``quiet`` seconds pass
        without any (file chunks stay pending)."""
        received = []
        while True:
            while (message := self.protocol.take_message()) is not None:
                received.append(message)
            if await self._quiet(quiet):
                return received

    async def nothing(self, timeout: float = 0.3) -> bool:
        """True when nothing arrives within ``timeout`` (and nothing is pending)."""
        if self.protocol.pending:
            return False
        return await self._quiet(timeout)

    async def _quiet(self, timeout: float) -> bool:
        """True when nothing but set-aside ``presence`` arrives within ``timeout``; else
        what arrived is filed (pending, or an answer) and False.

        (A timeout of ``receive_output`` would cancel the application, so this polls
        with ``receive_nothing``.)"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            if await self.comm.receive_nothing(left):
                return True
            set_aside = len(self.protocol.presence_seen)
            await self._pump(TIMEOUT)
            if len(self.protocol.presence_seen) == set_aside:
                return False
        return True

    async def expect_close(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the application closes; the close code (messages read are dropped)."""
        try:
            while True:
                await self.read_frame(timeout)
        except SessionClosed as closed:
            return closed.code

    async def close(self, code: int = 1000) -> None:
        """Disconnect, and let the consumer's disconnect (presence, pushes) finish.

        Raises what the application raised, if it failed: a test must see it."""
        await self.comm.disconnect(code=code)
        await asyncio.sleep(0.05)

    async def __aenter__(self) -> InProcessClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def totp_code(secret: str, ahead: int = 0) -> str:
    """The TOTP code of ``secret`` (RFC 6238, 30 s steps) ``ahead`` steps from now; the
    server accepts one step of drift either way."""
    import pyotp

    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)


async def open_session(
    *,
    origin: bytes | None = ORIGIN,
    client: tuple[str, int] = CLIENT,
    watch_presence: bool = False,
) -> InProcessClient:
    """A connected in-process session with the handshake done; the caller closes it."""
    session = InProcessClient(
        communicator(origin=origin, client=client), watch_presence=watch_presence
    )
    await session.connect()
    await session.handshake()
    return session


@contextlib.asynccontextmanager
async def in_process_session(
    *, origin: bytes | None = ORIGIN, client: tuple[str, int] = CLIENT
) -> AsyncIterator[InProcessClient]:
    """``async with in_process_session() as alice``: closed when the block ends."""
    session = await open_session(origin=origin, client=client)
    try:
        yield session
    finally:
        await session.close()
