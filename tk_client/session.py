"""The network session: one chat server, one background thread, events on a queue.

A thin threaded shell, in the manner of websockets' ``sync`` shell around its
``Protocol``: :class:`chatproto.connection.ClientConnection` holds the protocol
(handshake, records, login), :class:`tk_client.transport.Link` the socket and its
writer thread, :mod:`tk_client.endings` what each ending means, and
:mod:`tk_client.outbox` the requests. Nothing here imports tkinter: the desktop
client drains :attr:`ChatSession.events` with ``after()``, the terminal client in
its main loop, the tests directly.

What the session guarantees:

- **Pinning before the key.** The hello's fingerprint is checked against
  :class:`~tk_client.known_servers.KnownServers` *before* ``key`` is sent. An
  unknown key closes the connection and asks the user (:class:`TrustRequired`;
  the server allows only 10 seconds for ``key``, a person needs longer), and
  :meth:`ChatSession.trust` connects again. A changed key is refused
  (:class:`KeyChanged`) and never retried.
- **Key confirmation.** ``ClientConnection`` sends nothing after ``key`` until the
  greeting record opened, so the password only goes to the pinned key.
- **Nothing typed is lost.** Every request goes through the outbox (queued ->
  sent -> done / failed, reported as :class:`RequestUpdate`). What is typed while
  disconnected is sent after the next login; a ``send`` or ``pm`` that was on the
  wire when the connection dropped may or may not have arrived, so it is failed
  with ``uncertain=True`` instead of being sent twice. Idempotent requests
  (history, join...) are simply sent again.
- **Reconnection.** Once logged in, a lost connection is retried with backoff
  (0.5 s doubling to 30 s, with jitter), logging in again with the password kept
  in memory for that purpose only (never on disk, never in a log, not in
  ``repr``), or, for a remembered device (``login(..., remember=NAME)``, PROTOCOL.md
  3.4), with a ``resume`` and the device's token: then the password is dropped
  from memory as soon as the token is stored (:mod:`tk_client.sign_in`).
  What retrying cannot fix is not retried: an authenticated ``session_ended``,
  a rejected password or device token, a changed key. 4008 (policy) is retried
  only at the longest delay; 1000 (a direction reached 2**32 records) reconnects
  at once.
- **Close codes are hints, not orders.** A close frame is not authenticated (on
  ``ws://`` anyone on the path can forge one), so none alone ends the session.
  4003 stops it only after the encrypted ``session_ended`` record arrived on the
  same connection, and then whatever way that connection ends; a bare 4003, like
  a bare 4001 on an established session, is retried with backoff.

Direct answers are matched to their requests by ``ref``; everything else is a push
(:class:`Received`). Hooks added with :meth:`ChatSession.add_hook` see every event
first, on the network thread, which is how file transfers take their chunks
without passing each one through the user interface's queue.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import Any

import websocket

from chatproto import connection as proto
from chatproto.codes import CloseCode
from chatproto.errors import ChatProtoError

from . import endings
from . import events as ev
from .address import ServerAddress
from .device_tokens import DeviceTokens
from .endings import Ask, Backoff, Cause, Decision, Next
from .events import Hook, NotConnected, Phase, RequestState, RequestStatus, SessionEvent
from .known_servers import KnownServers
from .outbox import Outbox, Request
from .sign_in import SignIn
from .transport import (
    CONNECT_TIMEOUT,
    Connector,
    Link,
    LinkEnded,
    connect_websocket,
    describe_connect_error,
)

# Silence after which we ping. Above the product's daphne ping interval and check
# (chatsite/keepalive.py: 40 + 2 s), so that daphne's pings, which count as hearing from the
# server, keep an idle client from sending its own.
KEEPALIVE_SECONDS = 45.0
# How long an answer may take: to our ping (then the server is gone: 45 + 20 s of silence in
# all) and to our key (the greeting). Not the keepalive: a dead server would take 90 s to see.
ANSWER_WAIT_SECONDS = 20.0
CLOSE_WAIT = 1.0  # how long close() waits for the network thread (it is a daemon anyway)


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
        answer_wait: float = ANSWER_WAIT_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT,
        expected_fingerprint: str | None = None,
        device_tokens: DeviceTokens | None = None,
    ) -> None:
        """``expected_fingerprint`` trusts a first-seen key only if it matches (``--trust``).

        ``device_tokens``: where remembered devices' tokens are kept; by default in the
        folder of ``known_servers``' file (the client's folder).
        """
        self.address = address
        self.known_servers = known_servers
        self.events: queue.Queue[Any] = events if events is not None else queue.Queue()
        self._connector = connector
        self._backoff = backoff or Backoff()
        self._keepalive = keepalive
        self._answer_wait = answer_wait
        self._connect_timeout = connect_timeout
        self._expected_fingerprint = expected_fingerprint
        self.device_tokens = device_tokens or DeviceTokens(known_servers.path.parent)
        self._sign_in = SignIn(self.device_tokens)  # how to log in (again)
        self._cond = threading.Condition(threading.RLock())
        self._thread: threading.Thread | None = None
        self._hooks: list[Hook] = []
        self._ids = itertools.count(1)
        self._outbox = Outbox()
        self._link: Link | None = None
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
        self.device: str | None = None  # the remembered device this session is logged in as
        self.logging_out = False  # log_out() sent: the server ends the session next

    def __repr__(self) -> str:
        return f"<ChatSession {self.address.key} {self._phase.value} user={self.username!r}>"

    # --- the user interface's side ---------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def has_password(self) -> bool:
        """True while the session keeps a way to log in again (a password in memory, or a
        remembered device's token)."""
        return self._sign_in.ready

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
        self,
        username: str,
        password: str,
        *,
        register: bool = False,
        otp: str | None = None,
        remember: str | None = None,
    ) -> None:
        """Log in (or create the account) as soon as the connection allows.

        ``remember``: a name for this device (e.g. the computer's host name). The
        server's token is then stored (:attr:`device_tokens`), the password dropped
        from memory, and reconnects (and :meth:`resume` in a later run) use the token.
        """
        with self._cond:
            self._sign_in.use_password(
                username, password, register=register, otp=otp, remember=remember or None
            )
        self._log_in_now()

    def resume(self, username: str) -> None:
        """Log in with the device token stored for ``username`` on this server (no password).

        Without a stored token, or when the server refuses it, :class:`LoginNeeded`
        says so (the token is then forgotten): log in with the password.
        """
        with self._cond:
            self._sign_in.use_token(username)
        self._log_in_now()

    def answer_otp(self, code: str) -> None:
        """After :class:`OtpRequired`: send the login again, with this one-time code."""
        with self._cond:
            if not self._sign_in.give_otp(code):
                raise NotConnected("there is no login waiting for a code; log in again")
        self._log_in_now()

    def stored_device(self, username: str, fingerprint: str | None = None) -> bool:
        """True if a token is stored for ``username`` on this server.

        ``fingerprint``: the server's key; by default the one seen on this connection,
        else the one pinned for the address (so a client can decide before connecting).
        """
        key = fingerprint or self.fingerprint or self.known_servers.get(self.address)
        return key is not None and self._sign_in.stored(key, username)

    def log_out(self) -> RequestStatus:
        """Send ``logout`` and forget this device's token now (the server revokes it).

        The session then ends with ``session_ended`` ``logged_out`` (no reconnect).
        NotConnected when offline: nothing was sent, the token is kept.
        """
        with self._cond:
            status = self.request("logout", durable=False)
            self.logging_out = True
            self._sign_in.forget_token(self.fingerprint, self.username)
            self._sign_in.drop_password()  # a drop before the answer logs nobody in
            return status

    def _log_in_now(self) -> None:
        """Send the login on the connection that waits for one, else connect for it."""
        with self._cond:
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
                self._hand(request, link)
            return request.status()

    def send_message(self, message: dict[str, Any]) -> None:
        """Send a message that is not a request: no ``id``, no answer. NotConnected if offline.

        The steps of a file transfer after the offer go so (PROTOCOL.md 3.3, revision 1.1: only
        ``file_offer`` is a request); a revision 1 server's ``ok`` to one has no ``ref`` and
        is dropped by the transfers' hook.
        """
        with self._cond:
            self._require_online().put_json(dict(message))

    def send_chunk(self, transfer: bytes, index: int, data: bytes | memoryview) -> None:
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
            self._emit(*self._outbox.fail_all("not sent: you closed the session"))
            if self._phase is not Phase.STOPPED:
                self._set_phase(Phase.STOPPED, "closed")
            self._sign_in.drop()

    # --- helpers under the lock ------------------------------------------------------------

    def _online_link(self) -> Link | None:
        link = self._link
        return link if link is not None and link.conn.logged_in and not link.closed else None

    def _require_online(self) -> Link:
        link = self._online_link()
        if link is None:
            raise NotConnected("not connected to the server")
        return link

    def _emit(self, *events: SessionEvent) -> None:
        for event in events:
            if any(hook(event) for hook in list(self._hooks)):
                continue
            if not isinstance(event, ev.ChunkArrived):  # chunks nobody takes are dropped
                self.events.put(event)

    def _set_phase(self, phase: Phase, detail: str = "", retry_at: float | None = None) -> None:
        self._phase = phase
        self._emit(ev.PhaseChanged(phase, detail, retry_at))

    def _hand(self, request: Request, link: Link) -> None:
        """Give ``request`` to ``link``; its writer marks it sent, unless it went elsewhere."""

        def mark_sent() -> bool:
            with self._cond:
                update = self._outbox.mark_sent(request, link)
                if update is not None:
                    self._emit(update)
                return update is not None

        request.link = link
        link.put_json(request.message, mark_sent)

    def _send_login(self, link: Link) -> None:
        login_id = f"login{next(self._ids)}"
        why_not = self._sign_in.send(link, login_id, self.fingerprint or "")
        if why_not is not None:
            self._set_phase(Phase.CONNECTED)
            self._emit(ev.LoginNeeded(why_not))
            return
        self._set_phase(Phase.LOGGING_IN)

    def _decided(self, decision: Decision) -> Decision:
        """Carry out the parts of ``decision`` that happen at once."""
        with self._cond:
            if decision.forget_token:
                self._sign_in.forget_token(self.fingerprint, self.username)
            if decision.forget_password:
                self._sign_in.drop()
            if decision.report:
                self._emit(ev.ConnectFailed(decision.message))
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
                    if decision.next is Next.WAIT:
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
        self._emit(*self._outbox.fail_all(f"not sent: {message}"))
        self._sign_in.drop()
        self._stopping = True
        self._set_phase(Phase.STOPPED, message)
        self._emit(ev.Stopped(reason, message))

    def _connect_once(self) -> Decision:
        """One connection from connect to close: what to do next, and why, in words."""
        try:
            ws = self._connector(self.address, self._connect_timeout)
        except Exception as exc:
            message = describe_connect_error(exc, self.address)
            return self._decided(endings.failed(message, established=self._established))
        link = Link(ws, proto.ClientConnection(strict=True))
        try:
            return self._converse(link)
        finally:
            with self._cond:
                if self._link is link:
                    self._link = None
                link.closed = True
            link.finish()
            with self._cond:
                self._emit(*self._outbox.requeue(link))

    def _ended(self, link: Link, how: int | Cause) -> Decision:
        """The connection ended (``how``: the server's close code, or a cause)."""
        ended = link.conn.ended
        decision = endings.after_end(
            how,
            endings.Reached.of(link.conn.progress),
            session_ended=ended.reason if ended is not None else None,
            established=self._established,
            address=self.address.key,
            hello_timeout=self._connect_timeout,
        )
        return self._decided(decision)

    def _converse(self, link: Link) -> Decision:
        with self._cond:
            if self._stopping:
                return Decision(Next.STOP, "closed")
            self._link = link
        try:
            hello = link.hello()  # the pin check comes before anything is sent
            verdict = self._check_trust(hello.identity.fingerprint)
            if verdict is not None:
                link.close_with(CloseCode.NORMAL)
                return verdict
            # The greeting first: key confirmation.
            for event in link.events(self._keepalive, self._answer_wait):
                decision = self._on_event(link, event)
                if decision is not None:
                    return decision
        except LinkEnded as end:
            return self._ended(link, end.how)
        except ChatProtoError:
            return self._ended(link, Cause.BAD_HANDSHAKE)
        except (OSError, websocket.WebSocketException):  # a send failed: the link is gone
            return self._ended(link, Cause.DROPPED)
        raise AssertionError("the events of a connection end with LinkEnded")

    def _check_trust(self, fingerprint: str) -> Decision | None:
        """None to go on; else how this connection ends (the user decides, or it is refused)."""
        self.fingerprint = fingerprint
        check = self.known_servers.check(self.address, fingerprint)
        verdict = endings.after_hello(check, expected=self._expected_fingerprint)
        if verdict.pin:
            self.known_servers.trust(self.address, fingerprint)
        if verdict.event is not None:
            self._emit(verdict.event)
        return verdict.decision

    def _on_event(self, link: Link, event: proto.Event) -> Decision | None:
        """Act on one event of the connection; a decision ends the connection."""
        if isinstance(event, proto.CloseConnection):
            link.close_with(event.code)
            bad_hello = event.code == CloseCode.BAD_HANDSHAKE
            return self._ended(link, Cause.BAD_HANDSHAKE if bad_hello else Cause.BAD_RECORD)
        if isinstance(event, proto.BadLoginAnswer):
            link.close_with(CloseCode.NORMAL)
            return self._ended(link, Cause.BAD_LOGIN_ANSWER)
        if isinstance(event, proto.ChunkReceived):
            self._emit(ev.ChunkArrived(event.chunk))
        elif isinstance(event, proto.Greeting):
            with self._cond:
                self.greeting = event.message
                self._set_phase(Phase.CONNECTED)
                self._emit(ev.Greeted(event.message, self.fingerprint or ""))
                if self._sign_in.ready:
                    self._send_login(link)
        elif isinstance(event, proto.LoggedIn):
            self._on_logged_in(link, event)
        elif isinstance(event, proto.LoginRefused):
            return self._on_refused(link, event)
        elif isinstance(event, proto.SessionEnded):
            pass  # the connection keeps it: how the connection then ends no longer matters
        elif isinstance(event, proto.MessageReceived) and link.conn.logged_in:
            self._on_message(event.message)  # before login nothing else concerns us (pong...)
        return None

    def _on_logged_in(self, link: Link, event: proto.LoggedIn) -> None:
        with self._cond:
            again, self._established = self._established, True
            self.username = event.username
            self.device = event.device
            with_otp = self._sign_in.logged_in(event, self.fingerprint)
            self._backoff.reset()
            self._set_phase(Phase.ONLINE)
            self._emit(
                ev.LoggedIn(
                    event.username,
                    event.rooms,
                    again,
                    device=event.device,
                    with_otp=with_otp,
                    otp_enrolment_required=event.otp_enrolment_required,
                )
            )
            for request in self._outbox.waiting():
                self._hand(request, link)

    def _on_refused(self, link: Link, event: proto.LoginRefused) -> Decision | None:
        with self._cond:
            username = self._sign_in.username or self.username or ""
            otp_given = self._sign_in.otp_sent
            verdict = endings.after_refusal(
                event,
                established=self._established,
                resuming=self._sign_in.resuming,
                otp_given=otp_given,
            )
        decision = self._decided(verdict)
        if decision.next is not Next.STAY:
            link.close_with(CloseCode.NORMAL)
            return decision
        with self._cond:
            self._set_phase(Phase.CONNECTED, decision.message)
            if decision.ask is Ask.OTP:
                self._sign_in.code_refused()
                self._emit(ev.OtpRequired(username, retry=otp_given))
            elif decision.ask is Ask.LOGIN:
                self._emit(ev.LoginNeeded(decision.message))
            else:
                text, retry_after = decision.message, event.retry_after
                self._emit(ev.LoginRejected(event.reason, text, retry_after, event.registering))
        return None

    def _on_message(self, message: dict[str, Any]) -> None:
        ref = message.get("ref")
        if isinstance(ref, str) and ref.startswith("keepalive"):
            return
        with self._cond:
            update = self._outbox.answer(message)
            if update is not None:
                self._keep_new_password(update)
            self._emit(update if update is not None else ev.Received(message))

    def _keep_new_password(self, update: ev.RequestUpdate) -> None:
        """A ``change_password`` succeeded: reconnects log in with the new password (lock held)."""
        request = update.request
        if request.type != "change_password" or request.state is not RequestState.DONE:
            return
        new_password = request.message.get("new_password")
        if isinstance(new_password, str):
            self._sign_in.password_changed(new_password)
