"""An asyncio chat client for tests that hold many sessions in one process.

``websockets`` for the socket, chatproto's ``ClientConnection`` for the
protocol: the same sans-I/O core as every other client, in a third shell. A
reader task per session opens each record as it comes, hands direct answers to
the request waiting for them (by ``ref``) and everything else to ``on_push``
(or the ``pushes`` queue), so hundreds of sessions can run side by side::

    client = await AsyncChatClient.connect(server.url, server.origin, server.fingerprint)
    await client.login("alice", "pw")
    ack = await client.request({"type": "send", "room": "lobby", "text": "hi"})
    await client.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection as WebSocket

from chatproto.connection import (
    ClientConnection,
    CloseConnection,
    Greeting,
    MessageReceived,
    ServerHello,
)
from chatproto.limits import MAX_RECORD_SIZE

TIMEOUT = 60.0  # bounds a hung test; never a timing assertion


class SessionClosed(Exception):
    """The server closed the session (``code``), or the connection broke (1006)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"session closed with {code}")
        self.code = code


class AsyncChatClient:
    def __init__(self, ws: WebSocket, conn: ClientConnection, greeting: dict[str, Any]) -> None:
        self.ws = ws
        self.conn = conn
        self.greeting = greeting
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.on_push: Callable[[dict[str, Any]], None] | None = None
        self.closed: int | None = None
        self.failure: BaseException | None = None  # the server broke the protocol
        self._waiting: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls, url: str, origin: str, fingerprint: str, *, timeout: float = TIMEOUT
    ) -> AsyncChatClient:
        """Connect, check the pinned fingerprint, send the key, verify the greeting."""
        ws = await websockets.connect(
            url,
            origin=origin,
            compression=None,
            proxy=None,
            max_size=MAX_RECORD_SIZE,
            ping_interval=None,
            open_timeout=timeout,
        )
        try:
            conn = ClientConnection()
            hello = await asyncio.wait_for(ws.recv(), timeout)
            (event,) = conn.receive_text(hello)
            assert isinstance(event, ServerHello), event
            if event.identity.fingerprint != fingerprint:
                raise AssertionError(
                    f"server key {event.identity.fingerprint}, pinned {fingerprint}"
                )
            await ws.send(conn.send_key())
            events = conn.receive_bytes(await asyncio.wait_for(ws.recv(), timeout))
            if not events or not isinstance(events[0], Greeting):
                raise AssertionError(f"the first record was not a greeting: {events}")
        except BaseException:
            await ws.close()
            raise
        return cls(ws, conn, events[0].message)

    async def _read_loop(self) -> None:
        try:
            async for data in self.ws:
                if isinstance(data, str):
                    raise AssertionError("a text message after the handshake")
                for event in self.conn.receive_bytes(data):
                    if isinstance(event, CloseConnection):
                        raise AssertionError(f"the server sent a bad record ({event.code})")
                    if isinstance(event, MessageReceived):
                        self._dispatch(event.message)
            self.closed = self.ws.close_code
        except websockets.ConnectionClosed as closed:
            self.closed = closed.rcvd.code if closed.rcvd else 1006
        except Exception as exc:  # kept for the test to see, and every waiting request fails
            self.failure = exc
        finally:
            if self.closed is None:
                self.closed = self.ws.close_code or 1006
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(self.failure or SessionClosed(self.closed))
            self.conn.close()

    def _dispatch(self, message: dict[str, Any]) -> None:
        future = self._waiting.pop(message.get("ref"), None) if "ref" in message else None
        if future is not None and not future.done():
            future.set_result(message)
        elif self.on_push is not None:
            self.on_push(message)
        else:
            self.pushes.put_nowait(message)

    async def send(self, message: dict[str, Any]) -> None:
        """Seal and send without waiting for an answer."""
        if self.failure is not None:
            raise self.failure
        if self.closed is not None:
            raise SessionClosed(self.closed)
        await self.ws.send(self.conn.send(message))

    async def request(self, message: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        """Send a request (an ``id`` is added if missing) and return its direct answer."""
        message = dict(message)
        message.setdefault("id", f"a{next(self._ids)}")
        future = asyncio.get_running_loop().create_future()
        self._waiting[message["id"]] = future
        await self.send(message)
        return await asyncio.wait_for(future, timeout)

    async def login(self, username: str, password: str) -> dict[str, Any]:
        answer = await self.request({"type": "login", "username": username, "password": password})
        if answer["type"] != "login_ok":
            raise AssertionError(f"login as {username} failed: {answer}")
        return answer

    async def next_push(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next pushed message of type ``kind`` (others before it are dropped)."""
        while True:
            message = await asyncio.wait_for(self.pushes.get(), timeout)
            if message["type"] == kind:
                return message

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.closed

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 10)
