"""Every state change and query of the chat, as plain synchronous functions.

Zulip's pattern: check, write inside a transaction, and broadcast only once the
transaction has committed (``transaction.on_commit``), so no session ever hears
of something that a rollback then undoes. The consumer (through
``database_sync_to_async``), the admin, management commands and tests all call
these functions; none of them touches the models for a state change directly.

Failures the user can act on raise :class:`ServiceError` with the protocol's
error code and human words. ``origin`` parameters name the channel of the
session that asked, which gets a direct answer instead of a push.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts import devices
from accounts.errors import ServiceError as ServiceError  # the one error model, re-exported
from accounts.models import User
from chatproto.codes import ErrorCode
from chatproto.framing import encode_json_value, encoded_size
from chatproto.limits import HISTORY_DEFAULT_LIMIT, MAX_PLAINTEXT_SIZE
from chatproto.messages import answer

from . import delivery, presence, room_lists
from .models import LOBBY, Membership, Message, Room
from .room_lists import PublicRooms
from .storage import BodyCipher

log = logging.getLogger("chat.services")

# --- formatting ------------------------------------------------------------------------------


def format_ts(when: datetime.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC (PROTOCOL.md 3.0)."""
    utc = when.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _message_fields(
    message: Message, text: str | None = None, cipher: BodyCipher | None = None
) -> dict[str, Any]:
    """The fields of ``message`` or ``private`` without ``type`` (as ``history`` holds them).

    ``text``: the stored body where the caller has it; else it is decrypted with ``cipher``
    (one per call of a service, so the key file is read once, not once per message). An
    end-to-end message's body is its ``e2e`` object as JSON, returned as ``e2e``.
    """
    body = (cipher or BodyCipher()).decrypt(message.body_encrypted) if text is None else text
    content: dict[str, Any] = {"e2e": json.loads(body)} if message.e2e else {"text": body}
    if message.room_id is not None:
        return {
            "msg_id": message.pk,
            "room": message.room.name,
            "from": message.sender.username,
            **content,
            "ts": format_ts(message.created),
        }
    return {
        "msg_id": message.pk,
        "from": message.sender.username,
        "to": message.recipient.username,
        **content,
        "ts": format_ts(message.created),
    }


def message_event(
    message: Message, text: str | None = None, cipher: BodyCipher | None = None
) -> dict[str, Any]:
    """The ``message`` or ``private`` push for a stored message (see :func:`_message_fields`)."""
    kind = "message" if message.room_id is not None else "private"
    return {"type": kind, **_message_fields(message, text, cipher)}


# --- queries ---------------------------------------------------------------------------------


def _room_name(room: dict[str, Any]) -> str:
    return str(room["name"])


def rooms_for(user: User, public: PublicRooms | None = None) -> list[dict[str, Any]]:
    """The ``rooms`` list of the protocol for ``user``: ``{name, private, owner, members}`` of
    every public room and every private room the user is a member of, by name.

    ``public``: the process's copy of the public rooms (:mod:`chat.room_lists`), for the
    reads that need no fresher state than the last commit (login, ``rooms``); without it
    they are read here (the answers to the user's own changes, inside their transaction).
    """
    public_rooms = public.rooms() if public is not None else room_lists.read_public_rooms()
    return _by_name(public_rooms, _private_rooms(user))


def _private_rooms(user: User) -> list[dict[str, Any]]:
    member_of = Membership.objects.filter(user_id=user.pk, room__private=True).values("room_id")
    return room_lists.room_objects(
        Room.objects.filter(pk__in=member_of), Membership.objects.filter(room_id__in=member_of)
    )


def _by_name(
    public: list[Any], private: list[Any], name: Callable[[Any], str] = _room_name
) -> list[Any]:
    """The public rooms (sorted already) and the user's private ones, in one list by name."""
    if not private:
        return list(public)
    return sorted([*public, *private], key=name)


def member_room_names(user_id: int) -> set[str]:
    """The rooms whose messages the user's sessions receive."""
    return set(Membership.objects.filter(user_id=user_id).values_list("room__name", flat=True))


def rooms_state(
    user: User, public: PublicRooms | None = None
) -> tuple[set[str], list[dict[str, Any]]]:
    """The user's rooms as a session follows them: the names it is a member of, and ``rooms``."""
    return member_room_names(user.pk), rooms_for(user, public)


@dataclass(frozen=True)
class SessionStart:
    """What a session needs right after login (PROTOCOL.md 3.1), read in one worker call.

    ``rooms_json``: ``rooms`` with each room object encoded (for
    :func:`chatproto.framing.encode_json_with_lists`): lobby's members are every account,
    and the public rooms come encoded already from the process's copy.
    """

    room_names: set[str]
    rooms: list[dict[str, Any]]
    rooms_json: list[bytes]
    queued: list[dict[str, Any]]


def session_start(user: User, public: PublicRooms | None = None) -> SessionStart | None:
    """Everything for ``login_ok`` and what follows it; None if the account is no longer active.

    Called once the session is registered for pushes, so that a deactivation
    committed before this read ends the session here, and one committed after it
    reaches the session as ``chat.end``.
    """
    if not is_active(user.pk):
        return None
    if public is None:
        public_rooms = room_lists.read_public_rooms()
        public_json = [encode_json_value(room) for room in public_rooms]
    else:
        copy = public.current()
        public_rooms, public_json = copy.rooms, copy.encoded
    # Each room beside its encoding, put in order once for both lists.
    pairs = _by_name(
        list(zip(public_rooms, public_json, strict=True)),
        [(room, encode_json_value(room)) for room in _private_rooms(user)],
        name=lambda pair: pair[0]["name"],
    )
    return SessionStart(
        member_room_names(user.pk),
        [room for room, _ in pairs],
        [encoded for _, encoded in pairs],
        take_queued_private_messages(user),
    )


def active_usernames() -> list[str]:
    return sorted(User.objects.filter(is_active=True).values_list("username", flat=True))


def users_snapshot() -> dict[str, list[str]]:
    """``online`` and ``all`` as a fresh ``users`` would say them (online is within all),
    from the database and the cache: O(N), so read by a process's presence feed when it
    starts and at each heartbeat (:mod:`chat.presence_feed`), never per login."""
    everyone = active_usernames()
    return {"online": sorted(presence.online(everyone)), "all": everyone}


def is_active(user_id: int) -> bool:
    return User.objects.filter(pk=user_id, is_active=True).exists()


def _active_user(username: str) -> User:
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ServiceError(ErrorCode.UNKNOWN_USER, f"there is no user {username!r}")
    return user


def _visible_room(user: User, name: str) -> tuple[Room, bool]:
    """The room and whether ``user`` is a member; unknown_room if the user cannot see it."""
    member = Membership.objects.filter(room=OuterRef("pk"), user=user)
    room = Room.objects.filter(name=name).annotate(is_member=Exists(member)).first()
    is_member = room is not None and room.is_member
    if room is None or (room.private and not is_member):
        raise ServiceError(ErrorCode.UNKNOWN_ROOM, f"there is no room {name!r}")
    return room, is_member


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A message to store: to a room (``room``) or to a user (``to``); its ``text``, or
    the ``e2e`` object of an end-to-end message (docs/protocol.md section 4)."""

    text: str | None
    room: str | None = None
    to: str | None = None
    e2e: dict[str, Any] | None = None

    def body(self) -> str:
        """What is stored (encrypted at rest): the text, or the e2e object as JSON."""
        if self.e2e is not None:
            return json.dumps(self.e2e, separators=(",", ":"), ensure_ascii=False)
        return self.text or ""


PUBLIC_ROOM_E2E = "public rooms are not end-to-end encrypted: send text to {room!r}"
E2E_REQUIRED = "this conversation is end-to-end encrypted; update your client"


def refuse_plaintext(room: Room | None) -> None:
    """E2E_REQUIRED for plain text in a private message (``room`` None) or a private room.

    :func:`send_messages` calls it for every message without ``e2e`` (docs/protocol.md
    4.5), before anything is stored or broadcast: there is no plaintext fallback. Public
    rooms keep ``text``.
    """
    if room is None or room.private:
        raise ServiceError(ErrorCode.E2E_REQUIRED, E2E_REQUIRED)


def send_messages(user: User, outgoing: list[Outgoing]) -> list[dict[str, Any] | ServiceError]:
    """Store messages of one sender in order, in one transaction, and send them after commit.

    Each result is the ``msg_id`` and ``ts`` of the stored message, or the
    ServiceError that refused it (the others are stored all the same). One
    transaction and one INSERT for a whole batch: a sender with many messages in
    flight is served at the rate of the database's round trips, not once per message.
    Room messages go to the room's sessions; private messages to every session of
    the sender and of the recipient, and a recipient with no logged-in session gets
    them at the next login (stored as not delivered until then). ``text`` in a private
    message or a private room is refused with ``e2e_required`` (:func:`refuse_plaintext`).
    """
    results: list[dict[str, Any] | ServiceError | None] = [None] * len(outgoing)
    rooms: dict[str, Room | ServiceError] = {}
    recipients: dict[str, tuple[User, bool] | ServiceError] = {}
    cipher = BodyCipher()
    with transaction.atomic():
        new: list[tuple[int, Message, str, bool]] = []
        for index, item in enumerate(outgoing):
            fields: dict[str, Any]
            try:
                if item.room is not None:
                    room = _writable_room(user, item.room, rooms)
                    if item.e2e is not None and not room.private:
                        raise ServiceError(
                            ErrorCode.BAD_REQUEST, PUBLIC_ROOM_E2E.format(room=room.name)
                        )
                    if item.e2e is None:
                        refuse_plaintext(room)
                    fields = {"room": room}
                    queued = False
                else:
                    recipient, queued = _pm_recipient(user, item.to or "", recipients)
                    if item.e2e is None:
                        refuse_plaintext(None)
                    fields = {"recipient": recipient, "delivered": not queued}
            except ServiceError as exc:
                results[index] = exc
                continue
            body = item.body()
            message = Message(
                sender=user,
                body_encrypted=cipher.encrypt(body),
                created=timezone.now(),
                e2e=item.e2e is not None,
                **fields,
            )
            new.append((index, message, body, queued))
        Message.objects.bulk_create([message for _, message, _, _ in new])
        for index, message, text, queued in new:
            event = message_event(message, text)
            results[index] = {"msg_id": event["msg_id"], "ts": event["ts"]}
            if message.room_id is not None:
                name = message.room.name
                transaction.on_commit(functools.partial(delivery.room_message_sync, name, event))
            else:
                ids = [user.pk, message.recipient_id]
                transaction.on_commit(
                    functools.partial(delivery.private_message_sync, ids, event, queued=queued)
                )
    return results  # type: ignore[return-value]  # every None was replaced by a result above


def _writable_room(user: User, name: str, seen: dict[str, Room | ServiceError]) -> Room:
    if name not in seen:
        try:
            room, is_member = _visible_room(user, name)
            if not is_member:
                raise ServiceError(ErrorCode.FORBIDDEN, f"join {name!r} before writing to it")
            seen[name] = room
        except ServiceError as exc:
            seen[name] = exc
    found = seen[name]
    if isinstance(found, ServiceError):
        raise found
    return found


def _pm_recipient(
    user: User, to: str, seen: dict[str, tuple[User, bool] | ServiceError]
) -> tuple[User, bool]:
    """The recipient and whether the message is queued (they have no session now)."""
    if to not in seen:
        try:
            if to == user.username:
                raise ServiceError(
                    ErrorCode.BAD_REQUEST, "you cannot send a private message to yourself"
                )
            recipient = _active_user(to)
            seen[to] = (recipient, not presence.online([recipient.username]))
        except ServiceError as exc:
            seen[to] = exc
    found = seen[to]
    if isinstance(found, ServiceError):
        raise found
    return found


def _one(result: dict[str, Any] | ServiceError) -> dict[str, Any]:
    if isinstance(result, ServiceError):
        raise result
    return result


def send_room_message(user: User, room_name: str, text: str) -> dict[str, Any]:
    """Store a public room's message and send it to the room's sessions; returns ``msg_id``
    and ``ts`` (a private room refuses text: ``e2e_required``)."""
    return _one(send_messages(user, [Outgoing(text, room=room_name)])[0])


def send_private_message(user: User, to: str, e2e: dict[str, Any]) -> dict[str, Any]:
    """Store a private message (its ``e2e`` object, docs/protocol.md 4.5) and send it to both
    users' sessions (see :func:`send_messages`)."""
    return _one(send_messages(user, [Outgoing(None, to=to, e2e=e2e)])[0])


def take_queued_private_messages(user: User) -> list[dict[str, Any]]:
    """The user's undelivered private messages, oldest first, now marked delivered.

    Most logins have none: one plain read says so before the locking transaction (three
    round trips to the database) is begun. A message queued after that read was sent to
    the live sessions already (the session is registered before this runs).
    """
    if not Message.objects.filter(recipient=user, delivered=False).exists():
        return []
    with transaction.atomic():
        queued = list(
            Message.objects.select_for_update()
            .filter(recipient=user, delivered=False)
            .select_related("sender", "recipient")
            .order_by("pk")
        )
        Message.objects.filter(pk__in=[m.pk for m in queued]).update(delivered=True)
    cipher = BodyCipher() if queued else None
    return [message_event(m, cipher=cipher) for m in queued]


def mark_delivered(user_id: int, msg_id: int) -> None:
    """A queued private message reached a live session of its recipient after all."""
    Message.objects.filter(pk=msg_id, recipient_id=user_id, delivered=False).update(delivered=True)


def history(
    user: User,
    *,
    room: str | None = None,
    with_: str | None = None,
    before: int | None = None,
    limit: int = HISTORY_DEFAULT_LIMIT,
    ref: str | None = None,
) -> dict[str, Any]:
    """The ``history`` answer: the ``limit`` newest messages below ``before``, oldest first.

    Shortened from the oldest end to fit one record (``has_more`` then stays
    true, and the client pages on with ``before`` = the first ``msg_id``).
    """
    if (room is None) == (with_ is None):
        raise ServiceError(ErrorCode.BAD_REQUEST, "history needs exactly one of 'room' and 'with'")
    if room is not None:
        found, is_member = _visible_room(user, room)
        if not is_member:
            raise ServiceError(ErrorCode.UNKNOWN_ROOM, f"join {room!r} to read its history")
        messages = Message.objects.filter(room=found)
        result = answer("history", ref, room=room)
    else:
        if with_ == user.username:
            raise ServiceError(ErrorCode.BAD_REQUEST, "there is no conversation with yourself")
        other = User.objects.filter(username=with_).first()
        if other is None:
            raise ServiceError(ErrorCode.UNKNOWN_USER, f"there is no user {with_!r}")
        messages = Message.objects.filter(
            Q(sender=user, recipient=other) | Q(sender=other, recipient=user)
        )
        result = answer("history", ref, **{"with": with_})
    if before is not None:
        messages = messages.filter(pk__lt=before)
    page = list(messages.select_related("room", "sender", "recipient").order_by("-pk")[: limit + 1])
    has_more = len(page) > limit
    cipher = BodyCipher() if page else None
    items = [_message_fields(m, cipher=cipher) for m in reversed(page[:limit])]
    result["messages"] = items
    result["has_more"] = has_more
    return fit_history(result)


def fit_history(answer: dict[str, Any], budget: int = MAX_PLAINTEXT_SIZE) -> dict[str, Any]:
    """Drop the oldest messages until the answer fits one record; has_more then true."""
    items = answer["messages"]
    if encoded_size(answer) <= budget:
        return answer
    # Sizes add up: the list's commas aside, each item costs its own encoding.
    answer = {**answer, "messages": [], "has_more": True}
    room_left = budget - encoded_size(answer)
    kept: list[dict[str, Any]] = []
    for item in reversed(items):
        cost = encoded_size(item) - 1 + (1 if kept else 0)  # minus the kind byte, plus a comma
        if cost > room_left:
            break
        kept.append(item)
        room_left -= cost
    answer["messages"] = kept[::-1]
    return answer


# --- rooms -----------------------------------------------------------------------------------


def _push_rooms(user_ids: Iterable[int], origin: str | None) -> None:
    ids = list(dict.fromkeys(user_ids))
    if ids:
        transaction.on_commit(lambda: delivery.rooms_changed_sync(ids, exclude=origin))


def join_room(user: User, name: str, origin: str | None = None) -> list[dict[str, Any]]:
    """Join a public room; the user's other sessions get ``rooms``."""
    with transaction.atomic():
        room, is_member = _visible_room(user, name)
        if not is_member:
            Membership.objects.create(room=room, user=user)
            _push_rooms([user.pk], origin)
    return rooms_for(user)


def leave_room(user: User, name: str, origin: str | None = None) -> list[dict[str, Any]]:
    """Leave a room (not lobby). Leaving a room one is not in changes nothing."""
    if name == LOBBY:
        raise ServiceError(ErrorCode.FORBIDDEN, "everyone stays in lobby")
    with transaction.atomic():
        room, is_member = _visible_room(user, name)
        if is_member:
            Membership.objects.filter(room=room, user=user).delete()
            others = (
                list(Membership.objects.filter(room=room).values_list("user_id", flat=True))
                if room.private
                else []
            )
            _push_rooms([user.pk, *others], origin)
    return rooms_for(user)


def create_room(
    user: User,
    name: str,
    *,
    private: bool = False,
    members: Iterable[str] = (),
    origin: str | None = None,
) -> list[dict[str, Any]]:
    """Create a room owned by ``user`` with ``user`` and ``members`` in it."""
    names = [m for m in dict.fromkeys(members) if m != user.username]
    with transaction.atomic():
        if Room.objects.filter(name=name).exists():
            raise ServiceError(ErrorCode.ROOM_EXISTS, f"the room name {name!r} is taken")
        found = {u.username: u for u in User.objects.filter(username__in=names, is_active=True)}
        missing = [m for m in names if m not in found]
        if missing:
            raise ServiceError(ErrorCode.UNKNOWN_USER, f"there is no user {missing[0]!r}")
        room = Room.objects.create(name=name, private=private, owner=user)
        everyone = [user, *found.values()]
        Membership.objects.bulk_create([Membership(room=room, user=u) for u in everyone])
        room_lists.changed()  # bulk_create sends no signal
        _push_rooms([u.pk for u in everyone], origin)
    return rooms_for(user)


def invite(user: User, name: str, username: str, origin: str | None = None) -> list[dict[str, Any]]:
    """Add ``username`` to a private room that ``user`` is a member of."""
    with transaction.atomic():
        room, is_member = _visible_room(user, name)
        if not room.private:
            raise ServiceError(
                ErrorCode.BAD_REQUEST,
                f"{name!r} is public: anyone can join it without an invitation",
            )
        if not is_member:
            raise ServiceError(ErrorCode.UNKNOWN_ROOM, f"there is no room {name!r}")
        guest = _active_user(username)
        if not Membership.objects.filter(room=room, user=guest).exists():
            Membership.objects.create(room=room, user=guest)
            _push_rooms([guest.pk], origin)
    return rooms_for(user)


def rooms_changed_for(user_ids: Iterable[int]) -> None:
    """After commit: these users' sessions re-read their rooms (admin edits of rooms, members)."""
    _push_rooms(user_ids, None)


def ensure_lobby_membership(user: User) -> None:
    """Every user is a member of lobby (called when an account is created or reactivated)."""
    lobby, _ = Room.objects.get_or_create(name=LOBBY, defaults={"private": False})
    Membership.objects.get_or_create(room=lobby, user=user)


# --- accounts, as the chat sees them ---------------------------------------------------------


def error_code(refusal: ServiceError) -> ErrorCode:
    """The ``error`` code of a service's refusal: the services raise the protocol's codes
    (``invalid_credentials``, ``invalid_password``, ``invalid_otp``, ``unknown_device``,
    ``bad_request``, ``rate_limited``...); any other is a server bug, answered ``internal``."""
    try:
        return ErrorCode(refusal.code)
    except ValueError:
        log.error("a service refused with %r, which is no protocol error code", refusal.code)
        return ErrorCode.INTERNAL


def devices_answer(user: User, current: str | None, ref: str | None) -> dict[str, Any]:
    """The ``devices`` answer (PROTOCOL.md 3.4): ``current`` is the asking session's device;
    ``online``: a logged-in session of that device on any process (the cache, see
    :func:`chat.presence.online_devices`)."""
    online = presence.online_devices(user.username)
    listed = [
        {
            "device": device.id,
            "name": device.name,
            "created": format_ts(device.created),
            "last_seen": format_ts(device.last_seen),
            "current": device.id == current,
            "online": device.id in online,
        }
        for device in devices.devices_of(user)
    ]
    return answer("devices", ref, devices=listed)


def announce_account(username: str, *, active: bool) -> None:
    """After commit: every process learns that the account became active or stopped being
    active (its sessions then get ``added`` or ``removed`` in their next ``presence``)."""
    names = [username]
    if active:
        transaction.on_commit(lambda: delivery.accounts_changed_sync(added=names))
    else:
        transaction.on_commit(lambda: delivery.accounts_changed_sync(removed=names))


def end_sessions_of(
    user_id: int,
    reason: str,
    *,
    devices: Sequence[str] | None = None,
    except_session: str | None = None,
) -> None:
    """After commit (at once outside a transaction): the user's sessions get ``session_ended``
    with ``reason`` (``deactivated``, ``ended_by_admin``, ``revoked``, ``password_changed``),
    then close 4003. ``devices``: only the sessions logged in as one of those devices (None:
    every session); ``except_session``: the channel name of a session that stays."""
    narrowed: dict[str, Any] = {}
    if devices is not None:
        narrowed["devices"] = list(devices)
    if except_session is not None:
        narrowed["except_session"] = except_session
    transaction.on_commit(lambda: delivery.end_sessions_sync(user_id, reason, **narrowed))
