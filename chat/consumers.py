"""The WebSocket consumer: a thin asyncio shell around chatproto's ``ServerConnection``.

It only converts: WebSocket messages into connection events, events into
sends and closes, each validated request into a call of the handler named
after its type (``handle_send`` for ``send``...), and the service's result or
:class:`~chat.services.ServiceError` into a record. Database work goes through
named service functions in the threads of :mod:`chat.workers`, and so do
password hashing and the RSA decryption of the handshake: never on the event
loop. Room messages, private messages and ``users`` pushes come from this
process's fan-out (:mod:`chat.sessions`) as :meth:`ChatConsumer.push`;
per-session events (``chat_end``...) from the channel layer (:mod:`chat.delivery`).

File transfers (``file_*`` requests, chunk records and ``chat.transfer``
layer events) are delegated to ``transfers_class``,
:class:`chat.transfers.TransferSession`, which relays them between the two
sessions through chatproto's ``TransferRegistry``.

Abuse limits (:mod:`chat.limits`) are asked before a logged-in user's request
is served and before a login completes; every ``rate_limited`` answer goes
through :meth:`ChatConsumer.reply_error`, which closes a session that floods on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts import services as accounts
from chatproto import crypto_utils
from chatproto.codes import CloseCode, ErrorCode
from chatproto.connection import (
    ChunkReceived,
    CloseConnection,
    HandshakeComplete,
    RequestReceived,
    SendRecord,
    ServerConnection,
    State,
)
from chatproto.framing import FileChunk
from chatproto.messages import Request
from chatproto.records import SequenceExhausted

from . import delivery, limits, presence, services, sessions, workers
from .addresses import client_address
from .transfers import TransferSession

log = logging.getLogger("chat.sessions")


@functools.cache
def server_key():
    """The server's RSA key, generated (mode 0600) on first use; see ``manage.py server_key``."""
    return crypto_utils.load_private_key(settings.CHAT_SERVER_KEY)


async def _server_key():
    """:func:`server_key` without blocking the loop: only its first call reads the file."""
    if server_key.cache_info().currsize:
        return server_key()
    return await sync_to_async(server_key)()


MAX_DEFERRED_PUSHES = 10_000  # a session busy this long is closed: its client catches up on history

_background: set[asyncio.Task] = set()  # fire-and-forget tasks, referenced until they finish


class SessionLock(asyncio.Lock):
    """A session's lock: one request, timer step or layer event at a time.

    Pushes from the fan-out never wait for it: one that arrives while the lock is
    held is kept by the session, and the holder sends what was kept (first the
    broadcasts its request made, then the pushes) before letting go. So a
    session's direct answers precede what is pushed to it meanwhile: ``login_ok``
    comes before any push, the ``ack`` of a ``send`` before the message itself.
    """

    def __init__(self, on_release: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._on_release = on_release

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            await self._on_release()
        except Exception:
            log.exception("sending what waited for a session's lock failed")
        finally:
            self.release()


def _in_background(work: Awaitable[Any]) -> None:
    """Run ``work`` without waiting for it; a failure is logged."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background work failed", exc_info=task.exception())


def answer(kind: str, ref: str | None, **fields: Any) -> dict[str, Any]:
    """A direct answer: ``ref`` only where the request had an ``id``."""
    message: dict[str, Any] = {"type": kind, **fields}
    if ref is not None:
        message["ref"] = ref
    return message


class ChatConsumer(AsyncWebsocketConsumer):
    transfers_class = TransferSession

    # --- WebSocket lifecycle ----------------------------------------------------------------

    async def connect(self) -> None:
        self.address = client_address(self.scope)
        self.conn: ServerConnection | None = None
        self.session_id: str | None = None
        self.user = None
        self.user_id: int | None = None
        self.username = "-"
        self.rooms: set[str] = set()
        self.groups_joined: set[str] = set()
        self.close_code: int | None = None
        self.lock = SessionLock(self._after_lock)
        self._deferred: list[sessions.Push] = []  # (a list: an empty deque costs 760 bytes)
        self._broadcasts: list[delivery.Broadcast] = []
        self._writes: list[tuple[Request, services.Outgoing]] = []
        self._writer: asyncio.Task | None = None
        self.timer: asyncio.Task | None = None
        self.transfers = self.transfers_class(self)
        self.limits = limits.SessionLimits()
        self._queued_sent: set[int] = set()
        await self.accept()
        if not await limits.admit_handshake(self.address):
            log.warning("connection from %s refused: too many handshakes", self.address)
            await self._close(CloseCode.POLICY)
            return
        key = await _server_key()
        self.conn = ServerConnection(key, max_text=settings.CHAT_MAX_TEXT)
        self.started = asyncio.get_running_loop().time()
        await self._transmit(text_data=self.conn.hello())
        self._restart_deadlines()

    def _restart_deadlines(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.create_task(self._deadlines())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        async with self.lock:
            if self.conn is None or self.close_code is not None:
                return
            if text_data is not None and self.conn.state is State.AWAITING_KEY:
                # The key message: an RSA-3072 decryption (~2.5 ms), in a worker thread.
                events = await workers.handshakes(self.conn.receive_text)(text_data)
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
        went_offline = False
        await self._writes_done()  # messages received before the close are stored and sent
        try:
            if self.user is not None:
                await sessions.unregister(self)
                went_offline = await sync_to_async(presence.session_ended)(
                    self.username, self.channel_name
                )
                if went_offline:
                    message = await workers.database(services.users_message)()
                    await delivery.users_changed(message)
        finally:
            # After presence, so that the user's last session also ends offers made to them.
            await self.transfers.session_closed(went_offline=went_offline)
        code = self.close_code if self.close_code is not None else code
        if self.session_id is not None:
            log.info(
                "session %s ended: user %s from %s, close %s",
                self.session_id,
                self.username,
                self.address,
                code,
            )
        else:
            log.debug(
                "connection from %s closed before the handshake ended: %s", self.address, code
            )

    # --- events of the connection -----------------------------------------------------------

    async def _apply(self, events: list) -> None:
        """Act on connection events in order; nothing after a close."""
        for event in events:
            if self.close_code is not None:
                return
            if isinstance(event, SendRecord):
                await self._transmit(bytes_data=event.data)
            elif isinstance(event, CloseConnection):
                await self._close(event.code)
            elif isinstance(event, HandshakeComplete):
                self.session_id = event.session_id
                self._restart_deadlines()  # now the login deadline applies
                await self._send_message(self.greeting())
            elif isinstance(event, RequestReceived):
                await self._dispatch(event.request)
            elif isinstance(event, ChunkReceived):
                await self.transfers.handle_chunk(event.chunk)

    async def _close(self, code: int) -> None:
        if self.close_code is not None:
            return
        self.close_code = int(code)
        if self.conn is not None:
            self.conn.close()
        with contextlib.suppress(Exception):  # the peer may be gone already; see _transmit
            await self.close(code=int(code))

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Channels' ``send``, straight to the server's ``send`` for a binary record.

        Every pushed message to every session goes through here; Channels' two
        layers of coroutines around the ASGI ``send`` are measurable at that rate.
        """
        if bytes_data is not None and not close:
            await self.base_send({"type": "websocket.send", "bytes": bytes_data})
            return
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def _transmit(self, **frame: Any) -> None:
        """Send one WebSocket message, unless the peer has gone.

        A layer event can arrive after the client closed but before the
        ``websocket.disconnect`` that follows it; daphne then raises on send.
        That must not end the consumer: ``disconnect`` (presence, groups, the
        log line) still has to run when the disconnect message is handled.
        """
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

    async def _send_message(self, message: dict[str, Any]) -> None:
        if self.conn is None or self.close_code is not None:
            return
        try:
            data = self.conn.send(message)
        except SequenceExhausted:
            await self._close(CloseCode.NORMAL)  # the client reconnects
            return
        await self._transmit(bytes_data=data)

    async def reply_error(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        """An ``error`` answer (the connection counts bad requests and may close 4008)."""
        if self.conn is None or self.close_code is not None:
            return
        await self._apply(self.conn.reply_error(code, message, ref))
        if code == ErrorCode.RATE_LIMITED and self.limits.refused():
            await self._close(CloseCode.POLICY)  # flooding on after rate_limited (chat/limits.py)

    async def _dispatch(self, request: Request) -> None:
        if request.type not in ("send", "pm"):
            await self._writes_done()  # answers in the order of the requests
        if request.type.startswith("file_"):
            handler = self.transfers.handle_request
        else:
            handler = getattr(self, f"handle_{request.type}")
        if self.user is not None:
            refusal = await self.limits.admit(self.user_id, request)
            if refusal is not None:
                await self.reply_error(ErrorCode.RATE_LIMITED, refusal, request.id)
                return
        try:
            await handler(request)
        except services.ServiceError as exc:
            await self.reply_error(exc.code, exc.message, request.id)
        except Exception:
            log.exception("session %s: %s request failed", self.session_id, request.type)
            await self.reply_error(
                ErrorCode.INTERNAL, "the server failed to do that; try again later", request.id
            )
        else:
            await self.limits.succeeded(self.user_id, request)

    async def _deadlines(self) -> None:
        """Close sessions that miss the key (10 s) or login (60 s) deadline."""
        loop = asyncio.get_running_loop()
        while self.conn is not None and self.close_code is None:
            deadline = self.conn.deadline()
            if deadline is None:
                return
            delay = self.started + deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            async with self.lock:
                await self._apply(self.conn.timed_out(loop.time() - self.started))
                if self.close_code is None:
                    await asyncio.sleep(0.05)

    def greeting(self) -> dict[str, Any]:
        return {
            "type": "greeting",
            "server": settings.CHAT_SERVER_NAME,
            "text": settings.CHAT_GREETING,
            "registration": accounts.registration_open(),
            "limits": {
                "max_text": settings.CHAT_MAX_TEXT,
                "max_file_size": settings.CHAT_MAX_FILE_SIZE,
            },
        }

    # --- login ------------------------------------------------------------------------------

    async def handle_login(self, request: Request) -> None:
        result = await workers.passwords(accounts.login)(
            request.username, request.password, self.address
        )
        if result.user is None:
            fields: dict[str, Any] = {"reason": result.reason}
            if result.retry_after is not None:
                fields["retry_after"] = result.retry_after
            await self._apply(self.conn.login_failed(answer("login_failed", request.id, **fields)))
            return
        async with limits.session_place(result.user.username) as wait:
            if wait is None:
                await self._logged_in(result.user, request.id)
                return
        # The user has CHAT_MAX_SESSIONS sessions already (chat/limits.py).
        refusal = answer("login_failed", request.id, reason="rate_limited", retry_after=wait)
        await self._apply(self.conn.login_failed(refusal))

    async def handle_register(self, request: Request) -> None:
        try:
            user = await workers.passwords(accounts.register)(
                request.username, request.password, self.address
            )
        except accounts.RegistrationRefused as exc:
            fields: dict[str, Any] = {"reason": exc.reason, "message": exc.message}
            if exc.retry_after is not None:
                fields["retry_after"] = exc.retry_after
            await self._send_message(answer("register_failed", request.id, **fields))
            return
        await self._logged_in(user, request.id)

    async def _logged_in(self, user, ref: str | None) -> None:
        """login_ok, then queued private messages, then users (PROTOCOL.md 3.1)."""
        self.conn.login_succeeded()
        if self.timer is not None:
            self.timer.cancel()  # no deadline after login; an idle session keeps no task
            self.timer = None
        self.user = user
        self.user_id = user.pk
        self.username = user.username
        # Subscribe first (pushes wait for the lock, held until the answers below are out),
        # then read: nothing committed after the read can miss this session.
        await self._join_group(delivery.user_group(user.pk))
        await sessions.register(self)
        came_online = await sync_to_async(presence.session_started)(
            self.username, self.channel_name
        )
        log.info(
            "session %s started: user %s from %s", self.session_id, self.username, self.address
        )
        start = await self._service(services.session_start, user)
        if start is None:
            # Deactivated between the password check and joining the user's group.
            await self._end("deactivated")
            return
        self._follow_rooms(start.room_names)
        await self._send_message(
            answer("login_ok", ref, user={"username": self.username}, rooms=start.rooms)
        )
        for message in start.queued:
            self._queued_sent.add(message["msg_id"])
            await self._send_message(message)
        await self._send_message(start.users)
        if came_online:
            await delivery.users_changed(start.users, exclude=self.channel_name)

    async def _join_group(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def refresh_groups(self) -> None:
        """Re-add this session's groups (Redis groups expire); called by the heartbeat."""
        for group in list(self.groups_joined):
            await self.channel_layer.group_add(group, self.channel_name)

    def _follow_rooms(self, rooms: set[str]) -> None:
        self.rooms = set(rooms)
        sessions.set_rooms(self, self.rooms)

    async def _sync_rooms(self) -> list[dict[str, Any]]:
        """Re-read the user's rooms, follow their messages; the ``rooms`` list."""
        names, rooms = await self._service(services.rooms_state, self.user)
        self._follow_rooms(names)
        return rooms

    async def _service(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A service call in a database thread.

        The broadcasts it makes after its commit are kept and sent when the lock is
        released, after the request's answer (see :class:`SessionLock`).
        """
        outbox: list[delivery.Broadcast] = []
        try:
            return await workers.database(delivery.collecting(func, outbox))(*args, **kwargs)
        finally:
            self._broadcasts.extend(outbox)

    async def _after_lock(self) -> None:
        """What waited for the lock: this session's broadcasts, then the pushes to it."""
        if self._broadcasts:
            outbox, self._broadcasts = self._broadcasts, []
            await delivery.send_collected(outbox)
        while self._deferred:
            waiting, self._deferred = self._deferred, []
            for push in waiting:
                await self._deliver(push)

    # --- requests after login ---------------------------------------------------------------

    async def handle_ping(self, request: Request) -> None:
        await self._send_message(answer("pong", request.id))

    async def handle_send(self, request: Request) -> None:
        self._write(request, services.Outgoing(request.text, room=request.room))

    async def handle_pm(self, request: Request) -> None:
        self._write(request, services.Outgoing(request.text, to=request.to))

    def _write(self, request: Request, outgoing: services.Outgoing) -> None:
        """Queue a message to store: see :meth:`_write_messages`."""
        self._writes.append((request, outgoing))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_messages())

    async def _write_messages(self) -> None:
        """Store the queued messages, then ack each and broadcast each, in request order.

        Messages that arrive while a batch is being written form the next batch: a
        client with many messages in flight gets them stored in one transaction
        each time (:func:`chat.services.send_messages`), not one database round
        trip after another. Any other request waits for the queue to be empty
        (:meth:`_writes_done`), so answers keep the order of the requests. Acks
        need no lock: the broadcasts (hence the messages themselves, this session's
        copy included) go out after them.
        """
        while self._writes:
            batch, self._writes = self._writes, []
            outbox: list[delivery.Broadcast] = []
            store = workers.database(delivery.collecting(services.send_messages, outbox))
            try:
                results = await store(self.user, [outgoing for _, outgoing in batch])
            except Exception:
                log.exception("session %s: storing %d messages failed", self.session_id, len(batch))
                results = [None] * len(batch)
            for (request, _), result in zip(batch, results, strict=True):
                if isinstance(result, services.ServiceError):
                    await self.reply_error(result.code, result.message, request.id)
                elif result is None:
                    await self.reply_error(
                        ErrorCode.INTERNAL,
                        "the server failed to do that; try again later",
                        request.id,
                    )
                else:
                    await self._send_message(answer("ack", request.id, **result))
            try:
                await delivery.send_collected(outbox)
            except Exception:
                log.exception("session %s: broadcasting messages failed", self.session_id)
        self._writer = None

    async def _writes_done(self) -> None:
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)

    async def handle_users(self, request: Request) -> None:
        await self._send_message(await self._service(services.users_message, request.id))

    async def handle_rooms(self, request: Request) -> None:
        rooms = await self._service(services.rooms_for, self.user)
        await self._send_message(answer("rooms", request.id, rooms=rooms))

    async def handle_join(self, request: Request) -> None:
        await self._service(services.join_room, self.user, request.room, self.channel_name)
        await self._answer_rooms(request)

    async def handle_leave(self, request: Request) -> None:
        await self._service(services.leave_room, self.user, request.room, self.channel_name)
        await self._answer_rooms(request)

    async def handle_create_room(self, request: Request) -> None:
        await self._service(
            services.create_room,
            self.user,
            request.room,
            private=request.private,
            members=request.members,
            origin=self.channel_name,
        )
        await self._answer_rooms(request)

    async def handle_invite(self, request: Request) -> None:
        await self._service(
            services.invite, self.user, request.room, request.user, self.channel_name
        )
        await self._answer_rooms(request)

    async def _answer_rooms(self, request: Request) -> None:
        rooms = await self._sync_rooms()
        await self._send_message(answer("rooms", request.id, rooms=rooms))

    async def handle_history(self, request: Request) -> None:
        result = await self._service(
            services.history,
            self.user,
            room=request.room,
            with_=request.with_,
            before=request.before,
            limit=request.limit,
            ref=request.id,
        )
        await self._send_message(result)

    # --- channel-layer events (chat.delivery) -----------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the handler of a WebSocket message or layer event.

        Unlike Channels' own dispatch, without ``aclose_old_connections()`` (a hop to
        a worker thread and back) before every event: every database call here goes
        through ``database_sync_to_async`` (:mod:`chat.workers`), which closes broken
        and expired connections around the call itself.

        A failing layer event is logged, never fatal: the consumer must live on to
        run ``disconnect`` (presence, groups), or its user would stay online.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        if not message["type"].startswith("chat."):
            await handler(message)
            return
        try:
            await handler(message)
        except Exception:
            log.exception("session %s: %s event failed", self.session_id, message["type"])

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' own, without its ``aclose_old_connections()`` hop after ``disconnect``
        (see :meth:`dispatch`); this consumer joins no class-level ``groups``."""
        await self.disconnect(message["code"])
        raise StopConsumer()

    # --- what chat.transfers calls (TransferSession's Consumer protocol) ------------------------

    def listening(self) -> bool:
        return self._listening()

    async def send_message(self, message: dict[str, Any]) -> None:
        await self._send_message(message)

    async def send_chunk(self, chunk: FileChunk) -> None:
        """A chunk record to the client (chunks relayed to this session as the recipient)."""
        if self.conn is None or self.close_code is not None:
            return
        try:
            data = self.conn.send_chunk(chunk.transfer, chunk.index, chunk.data)
        except SequenceExhausted:
            await self._close(CloseCode.NORMAL)  # the client reconnects
            return
        await self._transmit(bytes_data=data)

    def _listening(self) -> bool:
        return (
            self.conn is not None and self.close_code is None and self.conn.state is State.LOGGED_IN
        )

    # --- pushes from this process's fan-out (chat.sessions) -------------------------------------

    async def push(self, push: sessions.Push) -> None:
        """A message for this session from the fan-out, in the order they come.

        Sent at once, or, while the lock is held (a request being answered, the
        login being completed), kept until the holder lets go: see :class:`SessionLock`.
        This runs once per recipient of every message: keep it lean.
        """
        if self.lock.locked():
            await self._defer(push)
            return
        data = self._seal_push(push)
        if data is not None:
            await self._transmit(bytes_data=data)
            if push.mark_delivered:
                self._mark_delivered(push)

    async def _defer(self, push: sessions.Push) -> None:
        if len(self._deferred) < MAX_DEFERRED_PUSHES:
            self._deferred.append(push)
            return
        log.warning(
            "session %s: %d pushes waiting; closing so that the client reconnects",
            self.session_id,
            len(self._deferred),
        )
        self._deferred.clear()
        await self._close(CloseCode.NORMAL)

    async def _deliver(self, push: sessions.Push) -> None:
        """Send a push that waited for the lock."""
        data = self._seal_push(push)
        if data is not None:
            await self._transmit(bytes_data=data)
            if push.mark_delivered:
                self._mark_delivered(push)

    def _mark_delivered(self, push: sessions.Push) -> None:
        """A message queued for an offline recipient reached one of their sessions live."""
        if self.close_code is None:
            _in_background(workers.database(services.mark_delivered)(self.user_id, push.msg_id))

    def _seal_push(self, push: sessions.Push) -> bytes | None:
        """The record of ``push`` for this session, or None if it is not for it (any more)."""
        conn = self.conn
        if conn is None or self.close_code is not None or conn.state is not State.LOGGED_IN:
            return None
        if push.room is not None and push.room not in self.rooms:
            return None  # the session left the room meanwhile
        if push.msg_id is not None and push.msg_id in self._queued_sent:
            return None  # already sent from the offline queue at login
        try:
            return conn.send_plaintext(push.plaintext)
        except SequenceExhausted:
            _in_background(self._close(CloseCode.NORMAL))  # the client reconnects
            return None

    async def chat_rooms_changed(self, event: dict[str, Any]) -> None:
        async with self.lock:
            if not self._listening():
                return
            if event.get("exclude") == self.channel_name:
                return  # the asking session synced and got its rooms as the direct answer
            rooms = await self._sync_rooms()
            await self._send_message({"type": "rooms", "rooms": rooms})

    async def chat_transfer(self, event: dict[str, Any]) -> None:
        """A file transfer's message, chunk or step (see :mod:`chat.transfers`)."""
        async with self.lock:
            await self.transfers.on_event(event)

    async def chat_end(self, event: dict[str, Any]) -> None:
        async with self.lock:
            await self._end(event["reason"])

    async def _end(self, reason: str) -> None:
        if self.close_code is not None or self.conn is None:
            return
        if self.conn.state is State.LOGGED_IN:
            await self._send_message({"type": "session_ended", "reason": reason})
        await self._close(CloseCode.SESSION_ENDED)
