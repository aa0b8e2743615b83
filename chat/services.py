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
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Prefetch, Q
from django.utils import timezone

from accounts.models import User
from chatproto.codes import ErrorCode
from chatproto.framing import encoded_size
from chatproto.limits import HISTORY_DEFAULT_LIMIT, MAX_PLAINTEXT_SIZE

from . import delivery, presence
from .models import LOBBY, Membership, Message, Room
from .storage import decrypt_body, encrypt_body


class ServiceError(Exception):
    """A request the protocol answers with ``error``: ``code`` and a message for the user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- formatting ------------------------------------------------------------------------------


def format_ts(when: datetime.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC (PROTOCOL.md 3.0)."""
    utc = when.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def room_object(room: Room) -> dict[str, Any]:
    """``{name, private, owner, members}``; needs ``room.members`` prefetched for speed."""
    return {
        "name": room.name,
        "private": room.private,
        "owner": room.owner.username if room.owner_id else None,
        "members": sorted(member.username for member in room.members.all()),
    }


def _message_fields(message: Message, text: str | None = None) -> dict[str, Any]:
    """The fields of ``message`` or ``private`` without ``type`` (as ``history`` holds them)."""
    body = decrypt_body(message.body_encrypted) if text is None else text
    if message.room_id is not None:
        return {
            "msg_id": message.pk,
            "room": message.room.name,
            "from": message.sender.username,
            "text": body,
            "ts": format_ts(message.created),
        }
    return {
        "msg_id": message.pk,
        "from": message.sender.username,
        "to": message.recipient.username,
        "text": body,
        "ts": format_ts(message.created),
    }


def message_event(message: Message, text: str | None = None) -> dict[str, Any]:
    """The ``message`` or ``private`` push for a stored message."""
    kind = "message" if message.room_id is not None else "private"
    return {"type": kind, **_message_fields(message, text)}


# --- queries ---------------------------------------------------------------------------------


def _active_members() -> Prefetch:
    return Prefetch("members", queryset=User.objects.only("username").order_by("username"))


def visible_rooms(user: User) -> list[Room]:
    """Every public room and every private room the user is a member of, by name."""
    member_of = Membership.objects.filter(user=user).values("room_id")
    return list(
        Room.objects.filter(Q(private=False) | Q(pk__in=member_of))
        .select_related("owner")
        .prefetch_related(_active_members())
        .order_by("name")
    )


def rooms_for(user: User) -> list[dict[str, Any]]:
    """The ``rooms`` list of the protocol for ``user``."""
    return [room_object(room) for room in visible_rooms(user)]


def member_room_names(user_id: int) -> set[str]:
    """The rooms whose messages the user's sessions receive."""
    return set(Membership.objects.filter(user_id=user_id).values_list("room__name", flat=True))


def active_usernames() -> list[str]:
    return sorted(User.objects.filter(is_active=True).values_list("username", flat=True))


def users_snapshot() -> dict[str, list[str]]:
    """``online`` and ``all`` of a ``users`` message; online is always within all."""
    everyone = active_usernames()
    return {"online": sorted(presence.online(everyone)), "all": everyone}


def users_message(ref: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "users", **users_snapshot()}
    if ref is not None:
        message["ref"] = ref
    return message


def is_active(user_id: int) -> bool:
    return User.objects.filter(pk=user_id, is_active=True).exists()


def _active_user(username: str) -> User:
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ServiceError(ErrorCode.UNKNOWN_USER, f"there is no user {username!r}")
    return user


def _visible_room(user: User, name: str) -> tuple[Room, bool]:
    """The room and whether ``user`` is a member; unknown_room if the user cannot see it."""
    room = Room.objects.filter(name=name).first()
    is_member = room is not None and Membership.objects.filter(room=room, user=user).exists()
    if room is None or (room.private and not is_member):
        raise ServiceError(ErrorCode.UNKNOWN_ROOM, f"there is no room {name!r}")
    return room, is_member


# --- messages --------------------------------------------------------------------------------


def send_room_message(user: User, room_name: str, text: str) -> dict[str, Any]:
    """Store a room message and send it to the room's sessions; returns ``msg_id`` and ``ts``."""
    with transaction.atomic():
        room, is_member = _visible_room(user, room_name)
        if not is_member:
            raise ServiceError(ErrorCode.FORBIDDEN, f"join {room_name!r} before writing to it")
        message = Message.objects.create(
            room=room, sender=user, body_encrypted=encrypt_body(text), created=timezone.now()
        )
        event = message_event(message, text)
        transaction.on_commit(lambda: delivery.room_message_sync(room.name, event))
    return {"msg_id": event["msg_id"], "ts": event["ts"]}


def send_private_message(user: User, to: str, text: str) -> dict[str, Any]:
    """Store a private message and send it to both users' sessions.

    A recipient with no logged-in session gets it at the next login; it is
    stored as not delivered until then.
    """
    if to == user.username:
        raise ServiceError(ErrorCode.BAD_REQUEST, "you cannot send a private message to yourself")
    with transaction.atomic():
        recipient = _active_user(to)
        queued = not presence.online([recipient.username])
        message = Message.objects.create(
            sender=user,
            recipient=recipient,
            body_encrypted=encrypt_body(text),
            created=timezone.now(),
            delivered=not queued,
        )
        event = message_event(message, text)
        ids = [user.pk, recipient.pk]
        transaction.on_commit(lambda: delivery.private_message_sync(ids, event, queued=queued))
    return {"msg_id": event["msg_id"], "ts": event["ts"]}


def take_queued_private_messages(user: User) -> list[dict[str, Any]]:
    """The user's undelivered private messages, oldest first, now marked delivered."""
    with transaction.atomic():
        queued = list(
            Message.objects.select_for_update()
            .filter(recipient=user, delivered=False)
            .select_related("sender", "recipient")
            .order_by("pk")
        )
        Message.objects.filter(pk__in=[m.pk for m in queued]).update(delivered=True)
    return [message_event(m) for m in queued]


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
        answer: dict[str, Any] = {"type": "history", "room": room}
    else:
        if with_ == user.username:
            raise ServiceError(ErrorCode.BAD_REQUEST, "there is no conversation with yourself")
        other = User.objects.filter(username=with_).first()
        if other is None:
            raise ServiceError(ErrorCode.UNKNOWN_USER, f"there is no user {with_!r}")
        messages = Message.objects.filter(
            Q(sender=user, recipient=other) | Q(sender=other, recipient=user)
        )
        answer = {"type": "history", "with": with_}
    if ref is not None:
        answer["ref"] = ref
    if before is not None:
        messages = messages.filter(pk__lt=before)
    page = list(messages.select_related("room", "sender", "recipient").order_by("-pk")[: limit + 1])
    has_more = len(page) > limit
    items = [_message_fields(m) for m in reversed(page[:limit])]
    answer["messages"] = items
    answer["has_more"] = has_more
    return fit_history(answer)


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


def announce_users_changed() -> None:
    """After commit: every logged-in session gets the new ``users``."""
    transaction.on_commit(lambda: delivery.users_changed_sync(users_message()))


def end_sessions_of(user_id: int, reason: str) -> None:
    """After commit (at once outside a transaction): every session of the user gets
    ``session_ended`` with ``reason`` (``deactivated`` or ``ended_by_admin``), then close 4003."""
    transaction.on_commit(lambda: delivery.end_sessions_sync(user_id, reason))
