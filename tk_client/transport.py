"""The WebSocket under a session: opening it, reading whole messages, naming failures.

websocket-client does the WebSocket protocol; this module adds what the session
needs on top: the ``Origin`` header naming the server itself (PROTOCOL.md
"Transport"), a reader that returns whole messages and reports the close code
(websocket-client's own ``recv`` loses it when the server has already gone), and
failures in words a person can act on.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any, Protocol

import websocket

from chatproto.codes import CloseCode

from .address import ServerAddress

CONNECT_TIMEOUT = 10.0  # seconds for TCP + TLS + WebSocket upgrade + hello
NO_STATUS = 1005  # RFC 6455: a close frame without a code


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
