"""The network session: one chat server, one background thread, events on a queue.

A thin threaded shell around :class:`chatproto.connection.ClientConnection` (the
sans-I/O handshake, records and login) and websocket-client, in the manner of
websockets' ``sync`` shell around its ``Protocol``. What each ending means is
the pure table in :mod:`tk_client.endings`; the outbox is :mod:`tk_client.outbox`.
Nothing here imports tkinter: the desktop client drains :attr:`ChatSession.events`
with ``after()``, the terminal client in its main loop, the tests directly.

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
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websocket

from chatproto import connection as proto
from chatproto.codes import CloseCode
from chatproto.errors import ChatProtoError, LocalProtocolError
from chatproto.records import SequenceExhausted

from .address import ServerAddress
from .endings import Backoff, Cause, Decision, Next, Reached, after_end, after_refusal, failed
from .events import (
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
    RequestStatus,
    RequestUpdate,
    SessionEvent,
    Stopped,
    TrustRequired,
)
from .known_servers import KnownServers, Trust
from .outbox import Outbox, Request
from .transport import (
    CONNECT_TIMEOUT,
    Closed,
    Connector,
    Transport,
    connect_websocket,
    describe_connect_error,
    recv_message,
)

__all__ = ["Backoff", "ChatSession", "NotConnected"]

KEEPALIVE_SECONDS = 25.0  # silence after which we ping; twice that without an answer is a drop
JOIN_TIMEOUT = 5.0  # how long a finished connection waits for its writer thread
CLOSE_WAIT = 1.0  # how long close() waits for the network thread (it is a daemon anyway)


@dataclass
class _Credentials:
    username: str
    password: str = field(repr=False)
    otp: str | None = field(default=None, repr=False)
    register: bool = False


class _Link:
    """One WebSocket connection: the socket, its ClientConnection and its writer thread.

    The writer seals each record when it takes it from the queue, so records go
    out in sequence order; the reader (the session's thread) opens them.
    """

    def __init__(self, ws: Transport, session: ChatSession) -> None:
        self.ws = ws
        self.conn = proto.ClientConnection(strict=True)
        self.session = session
        self.closed = False
        self.outgoing: queue.Queue[Callable[[], bytes | None] | None] = queue.Queue()
        self.writer = threading.Thread(
            target=self._write_loop, name="chat-session-writer", daemon=True
        )

    def put_json(self, message: dict[str, Any], request: Request | None = None) -> None:
        def seal() -> bytes | None:
            if request is not None and not self.session._mark_sent(request, self):
                return None
            return self.conn.send(message)

        self.outgoing.put(seal)

    def put_login(self, message: dict[str, Any]) -> None:
        # Skipped if a login is already on the wire or answered with login_ok.
        self.outgoing.put(lambda: self.conn.send(message) if self.conn.may_log_in else None)

    def put_chunk(self, transfer: bytes, index: int, data: bytes) -> None:
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
        self._outbox = Outbox()
        self._credentials: _Credentials | None = None
        self._link: _Link | None = None
        self._phase = Phase.IDLE
        # Bumped by every user action that should (re)connect: login, trust, "reconnect now".
        # The thread compares it with its value at the start of an attempt, so an action
        # taken while that attempt was failing is never lost.
        self._kicks = 0
        self._stopping = False
        self._established = False  # logged in at least once: drops are retried
        self.username: str | None = None
        self.greeting: dict[str, Any] | None = None
        self.fingerprint: str | None = None

    def __repr__(self) -> str:
        return f"<ChatSession {self.address.key} {self._phase.value} user={self.username!r}>"

    # --- the user interface's side ---------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def has_password(self) -> bool:
        """True while the session keeps a password to log in again with (memory only)."""
        return self._credentials is not None

    def start(self) -> None:
        """Connect (in the background) and fetch the greeting; log in if credentials are set."""
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="chat-session", daemon=True)
            self._thread.start()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait for the network thread to end; True if it has (or never started)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def login(
        self, username: str, password: str, *, otp: str | None = None, register: bool = False
    ) -> None:
        """Log in (or create the account) as soon as the connection allows."""
        with self._cond:
            self._credentials = _Credentials(username, password, otp or None, register)
            link = self._link
            if link is not None and not link.closed and self._phase is Phase.CONNECTED:
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
        with self._cond:
            if self._phase is Phase.STOPPED:
                raise NotConnected("the session has ended")
            link = self._online_link()
            if not durable and link is None:
                raise NotConnected("not connected to the server")
            request = self._outbox.add(
                {"type": type_, **fields, "id": f"r{next(self._ids)}"}, durable=durable
            )
            if link is not None:
                request.link = link
                link.put_json(request.message, request)
            return request.status()

    def send_message(self, message: dict[str, Any]) -> None:
        """Send a message whose answer is not tracked (transfer steps); NotConnected if offline."""
        with self._cond:
            self._require_online().put_json(dict(message))

    def send_chunk(self, transfer: bytes, index: int, data: bytes) -> None:
        """Queue one file chunk record on the current connection. NotConnected if offline."""
        with self._cond:
            self._require_online().put_chunk(transfer, index, data)

    def pending(self) -> list[RequestStatus]:
        """Outbox items that are neither answered nor failed."""
        with self._cond:
            return self._outbox.pending()

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
            link.close_with(CloseCode.NORMAL)
        if self._thread is not threading.current_thread():
            self.wait_stopped(CLOSE_WAIT)
        with self._cond:
            self._emit_all(self._outbox.fail_all("not sent: you closed the session"))
            if self._phase is not Phase.STOPPED:
                self._set_phase(Phase.STOPPED, "closed")
        self._credentials = None

    # --- helpers under the lock ------------------------------------------------------------

    def _online_link(self) -> _Link | None:
        link = self._link
        if link is not None and link.conn.logged_in and not link.closed:
            return link
        return None

    def _require_online(self) -> _Link:
        link = self._online_link()
        if link is None:
            raise NotConnected("not connected to the server")
        return link

    def _emit(self, event: SessionEvent) -> None:
        for hook in list(self._hooks):
            if hook(event):
                return
        if not isinstance(event, ChunkArrived):  # chunks nobody takes are dropped
            self.events.put(event)

    def _emit_all(self, events: list[RequestUpdate]) -> None:
        for event in events:
            self._emit(event)

    def _set_phase(self, phase: Phase, detail: str = "", retry_at: float | None = None) -> None:
        self._phase = phase
        self._emit(PhaseChanged(phase, detail, retry_at))

    def _mark_sent(self, request: Request, link: _Link) -> bool:
        """Writer thread: about to write ``request``; False if it no longer belongs to ``link``."""
        with self._cond:
            update = self._outbox.mark_sent(request, link)
            if update is not None:
                self._emit(update)
            return update is not None

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
        link.put_login(message)
        self._set_phase(Phase.LOGGING_IN)

    def _decided(self, decision: Decision) -> Decision:
        """Carry out the parts of ``decision`` that happen at once."""
        with self._cond:
            if decision.forget_password:
                self._credentials = None
            if decision.report:
                self._emit(ConnectFailed(decision.message))
        return decision

    # --- the network thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    kicks = self._kicks
                    self._set_phase(Phase.RECONNECTING if self._established else Phase.CONNECTING)
                decision = self._connect_once()
                with self._cond:
                    if self._stopping:
                        return
                    if decision.next is Next.STOP:
                        self._stop(decision.message, decision.reason)
                        return
                    if decision.next is Next.WAIT or not self._established:
                        self._set_phase(Phase.IDLE, decision.message)
                        while self._kicks == kicks and not self._stopping:
                            self._cond.wait()
                        continue
                    delay = self._backoff.delay(decision)
                    self._wait_before_retry(delay, decision.message, kicks)
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

    def _stop(self, message: str, reason: str = "stopped") -> None:
        self._emit_all(self._outbox.fail_all(f"not sent: {message}"))
        self._credentials = None
        self._stopping = True
        self._set_phase(Phase.STOPPED, message)
        self._emit(Stopped(reason, message))

    def _connect_once(self) -> Decision:
        """One connection from connect to close: what to do next, and why, in words."""
        try:
            ws = self._connector(self.address, self._connect_timeout)
        except Exception as exc:
            message = describe_connect_error(exc, self.address)
            return self._decided(failed(message, established=self._established))
        link = _Link(ws, self)
        try:
            return self._converse(link)
        finally:
            with self._cond:
                if self._link is link:
                    self._link = None
                link.closed = True
            link.finish()
            with self._cond:
                self._emit_all(self._outbox.requeue(link))

    def _ended(self, link: _Link, how: int | Cause) -> Decision:
        """The connection ended (``how``: the server's close code, or a cause)."""
        ended = link.conn.ended
        decision = after_end(
            how,
            Reached.of(link.conn.progress),
            session_ended=ended.reason if ended is not None else None,
            established=self._established,
            address=self.address.key,
            hello_timeout=self._connect_timeout,
        )
        return self._decided(decision)

    def _converse(self, link: _Link) -> Decision:
        ws, conn = link.ws, link.conn
        with self._cond:
            if self._stopping:
                return Decision(Next.STOP, "closed")
            self._link = link
        try:
            # 1. hello, and the pin check before anything is sent.
            events = self._receive(link)
            hello = next((e for e in events if isinstance(e, proto.ServerHello)), None)
            if hello is None:
                link.close_with(CloseCode.BAD_HANDSHAKE)
                return self._ended(link, Cause.BAD_HANDSHAKE)
            verdict = self._check_trust(hello.identity.fingerprint)
            if verdict is not None:
                link.close_with(CloseCode.NORMAL)
                return verdict
            ws.send(conn.send_key())
            ws.settimeout(self._keepalive)
            link.writer.start()
            pinging = False
            # 2. records: the greeting first (key confirmation), then everything else.
            while True:
                try:
                    events = self._receive(link)
                except websocket.WebSocketTimeoutException:
                    if not conn.ready:  # nothing may be sent before the greeting, not even a ping
                        link.abort()
                        return self._ended(link, Cause.NO_GREETING)
                    if pinging:
                        link.abort()
                        return self._ended(link, Cause.SILENT)
                    pinging = True
                    link.put_json({"type": "ping", "id": f"keepalive{next(self._ids)}"})
                    continue
                pinging = False
                for event in events:
                    decision = self._on_event(link, event)
                    if decision is not None:
                        return decision
        except Closed as closed:
            return self._ended(link, Cause.DROPPED if closed.code is None else closed.code)
        except websocket.WebSocketTimeoutException:
            return self._ended(link, Cause.NO_HELLO)
        except ChatProtoError:
            return self._ended(link, Cause.BAD_HANDSHAKE)
        except (OSError, websocket.WebSocketException):  # a send failed: the connection is gone
            return self._ended(link, Cause.DROPPED)

    @staticmethod
    def _receive(link: _Link) -> list[proto.Event]:
        opcode, data = recv_message(link.ws)
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return link.conn.receive_bytes(data)
        return link.conn.receive_text(data.decode("utf-8", "replace"))

    def _check_trust(self, fingerprint: str) -> Decision | None:
        """None to go on; else how this connection ends (the user decides, or it is refused)."""
        self.fingerprint = fingerprint
        check = self.known_servers.check(self.address, fingerprint)
        if check.trust is Trust.TRUSTED:
            return None
        if check.trust is Trust.CHANGED:
            assert check.expected is not None
            self._emit(KeyChanged(self.address.key, check.expected, fingerprint))
            return Decision(Next.STOP, "The server's key changed; the connection was refused.")
        expected = self._expected_fingerprint
        if expected is None:
            self._emit(TrustRequired(self.address.key, fingerprint))
            return Decision(Next.WAIT, "waiting for you to trust the server's key")
        if expected == fingerprint:
            self.known_servers.trust(self.address, fingerprint)
            return None
        self._emit(KeyChanged(self.address.key, expected, fingerprint))
        return Decision(
            Next.STOP,
            f"The server {self.address.key} presented the key {fingerprint}, not the expected "
            f"{expected}. Nothing was sent. Check the fingerprint with the server's administrator.",
        )

    def _on_event(self, link: _Link, event: proto.Event) -> Decision | None:
        """Act on one event of the connection; a decision ends the connection."""
        if isinstance(event, proto.CloseConnection):
            link.close_with(event.code)
            bad_hello = event.code == CloseCode.BAD_HANDSHAKE
            return self._ended(link, Cause.BAD_HANDSHAKE if bad_hello else Cause.BAD_RECORD)
        if isinstance(event, proto.BadLoginAnswer):
            link.close_with(CloseCode.NORMAL)
            return self._ended(link, Cause.BAD_LOGIN_ANSWER)
        if isinstance(event, proto.ChunkReceived):
            self._emit(ChunkArrived(event.chunk))
        elif isinstance(event, proto.Greeting):
            with self._cond:
                self.greeting = event.message
                self._set_phase(Phase.CONNECTED)
                self._emit(Greeted(event.message, self.fingerprint or ""))
                if self._credentials is not None:
                    self._send_login(link)
        elif isinstance(event, proto.LoggedIn):
            self._on_logged_in(link, event)
        elif isinstance(event, proto.LoginRefused):
            return self._on_refused(link, event)
        elif isinstance(event, proto.MessageReceived) and not isinstance(
            event,
            proto.SessionEnded,  # kept by the connection: it decides how the session ends
        ):
            self._on_message(event.message)
        return None

    def _on_logged_in(self, link: _Link, event: proto.LoggedIn) -> None:
        with self._cond:
            again, self._established = self._established, True
            self.username = event.username
            if self._credentials is not None:
                self._credentials.register = False  # reconnects log in to the new account
                self._credentials.otp = None  # one-time codes are one-time
            self._backoff.reset()
            self._set_phase(Phase.ONLINE)
            self._emit(LoggedIn(event.username, event.rooms, again))
            for request in self._outbox.waiting():
                request.link = link
                link.put_json(request.message, request)

    def _on_refused(self, link: _Link, event: proto.LoginRefused) -> Decision | None:
        decision = self._decided(after_refusal(event, established=self._established))
        if decision.next is not Next.STAY:
            link.close_with(CloseCode.NORMAL)
            return decision
        with self._cond:
            self._set_phase(Phase.CONNECTED, decision.message)
            rejected = LoginRejected(
                event.reason, decision.message, event.retry_after, event.registering
            )
            self._emit(rejected)
        return None

    def _on_message(self, message: dict[str, Any]) -> None:
        ref = message.get("ref")
        if isinstance(ref, str) and ref.startswith("keepalive"):
            return
        with self._cond:
            update = self._outbox.answer(message)
            self._emit(update if update is not None else Received(message))
