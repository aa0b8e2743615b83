"""The WebSocket under a session: opening it, reading and writing, naming failures.

websocket-client does the WebSocket protocol; this module adds what the session
needs on top: the ``Origin`` header naming the server itself (PROTOCOL.md
"Transport"), a reader that returns whole messages and reports the close code
(websocket-client's own ``recv`` loses it when the server has already gone), and
failures in words a person can act on, and :class:`Link`: one connection with
its :class:`~chatproto.connection.ClientConnection` and its writer thread.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import websocket

from chatproto.codes import CloseCode
from chatproto.connection import ClientConnection, Event, ServerHello
from chatproto.errors import LocalProtocolError, SequenceExhausted

from .address import ServerAddress
from .endings import Cause

CONNECT_TIMEOUT = 10.0  # seconds for TCP + TLS + WebSocket upgrade + hello
NO_STATUS = 1005  # RFC 6455: a close frame without a code
JOIN_TIMEOUT = 5.0  # how long a finished connection waits for its writer thread


class Closed(Exception):
    """The WebSocket closed: ``code`` from the close frame, None if the connection just dropped."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class Transport(Protocol):
    """What the session needs from a WebSocket (websocket-client's ``WebSocket`` has it)."""

    cont_frame: Any  # websocket-client's reassembly of fragmented messages

    def recv_frame(self) -> Any: ...
    def send(self, payload: str | bytes, opcode: int = ...) -> int: ...
    def send_binary(self, payload: bytes) -> int: ...
    def send_close(self, status: int = ..., reason: bytes = ...) -> None: ...
    def pong(self, payload: bytes = ...) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def abort(self) -> None: ...
    def shutdown(self) -> None: ...


Connector = Callable[[ServerAddress, float], Transport]


def connect_websocket(address: ServerAddress, timeout: float) -> Transport:
    """Open the WebSocket: Origin names the server itself; no permessage-deflate."""
    return websocket.create_connection(
        address.url,
        timeout=timeout,
        origin=address.origin,
        enable_multithread=True,  # the writer thread sends while the reader receives
    )


def describe_connect_error(exc: BaseException, address: ServerAddress) -> str:
    """What went wrong when connecting, for a person (never a traceback)."""
    where = address.key
    if isinstance(exc, websocket.WebSocketBadStatusException):
        status = exc.status_code
        if status == 403:
            return (
                f"The server at {where} refused the connection (HTTP 403). It accepts only "
                "the addresses in its allowed hosts: use the address your administrator gave you."
            )
        if status == 404:
            return (
                f"There is no chat service at {address.url} (HTTP 404). Check the address and port."
            )
        return f"The server at {where} answered HTTP {status} instead of opening a chat connection."
    if isinstance(exc, (websocket.WebSocketAddressException, socket.gaierror)):
        return f"Cannot find the server '{address.host}': unknown host name. Check the address."
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"Cannot reach the server at {where}: connection refused. "
            "Is the server running, and is the address right?"
        )
    if isinstance(exc, (socket.timeout, TimeoutError, websocket.WebSocketTimeoutException)):
        return f"The server at {where} did not answer within {CONNECT_TIMEOUT:.0f} seconds."
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"The TLS certificate of {where} could not be verified: {exc.verify_message}."
    if isinstance(exc, ssl.SSLError):
        return f"The TLS connection to {where} failed. Is it really a wss:// server?"
    if isinstance(exc, (OSError, websocket.WebSocketException)):
        detail = getattr(exc, "strerror", None) or type(exc).__name__
        return f"Cannot reach the server at {where}: {detail}."
    return f"The connection to {where} failed ({type(exc).__name__})."


def recv_message(ws: Transport) -> tuple[int, bytes]:
    """The next whole message as ``(opcode, data)``, answering pings on the way.

    Raises :class:`Closed` on a close frame or a dropped connection, and lets
    ``websocket.WebSocketTimeoutException`` through (the caller's keepalive); a
    timeout mid-message is safe, websocket-client keeps the partial frame.
    """
    while True:
        try:
            frame = ws.recv_frame()
        except websocket.WebSocketTimeoutException:
            raise
        except (OSError, websocket.WebSocketException, AttributeError, ValueError):
            raise Closed(None) from None
        opcode = frame.opcode
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY, 0):
            cont = ws.cont_frame
            try:
                cont.validate(frame)
                cont.add(frame)
                if cont.is_fire(frame):
                    opcode, whole = cont.extract(frame)
                    data = whole.data
                    return opcode, data.encode("utf-8") if isinstance(data, str) else bytes(data)
            except websocket.WebSocketException:
                raise Closed(None) from None
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data or b""
            with contextlib.suppress(OSError, websocket.WebSocketException):
                ws.send_close(CloseCode.NORMAL)
            raise Closed(struct.unpack("!H", data[:2])[0] if len(data) >= 2 else NO_STATUS)
        elif opcode == websocket.ABNF.OPCODE_PING:
            try:
                ws.pong(frame.data)
            except (OSError, websocket.WebSocketException):
                raise Closed(None) from None


class LinkEnded(Exception):
    """The connection ended: ``how`` is the server's close code, or what our side saw."""

    def __init__(self, how: int | Cause) -> None:
        super().__init__(how)
        self.how = how


class Link:
    """One WebSocket connection: the socket, its ClientConnection and its writer thread.

    The writer seals each record when it takes it from the queue, so records go
    out in sequence order; the reader (the session's thread) opens them through
    :meth:`hello` and :meth:`events`, which end with :class:`LinkEnded`.
    """

    def __init__(self, ws: Transport, conn: ClientConnection) -> None:
        self.ws = ws
        self.conn = conn
        self.closed = False
        self._pings = itertools.count(1)
        self.outgoing: queue.Queue[Callable[[], bytes | None] | None] = queue.Queue()
        self.writer = threading.Thread(
            target=self._write_loop, name="chat-session-writer", daemon=True
        )

    def hello(self) -> ServerHello:
        """The server's hello (within the connect timeout); nothing is sent before it."""
        try:
            events = self._receive()
        except websocket.WebSocketTimeoutException:
            raise LinkEnded(Cause.NO_HELLO) from None
        hello = next((e for e in events if isinstance(e, ServerHello)), None)
        if hello is None:
            self.close_with(CloseCode.BAD_HANDSHAKE)
            raise LinkEnded(Cause.BAD_HANDSHAKE)
        return hello

    def events(self, keepalive: float, answer_wait: float) -> Iterator[Event]:
        """Send the key (the caller trusts the hello), then yield the connection's events.

        After ``keepalive`` seconds of silence it pings; if the ping gets no
        answer within ``answer_wait`` (at most ``keepalive``), the connection is
        dropped, as it is when the greeting takes that long. Nothing, not even a
        ping, is sent before the greeting (key confirmation).
        """
        answer_wait = min(answer_wait, keepalive)
        self.ws.send(self.conn.send_key())
        waiting = answer_wait  # for the greeting
        self.ws.settimeout(waiting)
        self.writer.start()
        pinging = False
        while True:
            try:
                events = self._receive()
            except websocket.WebSocketTimeoutException:
                if not self.conn.ready or pinging:
                    self.abort()
                    raise LinkEnded(Cause.SILENT if pinging else Cause.NO_GREETING) from None
                pinging = True
                waiting = answer_wait
                self.ws.settimeout(waiting)
                self.put_json({"type": "ping", "id": f"keepalive{next(self._pings)}"})
                continue
            pinging = False
            if self.conn.ready and waiting != keepalive:
                waiting = keepalive
                self.ws.settimeout(waiting)
            yield from events

    def _receive(self) -> list[Event]:
        try:
            opcode, data = recv_message(self.ws)
        except Closed as closed:
            raise LinkEnded(Cause.DROPPED if closed.code is None else closed.code) from None
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return self.conn.receive_bytes(data)
        return self.conn.receive_text(data.decode("utf-8", "replace"))

    def put_json(self, message: dict[str, Any], before: Callable[[], bool] | None = None) -> None:
        """Queue a message; ``before`` (if given) runs first and returns False to drop it."""

        def seal() -> bytes | None:
            if before is not None and not before():
                return None
            return self.conn.send(message)

        self.outgoing.put(seal)

    def put_login(self, request_id: str, username: str, password: str, **kw: Any) -> None:
        """Queue a login (``otp``, ``register``: see ClientConnection.send_login).

        Skipped if a login is already on the wire or was answered with login_ok.
        """

        def seal() -> bytes | None:
            if not self.conn.may_log_in:
                return None
            return self.conn.send_login(request_id, username, password, **kw)

        self.outgoing.put(seal)

    def put_resume(self, request_id: str, username: str, token: str) -> None:
        """Queue a ``resume`` with a remembered device's token (PROTOCOL.md 3.4); like a login,
        skipped if a login is already on the wire or was answered with login_ok."""

        def seal() -> bytes | None:
            if not self.conn.may_log_in:
                return None
            return self.conn.send_resume(request_id, username, token)

        self.outgoing.put(seal)

    def put_chunk(self, transfer: bytes, index: int, data: bytes | memoryview) -> None:
        self.outgoing.put(lambda: self.conn.send_chunk(transfer, index, data))

    def _write_loop(self) -> None:
        while True:
            seal = self.outgoing.get()
            if seal is None or self.closed:
                return
            try:
                data = seal()
                if data is not None:
                    self.ws.send_binary(data)
            except SequenceExhausted:
                self.close_with(CloseCode.NORMAL)  # PROTOCOL.md 2: close with 1000, then reconnect
                return
            except (OSError, websocket.WebSocketException, LocalProtocolError):
                self.abort()
                return

    def close_with(self, code: int) -> None:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.send_close(code)
        self.abort()

    def abort(self) -> None:
        """Wake the reader (its recv fails) and stop the writer."""
        self.closed = True
        self.outgoing.put(None)
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.abort()

    def finish(self) -> None:
        self.closed = True
        self.outgoing.put(None)
        if self.writer.is_alive() and threading.current_thread() is not self.writer:
            self.writer.join(JOIN_TIMEOUT)
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.shutdown()
        self.conn.close()
