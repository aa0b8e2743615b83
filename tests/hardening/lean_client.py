"""A lean chat client for the load test: many sessions, millions of records, little CPU.

:class:`~tests.protocol_client.aio.AsyncClient` spends tens of
microseconds of Python on each record it reads (``websockets``' frame
machinery, a task hand-off, chatproto's event objects and I-JSON checks).
At 4,000,000 deliveries that is most of a run, so this client:

- speaks WebSocket itself on an :class:`asyncio.Protocol` (the upgrade
  request, unmasked frames from the server, masked frames to it, pong for
  ping): one ``data_received`` call may open many records, with no task
  switch between them;
- does the handshake (pinned fingerprint, greeting) and seals what it sends
  with the tests' one protocol client, :class:`tests.protocol_client.core.ClientProtocol`,
  but opens what it receives with that client's ``fast_opener`` (tag, sequence
  number, decryption: every check of the record layer) and plain ``json.loads``;
- hands each message to a callback, synchronously: the load test checks a
  delivery as it arrives instead of keeping it.

It is a test tool for well-behaved servers: any protocol surprise is an
AssertionError kept in :attr:`LeanSession.failure` for the test to report.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from chatproto.framing import KIND_JSON
from chatproto.records import RecordOpener
from tests.protocol_client.core import ClientProtocol

TIMEOUT = 60.0  # bounds a hung test; never a timing assertion
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CLOSE, _PING, _PONG = 1, 2, 8, 9, 10
_decode_json = json.JSONDecoder().decode  # json.loads without its checks of a str argument


def _mask(payload: bytes) -> bytes:
    """The payload masked with a fresh key, as RFC 6455 asks of a client, key first."""
    key = os.urandom(4)
    if not payload:
        return key
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return key + masked.to_bytes(len(payload), "big")


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + _mask(payload)


class LeanSession(asyncio.Protocol):
    """One session; ``on_message(message)`` gets every JSON message after the greeting."""

    def __init__(self, on_message: Callable[[dict[str, Any]], None], fingerprint: str) -> None:
        self.on_message = on_message
        self.protocol = ClientProtocol(fingerprint)
        self.greeting: dict[str, Any] | None = None
        self.failure: BaseException | None = None
        self.closed: int | None = None  # the close code, once the connection ended
        self.records = 0  # records opened after the greeting (any kind)
        self._transport: asyncio.Transport | None = None
        self._opener: RecordOpener | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self._accept = b""
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._events: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()  # handshake frames
        self.done = asyncio.get_running_loop().create_future()

    # -- connecting -------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        origin: str,
        fingerprint: str,
        on_message: Callable[[dict[str, Any]], None],
        *,
        timeout: float = TIMEOUT,
    ) -> LeanSession:
        """Open ``url`` (ws://), check the pinned fingerprint, verify the greeting."""
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        _, session = await asyncio.wait_for(
            loop.create_connection(
                lambda: cls(on_message, fingerprint), parts.hostname, parts.port
            ),
            timeout,
        )
        try:
            await asyncio.wait_for(session._handshake(parts, origin), timeout)
        except BaseException:
            session.abort()
            raise
        return session

    async def _handshake(self, parts, origin: str) -> None:
        key = base64.b64encode(os.urandom(16))
        # RFC 6455's accept check, not a security use of SHA-1.
        accept = hashlib.sha1(key + _WS_GUID, usedforsecurity=False).digest()
        self._accept = base64.b64encode(accept)
        request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {origin}\r\n\r\n"
        )
        assert self._transport is not None
        self._transport.write(request.encode("ascii"))
        opcode, hello = await self._next_frame()
        assert opcode == _TEXT, f"the server's hello came as opcode {opcode}"
        self._write(_TEXT, self.protocol.receive_hello(hello.decode("utf-8")).encode("utf-8"))
        opcode, record = await self._next_frame()
        assert opcode == _BINARY, f"the greeting came as opcode {opcode}"
        self.greeting = self.protocol.receive_greeting(record)
        self._opener = self.protocol.fast_opener()
        while not self._events.empty():  # records that came with the greeting
            opcode, record = self._events.get_nowait()
            self._record(record)

    async def _next_frame(self) -> tuple[int, bytes]:
        get = asyncio.ensure_future(self._events.get())
        await asyncio.wait([get, self.done], return_when=asyncio.FIRST_COMPLETED)
        if not get.done():
            get.cancel()
            raise AssertionError(f"the connection ended during the handshake ({self.closed})")
        return get.result()

    # -- sending ----------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Seal and write ``message`` (no waiting: the transport buffers)."""
        if self.closed is not None:
            raise AssertionError(f"send on a closed session ({self.closed})")
        self._write(_BINARY, self.protocol.seal(message))

    def _write(self, opcode: int, payload: bytes) -> None:
        assert self._transport is not None
        self._transport.write(_frame(opcode, payload))

    async def close(self, timeout: float = 10.0) -> None:
        """Close handshake (1000), then the socket."""
        if self.closed is None and self._transport is not None:
            self._write(_CLOSE, struct.pack("!H", 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.done), timeout)
        self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- receiving ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # asyncio's Protocol API types it as BaseTransport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is None:
            self.closed = 1006
        if not self.done.done():
            self.done.set_result(self.closed)

    def _fail(self, failure: BaseException) -> None:
        if self.failure is None:
            self.failure = failure
        self.abort()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        try:
            if not self._upgraded and not self._upgrade():
                return
            self._frames()
        except Exception as exc:  # kept for the test to report
            self._fail(exc)

    def _upgrade(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        if not head[0].startswith("HTTP/1.1 101"):
            raise AssertionError(f"the upgrade was refused: {head[0]}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if headers.get("sec-websocket-accept", "").encode() != self._accept:
            raise AssertionError("bad Sec-WebSocket-Accept")
        self._upgraded = True
        return True

    def _frames(self) -> None:
        buffer = self._buffer
        start = 0
        size = len(buffer)
        while size - start >= 2:
            first, second = buffer[start], buffer[start + 1]
            if second & 0x80:
                raise AssertionError("the server masked a frame")
            length = second & 0x7F
            offset = start + 2
            if length == 126:
                if size - offset < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset)
                offset += 2
            elif length == 127:
                if size - offset < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset)
                offset += 8
            if size - offset < length:
                break
            payload = bytes(buffer[offset : offset + length])
            start = offset + length
            self._frame(first, payload)
        del buffer[:start]

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == _BINARY and first & 0x80 and self._opener is not None:
            self._record(payload)  # the hot path
            return
        if opcode == 0 or not first & 0x80:  # a fragmented message
            if opcode:
                self._fragment_opcode = opcode
            self._fragments.append(payload)
            if not first & 0x80:
                return
            opcode, payload = self._fragment_opcode, b"".join(self._fragments)
            self._fragments = []
        if opcode == _PING:
            self._write(_PONG, payload)
        elif opcode == _CLOSE:
            self.closed = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
            if self._transport is not None:
                self._write(_CLOSE, payload[:2])
                self._transport.close()
        elif opcode in (_TEXT, _BINARY):
            if self._opener is None:
                self._events.put_nowait((opcode, payload))
            elif opcode == _BINARY:
                self._record(payload)
            else:
                raise AssertionError("a text message after the handshake")

    def _record(self, record: bytes) -> None:
        assert self._opener is not None
        plaintext = self._opener.open(record)  # RecordError: the test fails with it
        self.records += 1
        if plaintext[0] == KIND_JSON:
            self.on_message(_decode_json(plaintext[1:].decode("utf-8")))
        else:
            raise AssertionError("a file chunk in a load test")
