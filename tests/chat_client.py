"""A small blocking chat client for tests: websocket-client around chatproto's ClientConnection.

::

    client = connect(server.url, server.origin, expected_fingerprint=server.fingerprint)
    client.login("alice", "pw")                      # the login_ok message
    client.request({"type": "send", "room": "lobby", "text": "hi"})   # the ack
    client.expect("message")                         # the broadcast
    client.recv(timeout=0.5)                          # TimeoutError when nothing comes
    client.send_chunk(chunk); client.recv_item()      # file transfers: chunks in arrival order

Messages that arrive while :meth:`TestClient.request` waits for its answer are
kept, in order, for :meth:`recv` and :meth:`expect`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import queue
import struct
import threading
from typing import Any

import websocket

from chatproto.connection import (
    ChunkReceived,
    ClientConnection,
    CloseConnection,
    Greeting,
    MessageReceived,
    ServerHello,
)
from chatproto.framing import FileChunk

DEFAULT_TIMEOUT = 10.0
_LOST = -1  # queue marker: the connection broke without a close frame


class ConnectionClosed(Exception):
    """The server closed the connection; ``code`` is its close code."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed with code {code}")
        self.code = code


class TestClient:
    """One session. A reader thread takes frames off the socket as they come (answering
    pings and the server's close at once, as a real client does, even while a test is
    busy elsewhere); the test's thread decodes them in order."""

    __test__ = False  # not a pytest test class

    def __init__(self, ws: websocket.WebSocket, conn: ClientConnection) -> None:
        self.ws = ws
        self.conn = conn
        self.greeting: dict[str, Any] | None = None
        self.closed_code: int | None = None
        self.pending: collections.deque[dict[str, Any]] = collections.deque()
        self.chunks: list = []
        self.skipped: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._frames: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="test-client")
        self._reader.start()

    # --- raw frames ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        """Reader thread: every data frame and the close into the queue, then stop."""
        self.ws.settimeout(None)
        while True:
            try:
                opcode, frame = self.ws.recv_data_frame(True)
            except Exception:  # reset, or our own shutdown
                self._frames.put((_LOST, b""))
                return
            if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                continue  # websocket-client answered the ping itself
            self._frames.put((opcode, frame.data or b""))
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return  # websocket-client has answered the close

    def _read_frame(self, timeout: float) -> tuple[int, bytes]:
        if self.closed_code is not None:
            raise ConnectionClosed(self.closed_code)
        try:
            opcode, data = self._frames.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing received within {timeout} s") from None
        if opcode == _LOST:
            self.closed_code = 1006
            self.conn.close()
            raise ConnectionClosed(self.closed_code)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.closed_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            self.conn.close()
            raise ConnectionClosed(self.closed_code)
        return opcode, data

    def send_bytes(self, data: bytes) -> None:
        """Send one binary message as it is (tampering and replay tests)."""
        self.ws.send(data, opcode=websocket.ABNF.OPCODE_BINARY)

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send(self, message: dict[str, Any]) -> bytes:
        """Seal and send a message; returns the record sent (for replay tests)."""
        data = self.conn.send(message)
        self.send_bytes(data)
        return data

    def send_chunk(self, chunk: FileChunk) -> None:
        """Seal and send a file chunk record."""
        self.send_bytes(self.conn.send_chunk(chunk.transfer, chunk.index, chunk.data))

    # --- messages -----------------------------------------------------------------------------

    def _next_item(self, timeout: float) -> dict[str, Any] | FileChunk:
        """The next record's message or file chunk (each binary message is one record)."""
        while True:
            opcode, data = self._read_frame(timeout)
            if opcode != websocket.ABNF.OPCODE_BINARY:
                raise AssertionError(f"unexpected text message after the handshake: {data!r}")
            for event in self.conn.receive_bytes(data):
                if isinstance(event, MessageReceived):
                    return event.message
                if isinstance(event, ChunkReceived):
                    return event.chunk
                if isinstance(event, CloseConnection):
                    raise AssertionError(
                        f"the server sent a bad record (client closes {event.code})"
                    )

    def _next_message(self, timeout: float) -> dict[str, Any]:
        while True:
            item = self._next_item(timeout)
            if not isinstance(item, FileChunk):
                return item
            self.chunks.append(item)

    def recv_item(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any] | FileChunk:
        """The next message or file chunk, in the order they came (chunks are not kept)."""
        if self.pending:
            return self.pending.popleft()
        return self._next_item(timeout)

    def recv(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next message (TimeoutError when none comes; ConnectionClosed when closed)."""
        if self.pending:
            return self.pending.popleft()
        return self._next_message(timeout)

    def expect(self, kind: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next message of type ``kind``; other messages before it go to ``skipped``."""
        while True:
            message = self.recv(timeout)
            if message.get("type") == kind:
                return message
            self.skipped.append(message)

    def request(self, message: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Send a request (an ``id`` is added if missing) and return its direct answer."""
        message = dict(message)
        message.setdefault("id", f"t{next(self._ids)}")
        self.send(message)
        while True:
            received = self._next_message(timeout)
            if received.get("ref") == message["id"]:
                return received
            self.pending.append(received)

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in; the login_ok message (AssertionError with the answer otherwise)."""
        answer = self.request({"type": "login", "username": username, "password": password})
        if answer.get("type") != "login_ok":
            raise AssertionError(f"login as {username} failed: {answer}")
        return answer

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Read until the server closes; its close code. Messages read go to ``skipped``."""
        try:
            while True:
                self.skipped.append(self.recv(timeout))
        except ConnectionClosed as closed:
            return closed.code

    def close(self) -> None:
        """Close normally: send our close, give the reader a moment to see the reply, shut down."""
        self.conn.close()
        with contextlib.suppress(Exception):  # the socket may be gone already
            self.ws.send_close()
        self._reader.join(timeout=1)
        with contextlib.suppress(Exception):
            self.ws.shutdown()


def open_socket(url: str, origin: str | None, timeout: float = DEFAULT_TIMEOUT, **options):
    """A raw WebSocket to the server (``origin=None`` sends none)."""
    if origin is None:
        options["suppress_origin"] = True
    else:
        options["origin"] = origin
    return websocket.create_connection(url, timeout=timeout, **options)


def connect(
    url: str,
    origin: str,
    expected_fingerprint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> TestClient:
    """Connect, check the server key against ``expected_fingerprint``, and read the greeting."""
    ws = open_socket(url, origin, timeout)
    conn = ClientConnection()
    client = TestClient(ws, conn)
    try:
        _opcode, data = client._read_frame(timeout)
        events = conn.receive_text(data.decode("utf-8"))
        hello = next(e for e in events if isinstance(e, ServerHello))
        if expected_fingerprint is not None and hello.identity.fingerprint != expected_fingerprint:
            raise AssertionError(
                f"server key changed: expected {expected_fingerprint}, "
                f"got {hello.identity.fingerprint}"
            )
        ws.send(conn.send_key())
        _opcode, data = client._read_frame(timeout)
        greeting = [e for e in conn.receive_bytes(data) if isinstance(e, Greeting)]
        if not greeting:
            raise AssertionError("the first record was not a greeting")
        client.greeting = greeting[0].message
    except BaseException:
        client.close()
        raise
    return client


def hello_of(text: str) -> dict[str, Any]:
    return json.loads(text)
