"""Sans-I/O connections: the whole session state machine of both sides, in one table.

(Over 600 lines on purpose, as h11 keeps its state machine in one file: the client's
and the server's sides share one state table and one receive path, and the table is
only readable whole.)

A shell (the Channels consumer, the client's socket thread) feeds each received
WebSocket message to ``receive_text`` or ``receive_bytes`` and acts on the
returned events, in order::

    for event in conn.receive_bytes(data):
        if isinstance(event, SendRecord): send event.data
        elif isinstance(event, CloseConnection): close with event.code; stop
        elif isinstance(event, RequestReceived): handle event.request
        ...

The connection itself answers what the protocol answers without the
application (bad requests, ``not_authenticated``), counts bad requests and
failed logins, and turns every remote violation into the close code that
PROTOCOL.md names. Time is the caller's: it asks :meth:`ServerConnection.deadline`
when to call :meth:`ServerConnection.timed_out`.

The client's side knows the login too (PROTOCOL.md 3.1): it notes the
``login`` or ``register`` it sends and turns the answer into :class:`LoggedIn`,
:class:`LoginFailed`, :class:`RegisterFailed` or :class:`LoginRefused`, and an
authenticated ``session_ended`` into :class:`SessionEnded`. Each of these is a
:class:`MessageReceived` too, so a tool that only wants the messages still
sees every one. A strict client (``ClientConnection(strict=True)``, the chat
clients) also refuses to send what the server would refuse in its state.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .codes import CloseCode, ErrorCode
from .errors import LocalProtocolError, MessageError, RemoteProtocolError
from .framing import (
    KIND_JSON,
    FileChunk,
    chunk_plaintext,
    decode_plaintext,
    encode_chunk,
    encode_json,
)
from .handshake import ClientHandshake, ServerHandshake, ServerIdentity, SessionKeys
from .limits import (
    KEY_DEADLINE_SECONDS,
    LOGIN_DEADLINE_SECONDS,
    MAX_BAD_REQUESTS,
    MAX_LOGIN_FAILURES,
    MAX_TEXT,
)
from .messages import (
    ENROLMENT_TYPES,
    LOGIN_TYPES,
    PRE_LOGIN_TYPES,
    Context,
    Request,
    answer,
    validate_request,
)
from .records import RecordOpener, RecordSealer

_JSON_KIND = bytes([KIND_JSON])
# The ``forbidden`` message to a session that must enrol before anything else (3.4).
ENROLMENT_FIRST = (
    "this server requires two-factor login: set it up (otp_setup, then otp_confirm) first"
)


class State(enum.Enum):
    AWAITING_HELLO = "awaiting hello"  # client: connected, nothing received
    AWAITING_TRUST = "awaiting trust"  # client: hello received; the user decides on the key
    AWAITING_KEY = "awaiting key"  # server: hello sent
    AWAITING_GREETING = "awaiting greeting"  # client: key sent; nothing may be sent yet
    AWAITING_LOGIN = "awaiting login"  # records flow; only login, register, ping are served
    LOGGING_IN = "logging in"  # client: login or register sent, its answer not yet received
    LOGGED_IN = "logged in"
    CLOSED = "closed"


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRecord:
    """Send ``data`` as one binary WebSocket message."""

    data: bytes


@dataclass(frozen=True)
class CloseConnection:
    """Close the WebSocket with ``code``, after sending what came before; send nothing after."""

    code: CloseCode


@dataclass(frozen=True)
class HandshakeComplete:
    """Server: the keys are agreed; ``session_id`` is the log id (8 bytes of th, in hex)."""

    session_id: str


@dataclass(frozen=True)
class RequestReceived:
    """Server: a validated request that this state admits."""

    request: Request


@dataclass(frozen=True)
class ServerHello:
    """Client: the server's identity; check the pin, then call ``send_key()`` or close."""

    identity: ServerIdentity


@dataclass(frozen=True)
class Greeting:
    """Client: the first record opened, so the server holds the pinned key. Safe to log in."""

    message: dict[str, Any]


@dataclass(frozen=True)
class MessageReceived:
    """Client: a server message (any ``type``, including ones this client does not know)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class LoggedIn(MessageReceived):
    """Client: ``login_ok`` answered our login, registration or resume: every request may go."""

    username: str
    rooms: list[dict[str, Any]]

    @property
    def device(self) -> str | None:
        """The device this session logged in as (a ``remember`` or a ``resume``), if any."""
        device = self.message.get("device")
        return device if isinstance(device, str) else None

    @property
    def token(self) -> str | None:
        """The new device's token (only after a ``login`` or ``register`` with ``remember``)."""
        token = self.message.get("token")
        return token if isinstance(token, str) else None

    @property
    def otp_enrolment_required(self) -> bool:
        """The server requires two-factor login and the account has none yet (3.4)."""
        return self.message.get("otp_enrolment_required") is True


@dataclass(frozen=True)
class LoginRefused(MessageReceived):
    """Client: something other than ``login_ok`` answered our login or registration.

    This class itself stands for an ``error`` (or an unexpected type) carrying
    the login's ``ref``; :class:`LoginFailed` and :class:`RegisterFailed` are
    the answers PROTOCOL.md 3.1 names. ``reason`` is the answer's ``reason``
    (else its type), ``retry_after`` whole seconds when rate limited,
    ``registering`` whether the refused request was a ``register``. Another
    login may be sent on the same connection.
    """

    reason: str
    retry_after: int | None
    registering: bool

    @property
    def code(self) -> str | None:
        """The error code of an ``error`` answer (``internal`` is worth retrying)."""
        code = self.message.get("code")
        return code if self.message.get("type") == "error" and isinstance(code, str) else None

    @property
    def detail(self) -> str:
        """The server's own words (``register_failed`` and ``error`` carry ``message``)."""
        words = self.message.get("message")
        return words if isinstance(words, str) else ""


@dataclass(frozen=True)
class LoginFailed(LoginRefused):
    """Client: ``login_failed`` (invalid_credentials, rate_limited, otp_required)."""


@dataclass(frozen=True)
class RegisterFailed(LoginRefused):
    """Client: ``register_failed`` (closed, username_taken, invalid_*, rate_limited)."""


@dataclass(frozen=True)
class BadLoginAnswer(MessageReceived):
    """Client: a ``login_ok`` without its user or rooms; a :class:`CloseConnection` follows."""


@dataclass(frozen=True)
class SessionEnded(MessageReceived):
    """Client: the server ended the session (deactivated, ended_by_admin); 4003 follows.

    It came through the record layer, so unlike the close frame it is authentic.
    """

    reason: str


@dataclass(frozen=True)
class ChunkReceived:
    """A file chunk record (either side)."""

    chunk: FileChunk


Event = (
    SendRecord
    | CloseConnection
    | HandshakeComplete
    | RequestReceived
    | ServerHello
    | Greeting
    | MessageReceived
    | ChunkReceived
)
# LoggedIn, LoginRefused (LoginFailed, RegisterFailed), BadLoginAnswer and SessionEnded are
# MessageReceived: the union above covers them.


def error_message(
    code: ErrorCode | str, message: str, ref: str | None = None, retry_after: int | None = None
) -> dict[str, Any]:
    """An ``error`` message; ``ref`` only where the request had a valid id.

    A ``rate_limited`` error always carries ``retry_after`` (whole seconds, at least
    1; PROTOCOL.md 3.2): 1 when the caller knows no better.
    """
    if str(code) != ErrorCode.RATE_LIMITED.value:
        return answer("error", ref, code=str(code), message=message)
    wait = max(1, retry_after or 1)
    return answer("error", ref, code=str(code), message=message, retry_after=wait)


class _Records:
    """The two directions of a session, for whichever side we are."""

    def __init__(
        self, keys: SessionKeys, *, server: bool, iv_source: Callable[[int], bytes]
    ) -> None:
        if server:
            self.sealer = RecordSealer(keys.s2c_enc, keys.s2c_mac, iv_source=iv_source)
            self.opener = RecordOpener(keys.c2s_enc, keys.c2s_mac)
        else:
            self.sealer = RecordSealer(keys.c2s_enc, keys.c2s_mac, iv_source=iv_source)
            self.opener = RecordOpener(keys.s2c_enc, keys.s2c_mac)


class _Connection:
    state: State
    _records: _Records | None
    # What a WebSocket message does in each state: a method, or the close code it earns.
    _TABLE: dict[State, dict[str, str | CloseCode | None]] = {}

    def receive_text(self, text: str) -> list[Event]:
        return self._dispatch("text", text)

    def receive_bytes(self, data: bytes) -> list[Event]:
        return self._dispatch("binary", data)

    def _dispatch(self, kind: str, data: Any) -> list[Event]:
        action = self._TABLE[self.state][kind]
        if action is None:
            return []
        if isinstance(action, CloseCode):
            return self._close(action)
        events: list[Event] = getattr(self, action)(data)
        return events

    def _close(self, code: CloseCode) -> list[Event]:
        self.state = State.CLOSED
        return [CloseConnection(code)]

    @property
    def records_sent(self) -> int:
        """How many records this side has sealed: the sequence number of its next record.

        Read-only. For tools that seal records of their own with the session's
        :attr:`keys` (a test peer forging what :meth:`send` refuses to carry):
        theirs must continue from here to be accepted.
        """
        return self._records.sealer.seq if self._records is not None else 0

    def _seal(self, plaintext: bytes | memoryview) -> bytes:
        if self._records is None or self.state not in self._SENDING_STATES:
            raise LocalProtocolError(f"cannot send records in state {self.state.value}")
        return self._records.sealer.seal(plaintext)

    def send(self, message: Mapping[str, Any]) -> bytes:
        """The record carrying a JSON message. LocalProtocolError if not allowed now."""
        return self._seal(encode_json(message))

    def send_plaintext(self, plaintext: bytes) -> bytes:
        """The record carrying a plaintext that :func:`~chatproto.framing.encode_json` made.

        For fan-out: a server encodes a message once and seals it for every
        session, instead of encoding it again per session. LocalProtocolError
        if not allowed now or if ``plaintext`` is not an encoded JSON message.
        """
        if plaintext[:1] != _JSON_KIND:
            raise LocalProtocolError("send_plaintext takes what encode_json returns")
        return self._seal(plaintext)

    def send_chunk(self, transfer: bytes, index: int, data: bytes | memoryview) -> bytes:
        """The record carrying a file chunk."""
        return self._seal(encode_chunk(transfer, index, data))

    def close(self) -> None:
        """The shell closed the socket (or saw it close); nothing more is sent or read."""
        self.state = State.CLOSED

    def _open(self, data: bytes) -> dict[str, Any] | FileChunk | CloseConnection | MessageError:
        """The record's content; a MessageError is returned (not raised) for the caller to judge.

        Opened as a view: a chunk's data is never copied out of the decrypted record
        (:class:`~chatproto.framing.FileChunk`).
        """
        assert self._records is not None
        try:
            plaintext = self._records.opener.open_view(data)
        except RemoteProtocolError as exc:
            return CloseConnection(exc.close_code)
        try:
            return decode_plaintext(plaintext)
        except MessageError as exc:
            return exc

    _SENDING_STATES: frozenset[State] = frozenset()


class ServerConnection(_Connection):
    """The server's side of one session."""

    _TABLE: dict[State, dict[str, str | CloseCode | None]] = {
        State.AWAITING_KEY: {"text": "_on_key", "binary": CloseCode.BAD_HANDSHAKE},
        State.AWAITING_LOGIN: {"text": CloseCode.BAD_RECORD, "binary": "_on_record"},
        State.LOGGED_IN: {"text": CloseCode.BAD_RECORD, "binary": "_on_record"},
        State.CLOSED: {"text": None, "binary": None},
    }
    _SENDING_STATES = frozenset({State.AWAITING_LOGIN, State.LOGGED_IN})

    def __init__(
        self,
        private_key: RSAPrivateKey,
        *,
        max_text: int = MAX_TEXT,
        eph_private: X25519PrivateKey | None = None,
        iv_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not 1 <= max_text <= MAX_TEXT:
            # The greeting announces max_text and the protocol caps it at MAX_TEXT.
            raise ValueError(f"max_text must be 1 to {MAX_TEXT} code points, not {max_text}")
        self._handshake: ServerHandshake | None = ServerHandshake(
            private_key, eph_private=eph_private
        )
        self._context = Context(max_text=max_text)
        self._iv_source = iv_source
        self._records = None
        self.keys: SessionKeys | None = None
        self.state = State.AWAITING_KEY
        self.bad_requests = 0
        self.login_failures = 0
        # Logged in, but the server requires two-factor login and the account has none:
        # only ENROLMENT_TYPES are served until :meth:`enrolled` (PROTOCOL.md 3.4).
        self.enrolment_required = False

    @property
    def session_id(self) -> str | None:
        return self.keys.session_id if self.keys else None

    def hello(self) -> str:
        """The ``hello`` text message to send on connect. LocalProtocolError after the key."""
        if self._handshake is None:
            raise LocalProtocolError("hello after the key message")
        return self._handshake.hello()

    def _on_key(self, text: str) -> list[Event]:
        handshake = self._handshake
        # One key message per session, whatever its outcome: the handshake state (the
        # ephemeral key, the server key's DER) is not needed after it, so a session
        # does not keep it for its lifetime.
        self._handshake = None
        assert handshake is not None  # the table admits one key message per session
        try:
            self.keys = handshake.receive_key(text)
        except RemoteProtocolError as exc:
            return self._close(exc.close_code)
        self._records = _Records(self.keys, server=True, iv_source=self._iv_source)
        self.state = State.AWAITING_LOGIN
        return [HandshakeComplete(self.keys.session_id)]

    def _on_record(self, data: bytes) -> list[Event]:
        opened = self._open(data)
        if isinstance(opened, CloseConnection):
            return self._close(opened.code)
        if isinstance(opened, MessageError):
            return self.reply_error(opened.code, opened.message, opened.ref)
        if isinstance(opened, FileChunk):
            if self.state is not State.LOGGED_IN:
                return self.reply_error(ErrorCode.NOT_AUTHENTICATED, "log in first")
            if self.enrolment_required:
                return self.reply_error(ErrorCode.FORBIDDEN, ENROLMENT_FIRST)
            return [ChunkReceived(opened)]
        try:
            request = validate_request(opened, self._context)
        except MessageError as exc:
            return self.reply_error(exc.code, exc.message, exc.ref)
        if self.state is State.AWAITING_LOGIN and request.type not in PRE_LOGIN_TYPES:
            return self.reply_error(ErrorCode.NOT_AUTHENTICATED, "log in first", request.id)
        if self.state is State.LOGGED_IN and request.type in LOGIN_TYPES:
            return self.reply_error(ErrorCode.BAD_REQUEST, "already logged in", request.id)
        if self.enrolment_required and request.type not in ENROLMENT_TYPES:
            return self.reply_error(ErrorCode.FORBIDDEN, ENROLMENT_FIRST, request.id)
        return [RequestReceived(request)]

    def forward_chunk(self, chunk: FileChunk) -> bytes:
        """The record relaying ``chunk`` (received on another session) to this client.

        A chunk read from a record is sealed from that record's plaintext as it
        was opened: no copy of its data (:func:`~chatproto.framing.chunk_plaintext`,
        which keeps :func:`~chatproto.framing.encode_chunk`'s checks).
        LocalProtocolError if not allowed now.
        """
        return self._seal(chunk_plaintext(chunk))

    def reply(self, message: Mapping[str, Any]) -> list[Event]:
        """Events that send ``message`` (convenience for code that deals in events)."""
        return [SendRecord(self.send(message))]

    def reply_error(
        self,
        code: ErrorCode | str,
        message: str,
        ref: str | None = None,
        retry_after: int | None = None,
        *,
        bad_request: bool = False,
    ) -> list[Event]:
        """Send an ``error`` (``retry_after``: see :func:`error_message`); the 10th
        bad_request/too_large of a session (or other error that the caller says is a bad
        request: ``bad_request``, a stray file chunk) then closes 4008."""
        events: list[Event] = [
            SendRecord(self.send(error_message(code, message, ref, retry_after)))
        ]
        if bad_request or str(code) in (ErrorCode.BAD_REQUEST.value, ErrorCode.TOO_LARGE.value):
            self.bad_requests += 1
            if self.bad_requests >= MAX_BAD_REQUESTS:
                events += self._close(CloseCode.POLICY)
        return events

    def login_succeeded(self, *, enrolment_required: bool = False) -> None:
        """The application accepted a login, registration or resume: serve every request now,
        or only ``ENROLMENT_TYPES`` while ``enrolment_required`` (until :meth:`enrolled`)."""
        if self.state is not State.AWAITING_LOGIN:
            raise LocalProtocolError(f"login in state {self.state.value}")
        self.state = State.LOGGED_IN
        self.enrolment_required = enrolment_required

    def enrolled(self) -> None:
        """The account now has two-factor login (``otp_confirm`` succeeded): serve everything."""
        self.enrolment_required = False

    def login_failed(self, answer: Mapping[str, Any]) -> list[Event]:
        """Send a ``login_failed`` answer; the 5th failure in a session then closes 4001."""
        events: list[Event] = [SendRecord(self.send(answer))]
        self.login_failures += 1
        if self.login_failures >= MAX_LOGIN_FAILURES:
            events += self._close(CloseCode.LOGIN_FAILURES)
        return events

    def deadline(self) -> float | None:
        """Seconds after the hello at which :meth:`timed_out` must be called, if any."""
        if self.state is State.AWAITING_KEY:
            return KEY_DEADLINE_SECONDS
        if self.state is State.AWAITING_LOGIN:
            return LOGIN_DEADLINE_SECONDS
        return None

    def timed_out(self, elapsed: float) -> list[Event]:
        """The close a missed deadline earns (4000 for key, 4008 for login), or nothing."""
        if self.state is State.AWAITING_KEY and elapsed >= KEY_DEADLINE_SECONDS:
            return self._close(CloseCode.BAD_HANDSHAKE)
        if self.state is State.AWAITING_LOGIN and elapsed >= LOGIN_DEADLINE_SECONDS:
            return self._close(CloseCode.POLICY)
        return []


class ClientConnection(_Connection):
    """The client's side of one session: handshake, key confirmation, login, end.

    Nothing can be sent after ``key`` until the greeting record has been
    opened (:class:`Greeting`), so a password never goes to a server that does
    not hold the pinned private key. The ``login`` or ``register`` that
    :meth:`send` carries moves the connection to ``LOGGING_IN``; its answer
    (matched by ``ref``) to ``LOGGED_IN`` or back to ``AWAITING_LOGIN``.

    ``strict`` (the chat clients) refuses, with :class:`LocalProtocolError`,
    what the server would refuse in the current state: any request but
    ``login``, ``register`` and ``ping`` before ``login_ok``, a second login
    while one is unanswered or after ``login_ok``, a chunk before login, a
    login without an ``id`` (its answer could not be recognised). It is off by
    default for tools that play a misbehaving client to test the server.
    """

    _TABLE: dict[State, dict[str, str | CloseCode | None]] = {
        State.AWAITING_HELLO: {"text": "_on_hello", "binary": CloseCode.BAD_HANDSHAKE},
        State.AWAITING_TRUST: {"text": CloseCode.BAD_HANDSHAKE, "binary": CloseCode.BAD_HANDSHAKE},
        State.AWAITING_GREETING: {"text": CloseCode.BAD_HANDSHAKE, "binary": "_on_greeting"},
        State.AWAITING_LOGIN: {"text": CloseCode.BAD_RECORD, "binary": "_on_record"},
        State.LOGGING_IN: {"text": CloseCode.BAD_RECORD, "binary": "_on_record"},
        State.LOGGED_IN: {"text": CloseCode.BAD_RECORD, "binary": "_on_record"},
        State.CLOSED: {"text": None, "binary": None},
    }
    _SENDING_STATES = frozenset({State.AWAITING_LOGIN, State.LOGGING_IN, State.LOGGED_IN})
    # Strict mode: the request types each state lets out (PROTOCOL.md 3.1); None: all but a login.
    _SENDABLE: dict[State, frozenset[str] | None] = {
        State.AWAITING_LOGIN: PRE_LOGIN_TYPES,
        State.LOGGING_IN: frozenset({"ping"}),
        State.LOGGED_IN: None,
    }
    _LOGIN_TYPES = LOGIN_TYPES

    def __init__(
        self,
        *,
        strict: bool = False,
        secret: bytes | None = None,
        eph_private: X25519PrivateKey | None = None,
        key_ciphertext: bytes | None = None,
        iv_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        # Every keyword but strict is a seam for the known-answer tests only (see ClientHandshake).
        self._handshake = ClientHandshake(
            secret=secret, eph_private=eph_private, key_ciphertext=key_ciphertext
        )
        self.strict = strict
        self._iv_source = iv_source
        self._records: _Records | None = None
        self.identity: ServerIdentity | None = None
        self.keys: SessionKeys | None = None
        self.state = State.AWAITING_HELLO
        # The login or register on the wire: its id (None if it had none) and its type.
        self._login: tuple[str | None, str] | None = None
        self.username: str | None = None  # from login_ok
        self.ended: SessionEnded | None = None  # the authenticated session_ended, once received
        self._closed_in = State.AWAITING_HELLO

    @property
    def progress(self) -> State:
        """How far the session got: its state, or the state it was in when it closed."""
        return self._closed_in if self.state is State.CLOSED else self.state

    def _close(self, code: CloseCode) -> list[Event]:
        self.close()
        return [CloseConnection(code)]

    def close(self) -> None:
        if self.state is not State.CLOSED:
            self._closed_in = self.state
        super().close()

    @property
    def ready(self) -> bool:
        """True once the greeting verified: requests may be sent."""
        return self.state in self._SENDING_STATES

    @property
    def logged_in(self) -> bool:
        return self.state is State.LOGGED_IN

    @property
    def may_log_in(self) -> bool:
        """True when a ``login`` or ``register`` may be sent now (greeted, none unanswered)."""
        return self.state is State.AWAITING_LOGIN

    # --- handshake ------------------------------------------------------------------------

    def _on_hello(self, text: str) -> list[Event]:
        try:
            self.identity = self._handshake.receive_hello(text)
        except RemoteProtocolError as exc:
            return self._close(exc.close_code)
        self.state = State.AWAITING_TRUST
        return [ServerHello(self.identity)]

    def send_key(self) -> str:
        """The ``key`` text message, once the caller trusts :attr:`identity`."""
        if self.state is not State.AWAITING_TRUST:
            raise LocalProtocolError(f"cannot send key in state {self.state.value}")
        text = self._handshake.key_message()
        self.keys = self._handshake.keys
        assert self.keys is not None
        self._records = _Records(self.keys, server=False, iv_source=self._iv_source)
        self.state = State.AWAITING_GREETING
        return text

    def _on_greeting(self, data: bytes) -> list[Event]:
        opened = self._open(data)
        if isinstance(opened, CloseConnection):
            return self._close(opened.code)
        if not isinstance(opened, dict) or opened.get("type") != "greeting":
            return self._close(CloseCode.BAD_HANDSHAKE)
        self.state = State.AWAITING_LOGIN
        return [Greeting(opened)]

    # --- sending --------------------------------------------------------------------------

    def send(self, message: Mapping[str, Any]) -> bytes:
        """The record carrying a request; notes a login. LocalProtocolError if not allowed now."""
        kind = message.get("type")
        if self.strict:
            self._check(kind, message)
        record = super().send(message)
        if kind in self._LOGIN_TYPES and self.state in (State.AWAITING_LOGIN, State.LOGGING_IN):
            request_id = message.get("id")
            self._login = (request_id if isinstance(request_id, str) else None, str(kind))
            self.state = State.LOGGING_IN
        return record

    def send_login(
        self,
        request_id: str,
        username: str,
        password: str,
        *,
        otp: str | None = None,
        register: bool = False,
        remember: str | None = None,
    ) -> bytes:
        """The record carrying a ``login``, or a ``register`` (which takes no ``otp``).

        ``remember``: the name of this device; its ``login_ok`` then carries a
        token for :meth:`send_resume` (PROTOCOL.md 3.4).
        """
        message: dict[str, Any] = {
            "type": "register" if register else "login",
            "id": request_id,
            "username": username,
            "password": password,
        }
        if otp and not register:
            message["otp"] = otp
        if remember:
            message["remember"] = remember
        return self.send(message)

    def send_resume(self, request_id: str, username: str, token: str) -> bytes:
        """The record carrying a ``resume``: a remembered device logs in with its token."""
        return self.send({"type": "resume", "id": request_id, "username": username, "token": token})

    def send_plaintext(self, plaintext: bytes) -> bytes:
        """For tools only: a strict client sends with :meth:`send`, which checks the type."""
        if self.strict:
            raise LocalProtocolError("a strict client sends messages with send()")
        return super().send_plaintext(plaintext)

    def send_chunk(self, transfer: bytes, index: int, data: bytes | memoryview) -> bytes:
        """The record carrying a file chunk; a strict client sends none before login."""
        if self.strict and self.state in self._SENDING_STATES and not self.logged_in:
            raise LocalProtocolError("cannot send file chunks before login")
        return super().send_chunk(transfer, index, data)

    def _check(self, kind: Any, message: Mapping[str, Any]) -> None:
        if self.state not in self._SENDABLE:
            return  # _seal refuses with the state's name
        allowed = self._SENDABLE[self.state]
        if kind in self._LOGIN_TYPES:
            if self.state is not State.AWAITING_LOGIN:
                raise LocalProtocolError(f"cannot send {kind} in state {self.state.value}")
            if not isinstance(message.get("id"), str):
                raise LocalProtocolError(f"a {kind} needs an id to recognise its answer")
        elif allowed is not None and kind not in allowed:
            raise LocalProtocolError(f"cannot send {kind!r} before login")

    # --- receiving ------------------------------------------------------------------------

    def _on_record(self, data: bytes) -> list[Event]:
        opened = self._open(data)
        if isinstance(opened, CloseConnection):
            return self._close(opened.code)
        if isinstance(opened, MessageError):
            return []  # a client ignores what it cannot read; the session goes on
        if isinstance(opened, FileChunk):
            return [ChunkReceived(opened)]
        if self.state is State.LOGGING_IN and self._answers_login(opened):
            return self._on_login_answer(opened)
        if self.state is State.LOGGED_IN and opened.get("type") == "session_ended":
            reason = opened.get("reason")
            self.ended = SessionEnded(opened, reason if isinstance(reason, str) else "ended")
            return [self.ended]
        return [MessageReceived(opened)]

    def _answers_login(self, message: dict[str, Any]) -> bool:
        assert self._login is not None
        login_id = self._login[0]
        if login_id is not None:
            return bool(message.get("ref") == login_id)
        # A login without an id gets its answer without ref (tools only; strict needs an id).
        return "ref" not in message and message.get("type") in _LOGIN_ANSWERS

    def _on_login_answer(self, message: dict[str, Any]) -> list[Event]:
        assert self._login is not None
        registering = self._login[1] == "register"
        self._login = None
        kind = message.get("type")
        if kind == "login_ok":
            user = message.get("user")
            username = user.get("username") if isinstance(user, dict) else None
            rooms = message.get("rooms")
            if not isinstance(username, str) or not isinstance(rooms, list):
                return [BadLoginAnswer(message), *self._close(CloseCode.NORMAL)]
            self.state = State.LOGGED_IN
            self.username = username
            return [LoggedIn(message, username, rooms)]
        self.state = State.AWAITING_LOGIN
        reason = message.get("reason")
        reason = reason if isinstance(reason, str) else kind if isinstance(kind, str) else "error"
        retry_after = message.get("retry_after")
        retry = retry_after if type(retry_after) is int else None
        refused = {"login_failed": LoginFailed, "register_failed": RegisterFailed}
        return [refused.get(str(kind), LoginRefused)(message, reason, retry, registering)]


# What answers a login or register (PROTOCOL.md 3.1), besides an error with its ref.
_LOGIN_ANSWERS = frozenset({"login_ok", "login_failed", "register_failed"})
