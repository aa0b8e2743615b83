"""The WebSocket consumer: a thin asyncio shell around chatproto's ``ServerConnection``.

Frames in, events out: WebSocket messages become connection events, events
become sends and closes, and each validated request a call of the handler named
after its type (``handle_send`` for ``send``...), whose result or
:class:`~chat.services.ServiceError` becomes a record. The rest is elsewhere:

- the process's state: the :class:`~chat.runtime.ChatRuntime` every consumer
  is given (``ChatConsumer.as_asgi(runtime=...)``, :mod:`chat.routing`);
- the order of a session's output, and its pushes: :mod:`chat.outbox`;
- greeting, login, registration, the start and end of a session: :mod:`chat.lifecycle`;
- the request handlers: :mod:`chat.handlers`, the account's (devices, password,
  two-factor login) :mod:`chat.account_handlers`, end-to-end encryption's (keys,
  to-device messages) :mod:`chat.e2e_handlers`, the key backup's :mod:`chat.backup_handlers`;
  file transfers: :mod:`chat.transfers`;
- abuse limits: :mod:`chat.limits`; blocking work: :mod:`chat.workers`;
- Channels' methods overridden for speed, with their figures: :mod:`chat.lean_consumer`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

from accounts.models import User
from chatproto import connection as proto
from chatproto.codes import CloseCode, ErrorCode
from chatproto.connection import ServerConnection, State
from chatproto.errors import SequenceExhausted
from chatproto.framing import FileChunk
from chatproto.messages import Request

from . import lifecycle, limits, services
from .account_handlers import AccountHandlers
from .addresses import client_address
from .backup_handlers import BackupHandlers
from .e2e_handlers import E2EHandlers
from .handlers import RequestHandlers
from .lean_consumer import LeanWebsocketConsumer
from .outbox import INTERNAL_FAILURE, Outbox
from .runtime import ChatRuntime
from .transfers import TransferSession

log = logging.getLogger("chat.sessions")


class ChatConsumer(
    RequestHandlers, AccountHandlers, E2EHandlers, BackupHandlers, LeanWebsocketConsumer
):
    """One WebSocket session; ``runtime``: the process's state (see the module docstring)."""

    def __init__(self, *args: Any, runtime: ChatRuntime, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runtime = runtime

    async def connect(self) -> None:
        # The server's own work up to the hello counts in the pacing of new connections
        # (chat/workers.py); the wait for the client's key does not.
        with self.runtime.workers.accept_pacing.working_on_handshake():
            await self._open()

    async def _open(self) -> None:
        self.address = client_address(self.scope)
        self.conn: ServerConnection | None = None
        self.session_id: str | None = None
        self.user: User | None = None
        self.device: str | None = None  # the remembered device it logged in as, if any
        self.entered = False  # in the registry and presence (chat.lifecycle)
        self.user_id = 0
        self.username = "-"
        self.rooms: set[str] = set()
        self.presence_seq: int | None = None  # set by the presence feed's snapshot
        self.groups_joined: set[str] = set()
        self.close_code: int | None = None
        # The deadline's timer, or the task that checks it once it has passed.
        self.timer: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self.outbox = Outbox(self, self.runtime)
        self.push = self.outbox.push  # the fan-out's hot path, without a hop through here
        self.transfers = TransferSession(self, self.runtime.transfers)
        self.limits = limits.SessionLimits(self.runtime.limits)
        await self.accept()
        if not self.runtime.workers.handshake_queue.admit_connection():
            # The RSA threads have more than they can do in time (chat/workers.py): no
            # hello, and the address's handshake count is left alone. Logged per burst.
            await self._close(CloseCode.POLICY)
            return
        if not await limits.admit_handshake(self.address):
            log.warning("connection from %s refused: too many handshakes", self.address)
            await self._close(CloseCode.POLICY)
            return
        self.conn = ServerConnection(
            await self.runtime.aserver_key(), max_text=settings.CHAT_MAX_TEXT
        )
        self.started = asyncio.get_running_loop().time()
        await self._transmit(text_data=self.conn.hello())
        self._restart_deadlines()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        async with self.outbox.lock:
            if self.conn is None or self.close_code is not None:
                return
            if text_data is not None and self.conn.state is State.AWAITING_KEY:
                # The key message: an RSA-3072 decryption (~2.5 ms), in a worker thread,
                # or None when the handshake queue is full (chat/workers.py); up to the
                # greeting it counts in the pacing of new connections.
                with self.runtime.workers.accept_pacing.working_on_handshake():
                    events = await self.runtime.workers.handshakes(self.conn.receive_text)(
                        text_data
                    )
                    if events is None:
                        await self._close(CloseCode.POLICY)
                        return
                    await self._apply(events)
                return
            elif text_data is not None:
                events = self.conn.receive_text(text_data)
            else:
                events = self.conn.receive_bytes(bytes_data or b"")
            await self._apply(events)

    async def disconnect(self, code: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.conn is not None:
            self.conn.close()
        for group in list(self.groups_joined):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.clear()
        await lifecycle.finish(self, self.close_code if self.close_code is not None else code)

    # --- events of the connection -----------------------------------------------------------

    async def _apply(self, events: list) -> None:
        """Act on connection events in order; nothing after a close."""
        for event in events:
            if self.close_code is not None:
                return
            if isinstance(event, proto.SendRecord):
                await self._transmit(bytes_data=event.data)
            elif isinstance(event, proto.CloseConnection):
                await self._close(event.code)
            elif isinstance(event, proto.HandshakeComplete):
                self.session_id = event.session_id
                self._restart_deadlines()  # now the login deadline applies
                await self.send_message(lifecycle.greeting())
            elif isinstance(event, proto.RequestReceived):
                await self._dispatch(event.request)
            elif isinstance(event, proto.ChunkReceived):
                await self.transfers.handle_chunk(event.chunk)

    async def _dispatch(self, request: Request) -> None:
        if request.type not in ("send", "pm"):
            await self.outbox.writes_done()  # answers in the order of the requests
        handler: Any = (
            self.transfers.handle_request
            if request.type.startswith("file_")
            else getattr(self, f"handle_{request.type}")
        )
        if self.user is not None:
            refusal = await self.limits.admit(self.user_id, request)
            if refusal is not None:
                message, wait = refusal
                await self.reply_error(ErrorCode.RATE_LIMITED, message, request.id, wait)
                return
        try:
            await handler(request)
        except services.ServiceError as exc:
            await self.reply_error(
                services.error_code(exc), exc.message, request.id, exc.retry_after
            )
        except Exception:
            log.exception("session %s: %s request failed", self.session_id, request.type)
            await self.reply_error(ErrorCode.INTERNAL, INTERNAL_FAILURE, request.id)
        else:
            await self.limits.succeeded(self.user_id, request)

    def _restart_deadlines(self) -> None:
        """Arm the connection's deadline (key 10 s, login 60 s) as a timer of the loop; a task
        runs only once it passes. A task from the start, made at the hello and again at the
        greeting and cancelled each time, was ~25 µs of the loop's time each (bench/NOTES.md)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.conn is None or self.close_code is not None:
            return
        deadline = self.conn.deadline()
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        when = max(loop.time() + 0.05, self.started + deadline)
        self.timer = loop.call_at(when, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self.timer = asyncio.ensure_future(self._check_deadline())

    async def _check_deadline(self) -> None:
        """Tell the connection the time; arm its next deadline, if it still has one."""
        loop = asyncio.get_running_loop()
        async with self.outbox.lock:
            if self.conn is None or self.close_code is not None:
                return
            await self._apply(self.conn.timed_out(loop.time() - self.started))
        if self.timer is asyncio.current_task():
            self.timer = None
            self._restart_deadlines()

    # --- sending ----------------------------------------------------------------------------

    async def _transmit(self, **frame: Any) -> None:
        """Send one WebSocket message, unless the peer has gone (then daphne raises on send,
        before the ``websocket.disconnect`` that follows: ``disconnect`` must still run)."""
        if self.close_code is not None:
            return
        try:
            await self.send(**frame)
        except Exception as exc:  # autobahn's Disconnected, or a transport error
            log.debug(
                "session %s: peer gone while sending (%s)", self.session_id, type(exc).__name__
            )
            self.close_code = 1006  # abnormal closure: the disconnect message follows
            if self.conn is not None:
                self.conn.close()

    async def _close(self, code: int) -> None:
        if self.close_code is not None:
            return
        self.close_code = int(code)
        if self.conn is not None:
            self.conn.close()
        try:
            await self.close(code=int(code))
        except Exception as exc:  # the peer may be gone already; see _transmit
            log.debug("session %s: close not sent (%s)", self.session_id, type(exc).__name__)

    async def _seal(self, seal: Any) -> None:
        """Send the record ``seal()`` makes; a spent sequence closes (the client reconnects)."""
        try:
            data = seal()
        except SequenceExhausted:
            await self._close(CloseCode.NORMAL)
            return
        await self._transmit(bytes_data=data)

    async def send_message(self, message: dict[str, Any]) -> None:
        if self.conn is not None and self.close_code is None:
            await self._seal(lambda: self.conn.send(message))

    async def send_plaintext(self, plaintext: bytes) -> bool:
        """A push's record to the client; True when it went out (once per recipient: lean)."""
        conn = self.conn
        if conn is None or self.close_code is not None or conn.state is not State.LOGGED_IN:
            return False
        try:
            data = conn.send_plaintext(plaintext)
        except SequenceExhausted:
            await self._close(CloseCode.NORMAL)  # the client reconnects
            return False
        await self._transmit(bytes_data=data)
        return self.close_code is None

    async def close_to_reconnect(self) -> None:
        await self._close(CloseCode.NORMAL)

    async def send_chunk(self, chunk: FileChunk) -> None:
        """A chunk record to the client (chunks relayed to this session as the recipient)."""
        if self.conn is not None and self.close_code is None:
            forward = self.conn.forward_chunk  # sealed from the plaintext it arrived in
            await self._seal(lambda: forward(chunk))

    async def reply_error(
        self,
        code: ErrorCode,
        message: str,
        ref: str | None = None,
        retry_after: int | None = None,
        *,
        bad_request: bool = False,
    ) -> None:
        """An ``error`` answer (the connection counts bad requests, ``bad_request`` ones too
        whatever their code, and may close 4008); ``rate_limited`` always with
        ``retry_after`` (``chatproto.connection.error_message``)."""
        if self.conn is None or self.close_code is not None:
            return
        events = self.conn.reply_error(code, message, ref, retry_after, bad_request=bad_request)
        await self._apply(events)
        if code == ErrorCode.RATE_LIMITED and self.limits.refused():
            await self._close(CloseCode.POLICY)  # flooding on after rate_limited (chat/limits.py)

    def listening(self) -> bool:
        """Logged in and enrolled: it gets pushes (a session that must first set up
        two-factor login gets none, PROTOCOL.md 3.4)."""
        conn = self.conn
        return (
            conn is not None
            and self.close_code is None
            and conn.state is State.LOGGED_IN
            and not conn.enrolment_required
        )

    # --- what chat.lifecycle calls --------------------------------------------------------

    async def refuse_login(self, message: dict[str, Any]) -> None:
        assert self.conn is not None
        await self._apply(self.conn.login_failed(message))

    def logged_in_as(
        self, user: User, *, device: str | None = None, enrolment_required: bool = False
    ) -> None:
        assert self.conn is not None
        self.conn.login_succeeded(enrolment_required=enrolment_required)
        self.device = device
        if self.timer is not None:
            self.timer.cancel()  # no deadline after login; an idle session keeps no task
            self.timer = None
        self.user, self.user_id, self.username = user, user.pk, user.username

    def enrolled(self) -> None:
        assert self.conn is not None
        self.conn.enrolled()

    async def join_group(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def refresh_groups(self) -> None:
        """Re-add this session's groups (Redis groups expire); called by the heartbeat."""
        for group in list(self.groups_joined):
            await self.channel_layer.group_add(group, self.channel_name)

    def follow_rooms(self, rooms: set[str]) -> None:
        self.rooms = set(rooms)
        self.runtime.sessions.set_rooms(self, self.rooms)

    # --- channel-layer events ---------------------------------------------------------------

    async def chat_rooms_changed(self, event: dict[str, Any]) -> None:
        async with self.outbox.lock:
            if self.listening() and event.get("exclude") != self.channel_name:
                await self.send_message({"type": "rooms", "rooms": await self.sync_rooms()})

    async def chat_transfer(self, event: dict[str, Any]) -> None:
        """A file transfer's message, chunk or step (see :mod:`chat.transfers`)."""
        async with self.outbox.lock:
            await self.transfers.on_event(event)

    async def chat_end(self, event: dict[str, Any]) -> None:
        """``session_ended``: every session of the user, or those of ``devices``; never
        the ``except`` one (:func:`chat.delivery.end_sessions`)."""
        if event.get("except") == self.channel_name:
            return
        devices = event.get("devices")
        if devices is not None and self.device not in devices:
            return
        async with self.outbox.lock:
            await self.end(event["reason"])

    async def end(self, reason: str) -> None:
        """``session_ended`` (to a logged-in session), then close 4003."""
        if self.close_code is not None or self.conn is None:
            return
        if self.conn.state is State.LOGGED_IN:
            await self.send_message({"type": "session_ended", "reason": reason})
        await self._close(CloseCode.SESSION_ENDED)
