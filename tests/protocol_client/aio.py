"""An asyncio test client: ``websockets`` around :class:`ClientProtocol`, for many sessions.

A reader task per session opens each record as it comes and files it (the
answer to an awaited request, or ``pending``), so hundreds of sessions run
side by side in one loop::

    async with await AsyncClient.connect(server.url, server.origin, server.fingerprint) as alice:
        await alice.login("alice", "pw")
        ack = await alice.request({"type": "send", "room": "lobby", "text": "hi"})
        await alice.find("message")
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection as WebSocket

from chatproto.framing import FileChunk
from chatproto.limits import MAX_RECORD_SIZE
from tests.protocol_client.core import (
    ABNORMAL_CLOSE,
    ClientProtocol,
    Item,
    Message,
    SessionClosed,
)

TIMEOUT = 60.0  # bounds a hung test; never a timing assertion
T = TypeVar("T")


class AsyncClient:
    """One session; waits raise TimeoutError, SessionClosed, or what broke the protocol."""

    def __init__(self, ws: WebSocket, protocol: ClientProtocol) -> None:
        self.ws = ws
        self.protocol = protocol
        self.failure: BaseException | None = None  # the server broke the protocol
        self.after_login: list[Message] = []  # what followed login_ok, up to ``users``
        self.device: str | None = None  # login_ok's device (remember, resume): for e2e bodies
        self._watchers: list[asyncio.Future[None]] = []
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(
        cls, url: str, origin: str, fingerprint: str | None, *, timeout: float = TIMEOUT
    ) -> AsyncClient:
        """Connect, check the pinned fingerprint, send the key, verify the greeting."""
        ws = await websockets.connect(
            url,
            origin=origin,  # type: ignore[arg-type]  # websockets types Origin as a NewType of str
            compression=None,
            proxy=None,
            max_size=MAX_RECORD_SIZE,
            ping_interval=None,
            open_timeout=timeout,
        )
        protocol = ClientProtocol(fingerprint, id_prefix="a")
        try:
            hello = await asyncio.wait_for(ws.recv(), timeout)
            await ws.send(protocol.receive_hello(hello))  # type: ignore[arg-type]  # after the hello, the server sends text
            protocol.receive_greeting(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[arg-type]  # the greeting is a binary record
        except BaseException:
            await ws.close()
            raise
        return cls(ws, protocol)

    @property
    def greeting(self) -> Message | None:
        return self.protocol.greeting

    @property
    def closed(self) -> int | None:
        """The close code once the session ended (1006: the connection broke)."""
        return self.protocol.close_code

    async def _read_loop(self) -> None:
        code: int | None = None
        try:
            async for data in self.ws:
                self.protocol.receive(data)
                self._wake()
            code = self.ws.close_code
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else ABNORMAL_CLOSE
        except Exception as exc:  # kept for the test to see; every wait fails with it
            self.failure = exc
            await self.ws.close()
        finally:
            self.protocol.closed(code or self.ws.close_code or ABNORMAL_CLOSE)
            self._wake()

    def _wake(self) -> None:
        for watcher in self._watchers:
            if not watcher.done():
                watcher.set_result(None)
        self._watchers.clear()

    async def _until(self, take: Callable[[], T | None], timeout: float) -> T:
        """Wait until ``take()`` gives something (it is tried after each record)."""
        deadline = time.monotonic() + timeout
        while (taken := take()) is None:
            if self.failure is not None:
                raise self.failure
            if self.protocol.close_code is not None:
                raise SessionClosed(self.protocol.close_code)
            watcher = asyncio.get_running_loop().create_future()
            self._watchers.append(watcher)
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(watcher, max(0.0, remaining))
            except TimeoutError:
                raise TimeoutError(f"nothing such received within {timeout} s") from None
        return taken

    async def send(self, message: dict[str, Any]) -> None:
        """Seal and send without waiting for an answer."""
        if self.failure is not None:
            raise self.failure
        if self.protocol.close_code is not None:
            raise SessionClosed(self.protocol.close_code)
        await self.ws.send(self.protocol.seal(message))

    async def send_chunk(self, chunk: FileChunk) -> None:
        """Seal and send a file chunk record."""
        await self.ws.send(self.protocol.seal_chunk(chunk))

    async def request(self, message: dict[str, Any], timeout: float = TIMEOUT) -> Message:
        """Send a request (an ``id`` is added if missing) and return its direct answer."""
        ref, data = self.protocol.request(message)
        await self.ws.send(data)
        return await self._until(lambda: self.protocol.take_answer(ref), timeout)

    async def login(
        self,
        username: str,
        password: str,
        timeout: float = TIMEOUT,
        *,
        otp: str | None = None,
        remember: str | None = None,
    ) -> Message:
        """Log in (``otp``: a two-factor code; ``remember``: a device name, PROTOCOL.md 3.4);
        login_ok, after reading what follows it up to ``users`` (``after_login``)."""
        message: dict[str, Any] = {"type": "login", "username": username, "password": password}
        if otp is not None:
            message["otp"] = otp
        if remember is not None:
            message["remember"] = remember
        return await self._logged_in(username, await self.request(message), timeout)

    async def resume(self, username: str, token: str, timeout: float = TIMEOUT) -> Message:
        """Log in as a remembered device; login_ok, as :meth:`login`."""
        answer = await self.request({"type": "resume", "username": username, "token": token})
        return await self._logged_in(username, answer, timeout)

    async def _logged_in(self, username: str, answer: Message, timeout: float) -> Message:
        assert answer["type"] == "login_ok", f"login as {username} failed: {answer}"
        self.device = answer.get("device")
        if answer.get("otp_enrolment_required"):
            self.after_login = []  # nothing follows until the session has enrolled
            return answer
        self.after_login = await self._until(lambda: self.protocol.take_through("users"), timeout)
        return answer

    async def recv_item(self, timeout: float = TIMEOUT) -> Item:
        return await self._until(self.protocol.take_item, timeout)

    async def recv(self, timeout: float = TIMEOUT) -> Message:
        """The next message (file chunks stay pending, for ``recv_chunk`` or ``recv_item``)."""
        return await self._until(self.protocol.take_message, timeout)

    async def recv_chunk(self, timeout: float = TIMEOUT) -> FileChunk:
        """The next file chunk (messages stay pending)."""
        return await self._until(self.protocol.take_chunk, timeout)

    async def find(self, kind: str, timeout: float = TIMEOUT) -> Message:
        """The next message of type ``kind`` (others before it go to ``protocol.skipped``)."""
        return await self._until(lambda: self.protocol.take_kind(kind), timeout)

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> Message:
        """The next message, which must be of type ``kind``."""
        return await self._until(lambda: self.protocol.take_expected(kind), timeout)

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.protocol.close_code

    async def close(self) -> None:
        """Close normally and wait for the reader; safe to call twice."""
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 10)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def connected(
    url: str, origin: str, fingerprint: str | None, *, timeout: float = TIMEOUT
) -> AsyncIterator[AsyncClient]:
    """``async with connected(...) as client``: closed when the block ends, passed or failed."""
    client = await AsyncClient.connect(url, origin, fingerprint, timeout=timeout)
    try:
        yield client
    finally:
        await client.close()
