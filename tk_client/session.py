"""The network session: one chat server, one background thread, events on a queue.

A thin threaded shell around :class:`chatproto.connection.ClientConnection` (the
sans-I/O handshake and records) and websocket-client, in the manner of
websockets' ``sync`` shell around its ``Protocol``. Nothing here imports tkinter:
the desktop client drains :attr:`ChatSession.events` with ``after()``, the terminal
client in its main loop, the tests directly.

What the session guarantees:

- **Pinning before the key.** On the server's hello the fingerprint is checked
  against :class:`~tk_client.known_servers.KnownServers` *before* ``key`` is sent.
  An unknown key closes the connection and asks the user (:class:`TrustRequired`;
  the server allows only 10 seconds for ``key``, a person needs longer), and
  :meth:`ChatSession.trust` connects again. A changed key is refused
  (:class:`KeyChanged`) and never retried.
- **Key confirmation.** ``ClientConnection`` refuses to send anything after ``key``
  until the greeting record opened, so the password only goes to the pinned key.
- **Nothing typed is lost.** Every request goes through an outbox with a state per
  item (queued -> sent -> done / failed), reported as :class:`RequestUpdate`.
  What is typed while disconnected waits and is sent after the next login; a
  ``send`` or ``pm`` that was on the wire when the connection dropped may or may
  not have arrived, so it is failed with ``uncertain=True`` instead of being sent
  twice. Idempotent requests (history, join...) are simply sent again.
- **Reconnection.** Once logged in, a lost connection is retried with backoff
  (0.5 s doubling to 30 s, with jitter) and the session logs in again with the
  password it keeps in memory for that purpose only (never on disk, never in a
  log, not in ``repr``). What retrying cannot fix is not retried: an
  authenticated ``session_ended``, a rejected password, a changed key. 4008
  (policy) is retried only at the longest delay; 1000 (a direction reached
  2**32 records) reconnects at once.
- **Close codes are hints, not orders.** A WebSocket close frame is not
  protected by the record layer: on ``ws://`` anyone on the path can forge one.
  So no close code alone ends the session for good. 4003 stops the session only
  after the encrypted, MAC-checked ``session_ended`` record arrived on the same
  connection (PROTOCOL.md 3.2: "then the server closes with 4003"); once that
  record is in, the session stops whatever way the connection then ends. A bare
  4003 is a lost connection and is retried with backoff. Likewise 4001 (too
  many failed logins) only follows a ``login_failed`` answer (PROTOCOL.md 3.1),
  and a reconnect's refused login already stops the session on that answer; a
  bare 4001 on an established session is retried too.

Direct answers are matched to their requests by ``ref``; everything else is a push
(:class:`Received`). Hooks added with :meth:`ChatSession.add_hook` see every event
first, on the network thread, which is how file transfers take their chunks
without passing each one through the user interface's queue.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import queue
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import websocket

from chatproto.codes import CloseCode
from chatproto.connection import (
    ChunkReceived,
    ClientConnection,
    CloseConnection,
    Greeting,
    MessageReceived,
    ServerHello,
)
from chatproto.errors import ChatProtoError, LocalProtocolError
from chatproto.records import SequenceExhausted

from .address import ServerAddress
from .events import (
    LOGIN_FAILED_MESSAGES,
    SESSION_ENDED_MESSAGES,
    ChunkArrived,
    ConnectFailed,
    Greeted,
    Hook,
    KeyChanged,
    LoggedIn,
    LoginRejected,
    NotConnected,
    Phase,
    PhaseChanged,
    Received,
    RequestState,
    RequestStatus,
    RequestUpdate,
    SessionEvent,
    Stopped,
    TrustRequired,
    rate_limited_message,
)
from .known_servers import KnownServers, Trust
from .transport import (
    CONNECT_TIMEOUT,
    Closed,
    Connector,
    Transport,
    connect_websocket,
    describe_connect_error,
    recv_message,
)

KEEPALIVE_SECONDS = 25.0  # silence after which we ping; twice that without an answer is a drop
JOIN_TIMEOUT = 5.0  # how long a finished connection waits for its writer thread
CLOSE_WAIT = 1.0  # how long close() waits for the network thread (it is a daemon anyway)

# Requests that can be sent again after a dropped connection without doing anything twice.
IDEMPOTENT_TYPES = frozenset({"users", "rooms", "join", "leave", "history", "ping"})


# --- the session -----------------------------------------------------------------------------


class Backoff:
    """Delays between reconnection attempts: 0.5 s doubling to 30 s, each with +-20% jitter.

    Jitter spreads the reconnections of many clients after a server restart.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._rng = rng or random.SystemRandom()
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the following one."""
        base = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return self._jittered(base)

    def longest(self) -> float:
        """The maximum delay (for 4008, where hurrying makes things worse)."""
        self._next = self.maximum
        return self._jittered(self.maximum)

    def _jittered(self, base: float) -> float:
        return base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._next = self.initial


@dataclass
class _Credentials:
    username: str
    password: str = field(repr=False)
    otp: str | None = field(default=None, repr=False)
    register: bool = False


@dataclass
class _Request:
    id: str
    message: dict[str, Any]
    durable: bool  # survives a dropped connection (queued and sent again)
    state: RequestState = RequestState.QUEUED
    link: _Link | None = None  # the connection it was handed to

    @property
    def type_(self) -> str:
        return self.message["type"]

    def status(self, **changes: Any) -> RequestStatus:
        return RequestStatus(self.id, dict(self.message), self.state, **changes)


class _Ending(enum.Enum):
    """What the network thread does after a connection ends."""

    RETRY = "retry"  # back off, then connect again (if logged in before)
    RETRY_NOW = "retry now"  # 1000 after 2**32 records
    RETRY_SLOW = "retry slow"  # 4008: the longest delay
    WAIT = "wait"  # for the user: trust, a password, another try
    STOP = "stop"


class _Link:
    """One WebSocket connection: the socket, its ClientConnection and its writer thread."""

    def __init__(self, ws: Transport, conn: ClientConnection, session: ChatSession) -> None:
        self.ws = ws
        self.conn = conn
        self.session = session
        self.closed = False
        self.login_sent = False
        self.login_id: str | None = None
        self.logged_in = False
        self.greeted = False
        # The reason of an authenticated ``session_ended`` on this connection (None: none came).
        self.ended_reason: str | None = None
        self.outgoing: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self.writer = threading.Thread(
            target=self._write_loop, name="chat-session-writer", daemon=True
        )

    def put_json(self, message: dict[str, Any], request: _Request | None = None) -> None:
        self.outgoing.put(("json", (message, request)))

    def put_chunk(self, transfer: bytes, index: int, data: bytes) -> None:
        self.outgoing.put(("chunk", (transfer, index, data)))

    def _write_loop(self) -> None:
        while True:
            item = self.outgoing.get()
            if item is None or self.closed:
                return
            kind, payload = item
            try:
                if kind == "json":
                    message, request = payload
                    if request is not None and not self.session._mark_sent(request, self):
                        continue
                    data = self.conn.send(message)
                else:
                    data = self.conn.send_chunk(*payload)
                self.ws.send_binary(data)
            except SequenceExhausted:
                self._close(CloseCode.NORMAL)  # PROTOCOL.md 2: close with 1000, then reconnect
                return
            except (OSError, websocket.WebSocketException, LocalProtocolError):
                self.abort()
                return

    def _close(self, code: int) -> None:
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


class ChatSession:
    """One user's session with one server, reconnecting until :meth:`close`.

    Thread-safe: the user interface calls the public methods from its thread;
    the network thread owns the socket. Events arrive on :attr:`events`.
    """

    def __init__(
        self,
        address: ServerAddress,
        known_servers: KnownServers,
        events: queue.Queue[Any] | None = None,
        *,
        connector: Connector = connect_websocket,
        backoff: Backoff | None = None,
        keepalive: float = KEEPALIVE_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT,
        expected_fingerprint: str | None = None,
    ) -> None:
        """``expected_fingerprint`` trusts a first-seen key only if it matches (``--trust``)."""
        self.address = address
        self.known_servers = known_servers
        self.events: queue.Queue[Any] = events if events is not None else queue.Queue()
        self._connector = connector
        self._backoff = backoff or Backoff()
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._expected_fingerprint = expected_fingerprint
        self._cond = threading.Condition(threading.RLock())
        self._thread: threading.Thread | None = None
        self._hooks: list[Hook] = []
        self._ids = itertools.count(1)
        self._requests: OrderedDict[str, _Request] = OrderedDict()
        self._credentials: _Credentials | None = None
        self._link: _Link | None = None
        self._phase = Phase.IDLE
        # Bumped by every user action that should (re)connect: login, trust, "reconnect now".
        # The thread compares it with its value at the start of an attempt, so an action
        # taken while that attempt was failing is never lost.
        self._kicks = 0
        self._stopping = False
        self._established = False  # logged in at least once: drops are retried
        self._session_ended: str | None = None
        self._retry_floor = 0.0  # seconds the server asked us to wait (rate_limited)
        self.username: str | None = None
        self.greeting: dict[str, Any] | None = None
        self.fingerprint: str | None = None

    def __repr__(self) -> str:
        return f"<ChatSession {self.address.key} {self._phase.value} user={self.username!r}>"

    # --- the user interface's side ---------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    def start(self) -> None:
        """Connect (in the background) and fetch the greeting; log in if credentials are set."""
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="chat-session", daemon=True)
            self._thread.start()

    def login(
        self, username: str, password: str, *, otp: str | None = None, register: bool = False
    ) -> None:
        """Log in (or create the account) as soon as the connection allows."""
        with self._cond:
            self._credentials = _Credentials(username, password, otp or None, register)
            link = self._link
            if link is not None and link.greeted and not link.login_sent and not link.closed:
                self._send_login(link)  # on the connection that is already there
            else:
                self._kicks += 1  # connect (again) for it
                self._cond.notify_all()
        self.start()

    def trust(self, fingerprint: str) -> None:
        """The user accepted this server's key on first use: pin it and connect again."""
        self.known_servers.trust(self.address, fingerprint)
        self.reconnect_now()

    def reconnect_now(self) -> None:
        """Skip the rest of a backoff delay (a "Reconnect now" button), or retry after a failure."""
        with self._cond:
            self._kicks += 1
            self._cond.notify_all()
        self.start()

    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus:
        """Queue a request; its fate arrives as :class:`RequestUpdate` events.

        ``durable`` requests wait through outages (see the module docstring);
        others fail at once when not logged in (``NotConnected``) or on a drop.
        """
        message = {"type": type_, **fields}
        with self._cond:
            if self._phase is Phase.STOPPED:
                raise NotConnected("the session has ended")
            link = self._online_link()
            if not durable and link is None:
                raise NotConnected("not connected to the server")
            request_id = f"r{next(self._ids)}"
            message["id"] = request_id
            request = _Request(request_id, message, durable)
            self._requests[request_id] = request
            if link is not None:
                request.link = link
                link.put_json(message, request)
            return request.status()

    def send_message(self, message: dict[str, Any]) -> None:
        """Send a message whose answer is not tracked (transfer steps); NotConnected if offline."""
        with self._cond:
            link = self._online_link()
            if link is None:
                raise NotConnected("not connected to the server")
            link.put_json(dict(message))

    def send_chunk(self, transfer: bytes, index: int, data: bytes) -> None:
        """Queue one file chunk record on the current connection. NotConnected if offline."""
        with self._cond:
            link = self._online_link()
            if link is None:
                raise NotConnected("not connected to the server")
            link.put_chunk(transfer, index, data)

    def pending(self) -> list[RequestStatus]:
        """Outbox items that are neither answered nor failed."""
        with self._cond:
            return [request.status() for request in self._requests.values()]

    def add_hook(self, hook: Hook) -> None:
        """Let ``hook`` see each event first, on the network thread; True means it took it."""
        self._hooks.append(hook)

    def close(self) -> None:
        """End the session: close the connection, fail what was not sent, stop the thread."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            link = self._link
            self._cond.notify_all()
        if link is not None:
            link._close(CloseCode.NORMAL)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_WAIT)
        with self._cond:
            self._fail_all("not sent: you closed the session")
            if self._phase is not Phase.STOPPED:
                self._set_phase(Phase.STOPPED, "closed")
        self._credentials = None

    # --- helpers under the lock ------------------------------------------------------------

    def _online_link(self) -> _Link | None:
        link = self._link
        if link is not None and link.logged_in and not link.closed:
            return link
        return None

    def _emit(self, event: SessionEvent) -> None:
        for hook in list(self._hooks):
            if hook(event):
                return
        if not isinstance(event, ChunkArrived):  # chunks nobody takes are dropped
            self.events.put(event)

    def _set_phase(self, phase: Phase, detail: str = "", retry_at: float | None = None) -> None:
        self._phase = phase
        self._emit(PhaseChanged(phase, detail, retry_at))

    def _mark_sent(self, request: _Request, link: _Link) -> bool:
        """Writer thread: about to write ``request``; False if it no longer belongs to ``link``."""
        with self._cond:
            if request.link is not link or request.state is not RequestState.QUEUED:
                return False
            request.state = RequestState.SENT
            self._emit(RequestUpdate(request.status()))
            return True

    def _finish_request(
        self,
        request: _Request,
        state: RequestState,
        answer: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        request.state = state
        request.link = None
        self._requests.pop(request.id, None)
        self._emit(RequestUpdate(request.status(**kw), answer))

    def _fail_all(self, reason: str) -> None:
        for request in list(self._requests.values()):
            uncertain = request.state is RequestState.SENT
            self._finish_request(request, RequestState.FAILED, error=reason, uncertain=uncertain)

    def _send_login(self, link: _Link) -> None:
        credentials = self._credentials
        assert credentials is not None
        message: dict[str, Any] = {
            "type": "register" if credentials.register else "login",
            "id": f"login{next(self._ids)}",
            "username": credentials.username,
            "password": credentials.password,
        }
        if credentials.otp and not credentials.register:
            message["otp"] = credentials.otp
        link.login_sent = True
        link.login_id = message["id"]
        link.put_json(message)
        self._set_phase(Phase.LOGGING_IN)

    # --- the network thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    kicks = self._kicks
                    self._set_phase(Phase.RECONNECTING if self._established else Phase.CONNECTING)
                ending, detail = self._connect_once()
                with self._cond:
                    if self._stopping:
                        return
                    if ending is _Ending.STOP:
                        self._stop(detail)
                        return
                    if ending is _Ending.WAIT or not self._established:
                        self._set_phase(Phase.IDLE, detail)
                        while self._kicks == kicks and not self._stopping:
                            self._cond.wait()
                        continue
                    if ending is _Ending.RETRY_NOW:
                        delay = 0.0
                    elif ending is _Ending.RETRY_SLOW:
                        delay = self._backoff.longest()
                    else:
                        delay = self._backoff.next()
                    delay, self._retry_floor = max(delay, self._retry_floor), 0.0
                    self._wait_before_retry(delay, detail, kicks)
        except Exception as exc:  # a bug here must not leave the user staring at a frozen state
            with self._cond:
                self._stop(f"The connection failed unexpectedly ({type(exc).__name__}).")
            raise

    def _wait_before_retry(self, delay: float, detail: str, kicks: int) -> None:
        retry_at = time.monotonic() + delay
        self._set_phase(Phase.RECONNECTING, detail, retry_at)
        while not self._stopping and self._kicks == kicks:
            remaining = retry_at - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _stop(self, message: str) -> None:
        self._fail_all(f"not sent: {message}")
        self._credentials = None
        self._stopping = True
        self._set_phase(Phase.STOPPED, message)
        self._emit(Stopped(self._session_ended or "stopped", message))

    def _connect_once(self) -> tuple[_Ending, str]:
        """One connection from connect to close: what to do next, and why, in words."""
        try:
            ws = self._connector(self.address, self._connect_timeout)
        except Exception as exc:
            return self._before_login_failure(describe_connect_error(exc, self.address))
        link = _Link(ws, ClientConnection(), self)
        try:
            return self._converse(link)
        finally:
            with self._cond:
                if self._link is link:
                    self._link = None
                link.closed = True
            link.finish()
            with self._cond:
                self._requeue(link)

    def _before_login_failure(self, message: str) -> tuple[_Ending, str]:
        if not self._established:
            self._emit(ConnectFailed(message))
            return _Ending.WAIT, message
        return _Ending.RETRY, message

    def _requeue(self, link: _Link) -> None:
        """The connection is gone: what it carried is queued again, or failed if uncertain."""
        for request in list(self._requests.values()):
            if request.link is not link:
                continue
            if request.state is RequestState.QUEUED or (
                request.durable and request.type_ in IDEMPOTENT_TYPES
            ):
                request.state = RequestState.QUEUED
                request.link = None
            elif not request.durable:
                self._finish_request(
                    request, RequestState.FAILED, error="the connection was lost", uncertain=True
                )
            else:
                self._finish_request(
                    request,
                    RequestState.FAILED,
                    error="the connection was lost before the server confirmed it; "
                    "it may or may not have been delivered",
                    uncertain=True,
                )

    def _converse(self, link: _Link) -> tuple[_Ending, str]:
        ws, conn = link.ws, link.conn
        with self._cond:
            if self._stopping:
                return _Ending.STOP, "closed"
            self._link = link
        try:
            # 1. hello, and the pin check before anything is sent.
            opcode, data = recv_message(ws)
            events = (
                conn.receive_text(data.decode("utf-8", "replace"))
                if opcode == websocket.ABNF.OPCODE_TEXT
                else conn.receive_bytes(data)
            )
            hello = next((e for e in events if isinstance(e, ServerHello)), None)
            if hello is None:
                link._close(CloseCode.BAD_HANDSHAKE)
                return self._handshake_failure()
            verdict = self._check_trust(hello.identity.fingerprint)
            if verdict is not None:
                link._close(CloseCode.NORMAL)
                return verdict
            ws.send(conn.send_key())
            ws.settimeout(self._keepalive)
            link.writer.start()
            pinging = False
            # 2. records: the greeting first (key confirmation), then everything else.
            while True:
                try:
                    opcode, data = recv_message(ws)
                except websocket.WebSocketTimeoutException:
                    if not link.greeted:  # nothing may be sent before the greeting, not even a ping
                        link.abort()
                        return self._lost("the server did not complete the handshake")
                    if pinging:
                        link.abort()
                        return self._lost("the server stopped answering")
                    pinging = True
                    link.put_json({"type": "ping", "id": f"keepalive{next(self._ids)}"})
                    continue
                pinging = False
                if opcode != websocket.ABNF.OPCODE_BINARY:
                    events = conn.receive_text(data.decode("utf-8", "replace"))
                else:
                    events = conn.receive_bytes(data)
                for event in events:
                    if isinstance(event, CloseConnection):
                        link._close(event.code)
                        if event.code == CloseCode.BAD_HANDSHAKE or not link.greeted:
                            return self._handshake_failure()
                        return self._lost("the server sent data that failed the integrity check")
                    if isinstance(event, Greeting):
                        self._on_greeting(link, event.message)
                    elif isinstance(event, MessageReceived):
                        ending = self._on_message(link, event.message)
                        if ending is not None:
                            link._close(CloseCode.NORMAL)
                            return ending
                    elif isinstance(event, ChunkReceived):
                        self._emit(ChunkArrived(event.chunk))
        except Closed as closed:
            return self._on_close(link, closed.code)
        except websocket.WebSocketTimeoutException:
            return self._before_login_failure(
                f"The server at {self.address.key} did not say hello within "
                f"{self._connect_timeout:.0f} seconds. Is it a chat server?"
            )
        except ChatProtoError:
            return self._handshake_failure()
        except (OSError, websocket.WebSocketException):  # a send failed: the connection is gone
            return self._on_close(link, None)

    def _handshake_failure(self) -> tuple[_Ending, str]:
        return self._before_login_failure(
            f"The secure handshake with {self.address.key} failed. The server may run an "
            "incompatible version, or something between you and it altered the connection."
        )

    def _lost(self, why: str) -> tuple[_Ending, str]:
        return self._before_login_failure(f"Connection lost: {why}.")

    def _check_trust(self, fingerprint: str) -> tuple[_Ending, str] | None:
        """None to go on; else how this connection ends (the user decides, or it is refused)."""
        self.fingerprint = fingerprint
        check = self.known_servers.check(self.address, fingerprint)
        if check.trust is Trust.TRUSTED:
            return None
        if check.trust is Trust.CHANGED:
            assert check.expected is not None
            event = KeyChanged(self.address.key, check.expected, fingerprint)
            self._emit(event)
            return _Ending.STOP, "The server's key changed; the connection was refused."
        if self._expected_fingerprint is not None:
            if self._expected_fingerprint == fingerprint:
                self.known_servers.trust(self.address, fingerprint)
                return None
            message = (
                f"The server {self.address.key} presented the key {fingerprint}, "
                f"not the expected {self._expected_fingerprint}. Nothing was sent. "
                "Check the fingerprint with the server's administrator."
            )
            self._emit(KeyChanged(self.address.key, self._expected_fingerprint, fingerprint))
            return _Ending.STOP, message
        self._emit(TrustRequired(self.address.key, fingerprint))
        return _Ending.WAIT, "waiting for you to trust the server's key"

    def _on_greeting(self, link: _Link, greeting: dict[str, Any]) -> None:
        with self._cond:
            link.greeted = True
            self.greeting = greeting
            self._set_phase(Phase.CONNECTED)
            self._emit(Greeted(greeting, self.fingerprint or ""))
            if self._credentials is not None and not link.login_sent:
                self._send_login(link)

    def _on_message(self, link: _Link, message: dict[str, Any]) -> tuple[_Ending, str] | None:
        kind = message.get("type")
        ref = message.get("ref")
        if not link.logged_in:
            if isinstance(ref, str) and ref == link.login_id:
                return self._on_login_answer(link, message)
            return None  # before login nothing else concerns us (pong...)
        if kind == "session_ended":
            # Authenticated (it came through the record layer), unlike the 4003 close after it.
            reason = message.get("reason")
            link.ended_reason = reason if isinstance(reason, str) else "ended"
            self._session_ended = link.ended_reason
            return None
        if isinstance(ref, str):
            if ref.startswith("keepalive"):
                return None
            with self._cond:
                request = self._requests.get(ref)
                if request is not None:
                    if kind == "error":
                        text = message.get("message")
                        code = message.get("code")
                        self._finish_request(
                            request,
                            RequestState.FAILED,
                            message,
                            error=text if isinstance(text, str) else "the server refused it",
                            code=code if isinstance(code, str) else None,
                        )
                    else:
                        self._finish_request(request, RequestState.DONE, message)
                    return None
        self._emit(Received(message))
        return None

    def _on_login_answer(self, link: _Link, message: dict[str, Any]) -> tuple[_Ending, str] | None:
        kind = message.get("type")
        with self._cond:
            credentials = self._credentials
            registering = bool(credentials and credentials.register)
            if kind == "login_ok":
                user = message.get("user")
                username = user.get("username") if isinstance(user, dict) else None
                rooms = message.get("rooms")
                if not isinstance(username, str) or not isinstance(rooms, list):
                    return self._lost("the server's login answer was malformed")
                again = self._established
                self._established = True
                self.username = username
                if credentials is not None:
                    credentials.register = False  # reconnects log in to the new account
                    credentials.otp = None  # one-time codes are one-time
                link.logged_in = True
                self._backoff.reset()
                self._set_phase(Phase.ONLINE)
                self._emit(LoggedIn(username, rooms, again))
                for request in list(self._requests.values()):
                    if request.state is RequestState.QUEUED and request.link is None:
                        request.link = link
                        link.put_json(request.message, request)
                return None
            reason = message.get("reason")
            reason = reason if isinstance(reason, str) else kind or "error"
            retry_after = message.get("retry_after")
            retry_after = retry_after if type(retry_after) is int else None
            if kind == "login_failed":
                text = LOGIN_FAILED_MESSAGES.get(reason, "The server refused the login.")
                if reason == "rate_limited":
                    text = rate_limited_message(retry_after)
            else:  # register_failed, or an error such as bad_request
                server_words = message.get("message")
                if reason == "rate_limited":
                    text = rate_limited_message(retry_after)
                elif reason == "closed":
                    text = "This server does not accept new accounts. Ask its administrator."
                elif isinstance(server_words, str) and server_words:
                    text = server_words
                else:
                    text = "The server refused the request."
            link.login_sent = False
            self._credentials = None  # the password goes as soon as it is known to be useless
            # Server trouble (rate limits, an `internal` error while its database or Redis
            # recovers) is worth retrying; anything else means the credentials are no good.
            transient = reason == "rate_limited" or (
                kind == "error" and message.get("code") == "internal"
            )
            if self._established:
                # A reconnect's login failed: retry server trouble, else the password changed
                # or the account went.
                if transient:
                    self._credentials = credentials
                    self._retry_floor = float(retry_after or 0)
                    return _Ending.RETRY, text
                return _Ending.STOP, (
                    f"Logging in again after the reconnect failed: {text} Log in again to continue."
                )
            self._set_phase(Phase.CONNECTED, text)
            self._emit(LoginRejected(reason, text, retry_after, registering))
            return None

    def _on_close(self, link: _Link, code: int | None) -> tuple[_Ending, str]:
        logged_in = link.logged_in
        if link.ended_reason is not None:
            # The encrypted session_ended came first: the server really ended the session,
            # whether its 4003 close arrives or the connection just drops.
            return _Ending.STOP, SESSION_ENDED_MESSAGES.get(
                link.ended_reason, "The server ended your session."
            )
        if code == CloseCode.SESSION_ENDED:
            # A bare 4003: the close frame is not authenticated (see the module docstring),
            # so it is an ordinary disconnection; a real end comes with session_ended first.
            return self._lost(
                "the server closed the connection as if it ended the session (4003), but "
                "without the encrypted notice that comes first, so it may have been forged "
                "on the network; reconnecting"
            )
        if code == CloseCode.LOGIN_FAILURES:
            if self._established:
                # A reconnect's refused login already stopped the session on the encrypted
                # login_failed; a bare 4001 on an established session is not trusted.
                return self._lost("the server closed the connection (4001)")
            with self._cond:
                self._credentials = None
            return _Ending.WAIT, "The server closed the connection after too many failed logins."
        if code == CloseCode.NORMAL and logged_in:
            return _Ending.RETRY_NOW, "The server renewed the connection."
        if code == CloseCode.POLICY:
            if not self._established and not link.login_sent and link.greeted:
                return _Ending.WAIT, ""  # the 60-second login deadline passed while the user typed
            if not link.greeted and not self._established:
                message = (
                    "The server refuses new connections from this address for now "
                    "(too many attempts). Wait a minute and try again."
                )
                self._emit(ConnectFailed(message))
                return _Ending.WAIT, message
            return _Ending.RETRY_SLOW, "The server closed the connection (policy)."
        if code == CloseCode.BAD_HANDSHAKE:
            return self._handshake_failure()
        if not link.greeted:
            return self._lost("the server closed the connection during the handshake")
        if not self._established:
            if link.login_sent:
                return self._lost("the server closed the connection during login")
            return _Ending.WAIT, ""
        reason = "the server closed the connection" if code else "the network connection dropped"
        return self._lost(reason)
