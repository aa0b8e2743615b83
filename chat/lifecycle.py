"""A session's life as service actions: login or registration, its start, its end.

The greeting, login and registration are PROTOCOL.md 3.1.

The consumer hands a ``login`` or ``register`` request here. Passwords are
checked in the password threads (:class:`chat.workers.Workers`); a refusal
is an :class:`accounts.errors.ServiceError` (``LoginRefused``,
``RegistrationRefused``) turned into ``login_failed`` or ``register_failed``.
A login also takes a place under the session limit (:mod:`chat.limits`).

Then the session starts, in this order, so that nothing committed after it
can miss the session: the user's group is joined and the session registered
for pushes (which wait for the session's lock, held by the caller until the
answers below are out), presence records it, one database call reads what
the session needs, and ``login_ok``, the queued private messages and
``users`` are sent; everyone else gets ``users`` if the user came online.

When the connection ends, :func:`finish` undoes it in the reverse order and
ends the session's file transfers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from accounts import services as accounts
from accounts.errors import LoginRefused, RegistrationRefused
from accounts.models import User
from chatproto.messages import Request

from . import delivery, presence, services
from .outbox import Outbox
from .transfers import TransferSession

if TYPE_CHECKING:
    from .runtime import ChatRuntime

log = logging.getLogger("chat.sessions")


class Starting(Protocol):
    """What a session's life needs of the consumer (``chat.consumers.ChatConsumer``)."""

    runtime: ChatRuntime
    outbox: Outbox
    channel_name: str
    address: str
    session_id: str | None
    username: str
    user_id: int
    rooms: set[str]
    presence_seq: int | None
    user: User | None
    transfers: TransferSession

    def logged_in_as(self, user: User) -> None: ...

    async def join_group(self, group: str) -> None: ...

    def follow_rooms(self, rooms: set[str]) -> None: ...

    async def send_message(self, message: dict[str, Any]) -> None: ...

    async def refuse_login(self, message: dict[str, Any]) -> None: ...

    async def end(self, reason: str) -> None: ...

    async def push(self, push: Any) -> None: ...

    async def refresh_groups(self) -> None: ...


def greeting() -> dict[str, Any]:
    """The ``greeting`` sent once the handshake is complete."""
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


def login_failed(ref: str | None, reason: str, retry_after: int | None) -> dict[str, Any]:
    """The ``login_failed`` answer (no message on the wire: the client words the reason)."""
    fields: dict[str, Any] = {"reason": reason}
    if retry_after is not None:
        fields["retry_after"] = retry_after
    return services.answer("login_failed", ref, **fields)


async def login(session: Starting, request: Request) -> None:
    """A ``login``: the password check, the session limit, then :func:`start`."""
    req: Any = request
    runtime = session.runtime
    try:
        user = await runtime.workers.passwords(accounts.authenticate)(
            req.username, req.password, session.address
        )
    except LoginRefused as refused:
        await session.refuse_login(login_failed(request.id, refused.code, refused.retry_after))
        return
    async with runtime.limits.session_place(user.username) as wait:
        if wait is None:
            await start(session, user, request.id)
            return
    # The user has CHAT_MAX_SESSIONS sessions already (chat/limits.py).
    await session.refuse_login(login_failed(request.id, accounts.RATE_LIMITED, wait))


async def register(session: Starting, request: Request) -> None:
    """A ``register``: the account is created and the session starts as its first."""
    req: Any = request
    try:
        user = await session.runtime.workers.passwords(accounts.register)(
            req.username, req.password, session.address
        )
    except RegistrationRefused as refused:
        await session.send_message(
            services.answer("register_failed", request.id, **refused.fields())
        )
        return
    await start(session, user, request.id)


async def start(session: Starting, user: User, ref: str | None) -> None:
    """login_ok, then queued private messages, then users (see the module docstring)."""
    session.logged_in_as(user)
    await session.join_group(delivery.user_group(user.pk))
    feed = session.runtime.sessions.presence
    await session.runtime.sessions.register(session)
    if await sync_to_async(presence.session_started)(session.username, session.channel_name):
        await feed.local_change(session.username, True)
    log.info(
        "session %s started: user %s from %s", session.session_id, session.username, session.address
    )
    begun = await session.outbox.service(services.session_start, user)
    if begun is None:
        # Deactivated between the password check and joining the user's group.
        await session.end("deactivated")
        return
    session.follow_rooms(begun.room_names)
    await session.send_message(
        services.answer("login_ok", ref, user={"username": session.username}, rooms=begun.rooms)
    )
    for message in begun.queued:
        session.outbox.sent_from_queue(message["msg_id"])
        await session.send_message(message)
    await session.send_message(await feed.snapshot(session))


async def finish(session: Starting, code: int) -> None:
    """The connection ended (``code``): what it sent is stored, it leaves the registry and
    presence, its transfers end, and if it was the user's last, the presence feed has them
    go offline."""
    await session.outbox.writes_done()  # messages received before the close are stored and sent
    went_offline = False
    try:
        if session.user is not None:
            await session.runtime.sessions.unregister(session)
            ended = sync_to_async(presence.session_ended)
            went_offline = await ended(session.username, session.channel_name)
            if went_offline:
                await session.runtime.sessions.presence.local_change(session.username, False)
    finally:
        # After presence, so that the user's last session also ends offers made to them.
        await session.transfers.session_closed(went_offline=went_offline)
    if session.session_id is None:
        log.debug("connection from %s closed before the handshake ended: %s", session.address, code)
        return
    log.info(
        "session %s ended: user %s from %s, close %s",
        *(session.session_id, session.username, session.address, code),
    )
