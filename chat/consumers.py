"""The WebSocket consumer: a thin asyncio shell around chatproto's ``ServerConnection``.

It only converts: WebSocket messages into connection events, events into
sends and closes, each validated request into a call of the handler named
after its type (``handle_send`` for ``send``...), and the service's result or
:class:`~chat.services.ServiceError` into a record. Database work goes through
named service functions under ``database_sync_to_async``; password hashing
runs in a worker thread of its own (``thread_sensitive=False``), never on the
event loop. Channel-layer events (``chat_push``...) come from
:mod:`chat.delivery`.

File transfers (``file_*`` and chunk records) are delegated to
``transfers_class``; until that feature lands, :class:`TransfersUnavailable`
answers them with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts import services as accounts
from accounts.throttle import SlidingWindow
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

from . import delivery, presence, services, sessions
from .addresses import client_address

log = logging.getLogger("chat.sessions")


@functools.cache
def server_key():
    """The server's RSA key, generated (mode 0600) on first use; see ``manage.py server_key``."""
    return crypto_utils.load_private_key(settings.CHAT_SERVER_KEY)


def handshake_window() -> SlidingWindow:
    return SlidingWindow("handshake", *settings.CHAT_HANDSHAKE_RATE)


def handshake_allowed(address: str) -> bool:
    """Count a new connection from ``address``; False past the limit (PROTOCOL.md 1.3)."""
    window = handshake_window()
    if window.retry_after(address):
        return False
    window.hit(address)
    return True


def answer(kind: str, ref: str | None, **fields: Any) -> dict[str, Any]:
    """A direct answer: ``ref`` only where the request had an ``id``."""
    message: dict[str, Any] = {"type": kind, **fields}
    if ref is not None:
        message["ref"] = ref
    return message


class TransfersUnavailable:
    """Stands in for file transfers until they are implemented (PROTOCOL.md 3.3)."""

    def __init__(self, consumer: ChatConsumer) -> None:
        self.consumer = consumer

    async def handle_request(self, request: Request) -> None:
        if request.type == "file_offer":
            await self.consumer.reply_error(
                ErrorCode.BAD_REQUEST,
                "file transfer is not available on this server yet",
                request.id,
            )
        else:
            await self.consumer.reply_error(
                ErrorCode.UNKNOWN_TRANSFER, "there is no such transfer", request.id
            )

    async def handle_chunk(self, chunk: FileChunk) -> None:
        await self.consumer.reply_error(ErrorCode.UNKNOWN_TRANSFER, "there is no such transfer")

    async def session_closed(self) -> None:
        return None


class ChatConsumer(AsyncWebsocketConsumer):
    transfers_class = TransfersUnavailable

    # --- WebSocket lifecycle ----------------------------------------------------------------

    async def connect(self) -> None:
        self.address = client_address(self.scope)
        self.conn: ServerConnection | None = None
        self.session_id: str | None = None
        self.user = None
        self.username = "-"
        self.rooms: set[str] = set()
        self.groups_joined: set[str] = set()
        self.close_code: int | None = None
        self.lock = asyncio.Lock()
        self.timer: asyncio.Task | None = None
        self.transfers = self.transfers_class(self)
        self._queued_sent: set[int] = set()
        await self.accept()
        if not await sync_to_async(handshake_allowed)(self.address):
            log.warning("connection from %s refused: too many handshakes", self.address)
            await self._close(CloseCode.POLICY)
            return
        key = await sync_to_async(server_key)()
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
            if text_data is not None:
                events = self.conn.receive_text(text_data)
            else:
                events = self.conn.receive_bytes(bytes_data or b"")
            await self._apply(events)

    async def disconnect(self, code: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.conn is not None:
            self.conn.close()
        await self.transfers.session_closed()
        for group in list(self.groups_joined):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.clear()
        if self.user is not None:
            sessions.unregister(self)
            went_offline = await sync_to_async(presence.session_ended)(
                self.username, self.channel_name
            )
            if went_offline:
                message = await database_sync_to_async(services.users_message)()
                await delivery.users_changed(message)
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

    async def _dispatch(self, request: Request) -> None:
        if request.type.startswith("file_"):
            await self.transfers.handle_request(request)
            return
        handler = getattr(self, f"handle_{request.type}")
        try:
            await handler(request)
        except services.ServiceError as exc:
            await self.reply_error(exc.code, exc.message, request.id)
        except Exception:
            log.exception("session %s: %s request failed", self.session_id, request.type)
            await self.reply_error(
                ErrorCode.INTERNAL, "the server failed to do that; try again later", request.id
            )

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
        result = await database_sync_to_async(accounts.login, thread_sensitive=False)(
            request.username, request.password, self.address
        )
        if result.user is None:
            fields: dict[str, Any] = {"reason": result.reason}
            if result.retry_after is not None:
                fields["retry_after"] = result.retry_after
            await self._apply(self.conn.login_failed(answer("login_failed", request.id, **fields)))
            return
        await self._logged_in(result.user, request.id)

    async def handle_register(self, request: Request) -> None:
        try:
            user = await database_sync_to_async(accounts.register, thread_sensitive=False)(
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
        self.user = user
        self.username = user.username
        self.rooms = await database_sync_to_async(services.member_room_names)(user.pk)
        for group in (
            delivery.user_group(user.pk),
            delivery.ONLINE_GROUP,
            *(delivery.room_group(r) for r in self.rooms),
        ):
            await self._join_group(group)
        sessions.register(self)
        came_online = await sync_to_async(presence.session_started)(
            self.username, self.channel_name
        )
        log.info(
            "session %s started: user %s from %s", self.session_id, self.username, self.address
        )
        if not await database_sync_to_async(services.is_active)(user.pk):
            # Deactivated between the password check and joining the user's group.
            await self._end("deactivated")
            return
        rooms = await database_sync_to_async(services.rooms_for)(user)
        await self._send_message(
            answer("login_ok", ref, user={"username": self.username}, rooms=rooms)
        )
        for message in await database_sync_to_async(services.take_queued_private_messages)(user):
            self._queued_sent.add(message["msg_id"])
            await self._send_message(message)
        users = await database_sync_to_async(services.users_message)()
        await self._send_message(users)
        if came_online:
            await delivery.users_changed(users, exclude=self.channel_name)

    async def _join_group(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def _leave_group(self, group: str) -> None:
        await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.discard(group)

    async def refresh_groups(self) -> None:
        """Re-add this session's groups (Redis groups expire); called by the heartbeat."""
        for group in list(self.groups_joined):
            await self.channel_layer.group_add(group, self.channel_name)

    async def _sync_rooms(self) -> list[dict[str, Any]]:
        """Re-read the user's rooms, follow them with groups; the ``rooms`` list."""
        rooms = await database_sync_to_async(services.member_room_names)(self.user.pk)
        for name in rooms - self.rooms:
            await self._join_group(delivery.room_group(name))
        for name in self.rooms - rooms:
            await self._leave_group(delivery.room_group(name))
        self.rooms = rooms
        return await database_sync_to_async(services.rooms_for)(self.user)

    # --- requests after login ---------------------------------------------------------------

    async def handle_ping(self, request: Request) -> None:
        await self._send_message(answer("pong", request.id))

    async def handle_send(self, request: Request) -> None:
        result = await database_sync_to_async(services.send_room_message)(
            self.user, request.room, request.text
        )
        await self._send_message(answer("ack", request.id, **result))

    async def handle_pm(self, request: Request) -> None:
        result = await database_sync_to_async(services.send_private_message)(
            self.user, request.to, request.text
        )
        await self._send_message(answer("ack", request.id, **result))

    async def handle_users(self, request: Request) -> None:
        await self._send_message(await database_sync_to_async(services.users_message)(request.id))

    async def handle_rooms(self, request: Request) -> None:
        rooms = await database_sync_to_async(services.rooms_for)(self.user)
        await self._send_message(answer("rooms", request.id, rooms=rooms))

    async def handle_join(self, request: Request) -> None:
        await database_sync_to_async(services.join_room)(self.user, request.room, self.channel_name)
        await self._answer_rooms(request)

    async def handle_leave(self, request: Request) -> None:
        await database_sync_to_async(services.leave_room)(
            self.user, request.room, self.channel_name
        )
        await self._answer_rooms(request)

    async def handle_create_room(self, request: Request) -> None:
        await database_sync_to_async(services.create_room)(
            self.user,
            request.room,
            private=request.private,
            members=request.members,
            origin=self.channel_name,
        )
        await self._answer_rooms(request)

    async def handle_invite(self, request: Request) -> None:
        await database_sync_to_async(services.invite)(
            self.user, request.room, request.user, self.channel_name
        )
        await self._answer_rooms(request)

    async def _answer_rooms(self, request: Request) -> None:
        rooms = await self._sync_rooms()
        await self._send_message(answer("rooms", request.id, rooms=rooms))

    async def handle_history(self, request: Request) -> None:
        result = await database_sync_to_async(services.history)(
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
        """A failing layer event is logged, never fatal: the consumer must live on to run
        ``disconnect`` (presence, groups), or its user would stay online."""
        if not message["type"].startswith("chat."):
            await super().dispatch(message)
            return
        try:
            await super().dispatch(message)
        except Exception:
            log.exception("session %s: %s event failed", self.session_id, message["type"])

    def _listening(self) -> bool:
        return (
            self.conn is not None and self.close_code is None and self.conn.state is State.LOGGED_IN
        )

    async def chat_push(self, event: dict[str, Any]) -> None:
        async with self.lock:
            if not self._listening() or event.get("exclude") == self.channel_name:
                return
            room = event.get("room")
            if room is not None and room not in self.rooms:
                return  # a stale group membership never leaks a room's messages
            await self._send_message(event["message"])

    async def chat_private(self, event: dict[str, Any]) -> None:
        async with self.lock:
            if not self._listening():
                return
            message = event["message"]
            if message["msg_id"] in self._queued_sent:
                return  # already sent from the offline queue at login
            await self._send_message(message)
            if event.get("queued") and message.get("to") == self.username:
                await database_sync_to_async(services.mark_delivered)(
                    self.user.pk, message["msg_id"]
                )

    async def chat_rooms_changed(self, event: dict[str, Any]) -> None:
        async with self.lock:
            if not self._listening():
                return
            if event.get("exclude") == self.channel_name:
                return  # the asking session synced and got its rooms as the direct answer
            rooms = await self._sync_rooms()
            await self._send_message({"type": "rooms", "rooms": rooms})

    async def chat_users(self, event: dict[str, Any]) -> None:
        sessions.users_seen(event["message"]["all"])
        async with self.lock:
            if not self._listening() or event.get("exclude") == self.channel_name:
                return
            await self._send_message(event["message"])

    async def chat_end(self, event: dict[str, Any]) -> None:
        async with self.lock:
            await self._end(event["reason"])

    async def _end(self, reason: str) -> None:
        if self.close_code is not None or self.conn is None:
            return
        if self.conn.state is State.LOGGED_IN:
            await self._send_message({"type": "session_ended", "reason": reason})
        await self._close(CloseCode.SESSION_ENDED)
