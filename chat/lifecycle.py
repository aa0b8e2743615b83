"""A session's life as service actions: login or registration, its start, its end.

The greeting, login and registration are PROTOCOL.md 3.1; ``resume``, ``remember``
and the two-factor enrolment a server may require are 3.4.

The consumer hands a ``login`` or ``register`` request here. Passwords are
checked in the password threads (:class:`chat.workers.Workers`); a refusal
is an :class:`accounts.errors.ServiceError` (``LoginRefused``,
``RegistrationRefused``) turned into ``login_failed`` or ``register_failed``.
A login also takes a place under the session limit (:mod:`chat.limits`).

Then the session starts, in this order, so that nothing committed after it
can miss the session: the user's group is joined and the session registered
for pushes (which wait for the session's lock, held by the caller until the
answers below are out), presence records it, one database call reads what
the session needs, and ``login_ok``, the queued private messages, the
device's queued to-device messages and ``users`` are sent; everyone else
gets ``users`` if the user came online.

Where the server requires two-factor login (``CHAT_REQUIRE_2FA``) and the account
has none, the session is logged in but not yet started: ``login_ok`` carries
``otp_enrolment_required``, no rooms, and the session is in the user's group (it
can be ended) but not in presence or the fan-out, and gets no queued private
messages, until ``otp_confirm`` succeeds (:func:`enrolled`), when the start above
runs with a ``rooms`` push in place of ``login_ok``.

When the connection ends, :func:`finish` undoes it in the reverse order and
ends the session's file transfers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from accounts import devices, two_factor
from accounts import services as accounts
from accounts.errors import LoginRefused, RegistrationRefused
from accounts.models import User
from chatproto.framing import encode_json_with_lists
from chatproto.messages import Request

from . import delivery, e2e_handlers, presence, services
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
    device: str | None
    entered: bool
    username: str
    user_id: int
    rooms: set[str]
    presence_seq: int | None
    user: User | None
    transfers: TransferSession

    def logged_in_as(
        self, user: User, *, device: str | None = None, enrolment_required: bool = False
    ) -> None: ...

    def enrolled(self) -> None: ...

    async def join_group(self, group: str) -> None: ...

    def follow_rooms(self, rooms: set[str]) -> None: ...

    async def send_message(self, message: dict[str, Any]) -> None: ...

    async def send_plaintext(self, plaintext: bytes) -> bool: ...

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
    """A ``login``: the password (and ``otp``) check, the session limit, then :func:`start`.

    A wrong or missing ``otp`` of an account with two-factor login is ``login_failed``
    ``otp_required``, counted toward the session's failures like a wrong password.
    """
    req: Any = request
    runtime = session.runtime
    try:
        user = await runtime.workers.passwords(accounts.authenticate)(
            req.username, req.password, session.address, otp=req.otp
        )
    except LoginRefused as refused:
        await session.refuse_login(login_failed(request.id, refused.code, refused.retry_after))
        return
    await _start_within_limit(session, user, request, remember=req.remember)


async def resume(session: Starting, request: Request) -> None:
    """A ``resume``: a remembered device's token instead of the password (PROTOCOL.md 3.4).

    Every refusal is ``login_failed`` ``invalid_credentials`` (or ``rate_limited``), counted
    toward the session's failures; ``accounts.devices.resume`` makes them alike.
    """
    req: Any = request
    try:
        user, device = await session.runtime.workers.passwords(devices.resume)(
            req.username, req.token, session.address
        )
    except LoginRefused as refused:
        await session.refuse_login(login_failed(request.id, refused.code, refused.retry_after))
        return
    await _start_within_limit(session, user, request, device=device)


async def _start_within_limit(
    session: Starting,
    user: User,
    request: Request,
    *,
    remember: str | None = None,
    device: str | None = None,
) -> None:
    """:func:`start`, under the session limit (``chat/limits.py``): else ``rate_limited``."""
    runtime = session.runtime
    async with runtime.limits.session_place(user.username) as wait:
        if wait is None:
            await start(session, user, request.id, remember=remember, device=device)
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
    await start(session, user, request.id, remember=req.remember)


def _login_state(
    user: User, remember: str | None, address: str
) -> tuple[devices.Remembered | None, bool]:
    """In a database thread: the device a ``remember`` creates, and whether the session
    must first set up two-factor login (``CHAT_REQUIRE_2FA`` and the account has none)."""
    remembered = devices.remember_device(user, remember, address) if remember else None
    return remembered, settings.CHAT_REQUIRE_2FA and not two_factor.two_factor_enabled(user)


async def start(
    session: Starting,
    user: User,
    ref: str | None,
    *,
    remember: str | None = None,
    device: str | None = None,
) -> None:
    """login_ok, then queued private messages, then users (see the module docstring).

    ``remember``: create a device of that name (login_ok then carries its ``device`` and
    ``token``); ``device``: the device a ``resume`` logged in as (login_ok carries it).
    A session that must set up two-factor login first gets ``otp_enrolment_required`` and
    nothing else until :func:`enrolled`.
    """
    remembered, enrolment_required = None, False
    if remember or settings.CHAT_REQUIRE_2FA:  # else no database call: logins stay cheap
        remembered, enrolment_required = await session.outbox.service(
            _login_state, user, remember, session.address
        )
    fields: dict[str, Any] = {}
    if remembered is not None:
        device = remembered.device
        fields["token"] = remembered.token
    if device is not None:
        fields["device"] = device
    session.logged_in_as(user, device=device, enrolment_required=enrolment_required)
    await session.join_group(delivery.user_group(user.pk))
    if device is not None or enrolment_required:
        await sync_to_async(presence.device_session_started)(
            session.username, session.channel_name, device, enrolling=enrolment_required
        )
    if enrolment_required:
        await _start_enrolment(session, ref, fields)
        return
    await _enter(session, ref, fields)


async def _start_enrolment(session: Starting, ref: str | None, fields: dict[str, Any]) -> None:
    """login_ok with ``otp_enrolment_required`` and no rooms: the session is in the user's
    group (so that it can be ended) but not yet in presence, the fan-out or the queue."""
    if not await session.outbox.service(services.is_active, session.user_id):
        await session.end("deactivated")  # between the password check and the group
        return
    log.info(
        "session %s started, two-factor setup required: user %s from %s",
        *(session.session_id, session.username, session.address),
    )
    await session.send_message(
        services.answer(
            "login_ok",
            ref,
            user={"username": session.username},
            rooms=[],
            otp_enrolment_required=True,
            **fields,
        )
    )


async def enrolled(session: Starting) -> None:
    """``otp_confirm`` made the session's account two-factor: the session starts in full
    (registered, presence, ``rooms``, queued private messages, ``users``), as at login."""
    session.enrolled()
    await sync_to_async(presence.device_session_enrolled)(session.username, session.channel_name)
    await _enter(session, None, None)


async def _enter(session: Starting, ref: str | None, fields: dict[str, Any] | None) -> None:
    """The session joins the fan-out and presence, then its answers: ``login_ok`` (with
    ``fields``) or, for ``fields`` None (after enrolment), a ``rooms`` push; then the queued
    private messages and ``users``."""
    feed = session.runtime.sessions.presence
    session.entered = True  # from here on, finish() undoes the registration and presence
    await session.runtime.sessions.register(session)
    if await sync_to_async(presence.session_started)(session.username, session.channel_name):
        await feed.local_change(session.username, True)
    log.info(
        "session %s started: user %s from %s", session.session_id, session.username, session.address
    )
    begun = await session.outbox.service(
        services.session_start, session.user, session.runtime.public_rooms
    )
    if begun is None:
        # Deactivated between the password check and joining the user's group.
        await session.end("deactivated")
        return
    session.follow_rooms(begun.room_names)
    head: dict[str, Any]
    if fields is None:
        head = {"type": "rooms"}
    else:
        head = services.answer("login_ok", ref, user={"username": session.username}, **fields)
    await session.send_plaintext(encode_json_with_lists(head, {"rooms": begun.rooms_json}))
    for message in begun.queued:
        session.outbox.sent_from_queue(message["msg_id"])
        await session.send_message(message)
    await session.send_plaintext(await feed.snapshot(session))
    if session.device is not None:  # to-device messages queued for it, right after users
        await e2e_handlers.send_queued_to_device(session)


async def finish(session: Starting, code: int) -> None:
    """The connection ended (``code``): what it sent is stored, it leaves the registry and
    presence, its transfers end, and if it was the user's last, the presence feed has them
    go offline."""
    await session.outbox.writes_done()  # messages received before the close are stored and sent
    went_offline = False
    try:
        if session.user is not None and (session.device is not None or not session.entered):
            # Recorded at start if it had a device or was still setting up two-factor login.
            ended_device = sync_to_async(presence.device_session_ended)
            await ended_device(session.username, session.channel_name)
        if session.entered:
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
