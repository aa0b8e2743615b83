"""A blocking test client: websocket-client on a reader thread around :class:`ClientProtocol`.

::

    with connect(server.url, server.origin, server.fingerprint) as client:
        client.login("alice", "pw")                          # the login_ok message
        client.request({"type": "send", "room": "lobby", "text": "hi"})   # the ack
        client.find("message")                               # the broadcast
        client.recv(timeout=0.5)                             # TimeoutError when nothing comes
        client.send_chunk(chunk); client.recv_item()         # chunks in arrival order

The reader thread takes frames off the socket as they come (answering pings
and the server's close at once, as a real client does, even while a test is
busy elsewhere); the test's thread opens them in order. A session is closed
when the ``with`` block ends, whether its asserts passed or not.
"""

from __future__ import annotations

import contextlib
import queue
import struct
import threading
from typing import Any

import websocket

from chatproto.connection import ClientConnection
from chatproto.framing import FileChunk
from tests.protocol_client.core import (
    ABNORMAL_CLOSE,
    DEFAULT_TIMEOUT,
    NO_STATUS,
    ClientProtocol,
    Item,
    Message,
    SessionClosed,
)

_LOST = -1  # queue marker: the connection broke without a close frame


class SyncClient:
    """One session over a real socket; every wait raises TimeoutError or SessionClosed."""

    def __init__(self, ws: websocket.WebSocket, protocol: ClientProtocol) -> None:
        self.ws = ws
        self.protocol = protocol
        self.after_login: list[Message] = []  # what followed login_ok, up to ``users``
        self.device: str | None = None  # login_ok's device (remember, resume): for e2e bodies
        self._frames: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="test-client")
        self._reader.start()

    @property
    def conn(self) -> ClientConnection:
        """chatproto's ClientConnection of this session (``conn.keys`` for log checks)."""
        return self.protocol.conn

    @property
    def greeting(self) -> Message | None:
        return self.protocol.greeting

    # --- frames -------------------------------------------------------------------------------

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

    def read_frame(self, timeout: float = DEFAULT_TIMEOUT) -> bytes | str:
        """The next data frame as it came (bytes or text); SessionClosed once closed."""
        if self.protocol.close_code is not None:
            raise SessionClosed(self.protocol.close_code)
        try:
            opcode, data = self._frames.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing received within {timeout} s") from None
        if opcode == _LOST:
            raise self.protocol.closed(ABNORMAL_CLOSE)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise self.protocol.closed(
                struct.unpack("!H", data[:2])[0] if len(data) >= 2 else NO_STATUS
            )
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return data.decode("utf-8")
        return data

    def _pump(self, timeout: float) -> None:
        self.protocol.receive(self.read_frame(timeout))

    def send_bytes(self, data: bytes) -> None:
        """Send one binary message as it is (tampering and replay tests)."""
        self.ws.send(data, opcode=websocket.ABNF.OPCODE_BINARY)

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    # --- the protocol -------------------------------------------------------------------------

    def handshake(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Hello (pin checked), key, greeting; the greeting."""
        self.send_text(self.protocol.receive_hello(self.read_frame(timeout)))
        return self.protocol.receive_greeting(self.read_frame(timeout))

    def send(self, message: dict[str, Any]) -> bytes:
        """Seal and send a message without waiting; returns the record sent (for replays)."""
        data = self.protocol.seal(message)
        self.send_bytes(data)
        return data

    def send_chunk(self, chunk: FileChunk) -> None:
        self.send_bytes(self.protocol.seal_chunk(chunk))

    def request(self, message: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Send a request (an ``id`` is added if missing) and return its direct answer."""
        ref, data = self.protocol.request(message)
        self.send_bytes(data)
        while (answer := self.protocol.take_answer(ref)) is None:
            self._pump(timeout)
        return answer

    def recv_item(self, timeout: float = DEFAULT_TIMEOUT) -> Item:
        """The next message or file chunk, in the order they came."""
        while (item := self.protocol.take_item()) is None:
            self._pump(timeout)
        return item

    def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next message (file chunks stay pending, for ``recv_chunk`` or ``recv_item``)."""
        while (message := self.protocol.take_message()) is None:
            self._pump(timeout)
        return message

    def recv_chunk(self, timeout: float = DEFAULT_TIMEOUT) -> FileChunk:
        """The next file chunk (messages stay pending)."""
        while (chunk := self.protocol.take_chunk()) is None:
            self._pump(timeout)
        return chunk

    def find(self, kind: str, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next message of type ``kind``; others before it go to ``protocol.skipped``."""
        while (message := self.protocol.take_kind(kind)) is None:
            self._pump(timeout)
        return message

    def expect(self, kind: str, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The next message, which must be of type ``kind``."""
        while (message := self.protocol.take_expected(kind)) is None:
            self._pump(timeout)
        return message

    def login(
        self,
        username: str,
        password: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        otp: str | None = None,
        remember: str | None = None,
    ) -> Message:
        """Log in (``otp``: a two-factor code; ``remember``: a device name, PROTOCOL.md 3.4);
        login_ok, after reading what follows it up to ``users`` (``after_login``).

        AssertionError with the answer if it is not login_ok."""
        message: dict[str, Any] = {"type": "login", "username": username, "password": password}
        if otp is not None:
            message["otp"] = otp
        if remember is not None:
            message["remember"] = remember
        return self._logged_in(username, self.request(message), timeout)

    def resume(self, username: str, token: str, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Log in as a remembered device; login_ok, as :meth:`login`."""
        answer = self.request({"type": "resume", "username": username, "token": token})
        return self._logged_in(username, answer, timeout)

    def _logged_in(self, username: str, answer: Message, timeout: float) -> Message:
        assert answer.get("type") == "login_ok", f"login as {username} failed: {answer}"
        self.device = answer.get("device")
        if answer.get("otp_enrolment_required"):
            self.after_login = []  # nothing follows until the session has enrolled
            return answer
        while (after := self.protocol.take_through("users")) is None:
            self._pump(timeout)
        self.after_login = after
        return answer

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Read until the server closes; its close code. Messages read go to ``skipped``."""
        try:
            while True:
                self.protocol.skipped.append(self.recv(timeout))
        except SessionClosed as closed:
            return closed.code

    def close(self) -> None:
        """Close normally: our close frame, a moment for the reader to see the reply, shut down.

        Safe to call twice, and after the server closed."""
        self.protocol.conn.close()
        with contextlib.suppress(Exception):  # the socket may be gone already
            self.ws.send_close()
        self._reader.join(timeout=1)
        with contextlib.suppress(Exception):
            self.ws.shutdown()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_socket(
    url: str, origin: str | None, timeout: float = DEFAULT_TIMEOUT, **options: Any
) -> websocket.WebSocket:
    """A raw WebSocket to the server (``origin=None`` sends none); the caller closes it."""
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
) -> SyncClient:
    """A session with the handshake done (pin checked, greeting read); use it in ``with``."""
    client = SyncClient(open_socket(url, origin, timeout), ClientProtocol(expected_fingerprint))
    try:
        client.handshake(timeout)
    except BaseException:
        client.close()
        raise
    return client
