"""The key directory and the to-device relay of end-to-end encryption (docs/protocol.md 4).

As in :mod:`chat.services`: check, write inside a transaction, and send only after
the commit. The server stores what devices publish (device keys, one-time keys,
a fallback key, the user key) and hands it out unchanged; it checks the
signatures it can (a device's own, and a user signature against the published
user key), so that a client's mistake is caught early. It cannot make a key
trustworthy: clients check every signature themselves. It never holds a
private key and cannot read a to-device body (Olm ciphertext) or an ``e2e``
message.

Who hears of a device-list change (``devices_changed``): the user and their
**contacts**, the members of their private rooms and the users they exchanged
private messages with (:func:`contacts_of`). Public rooms are not end to end, so
lobby's members are not contacts: a change costs a few indexed queries over the
user's own rooms and messages, never work for every account.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q

from accounts.errors import ServiceError
from accounts.models import Device, User
from chatproto import e2e
from chatproto.codes import ErrorCode
from chatproto.e2e import MAX_ONE_TIME_KEYS as MAX_ONE_TIME_KEYS_STORED
from chatproto.e2e import MAX_QUEUED_FROM_ONE_USER, MAX_QUEUED_TO_DEVICE
from chatproto.wording import try_again

from . import delivery
from .limits import LimitCounters
from .models import (
    DeletedAccountChange,
    DeviceKeys,
    DeviceListChange,
    DeviceListClock,
    Membership,
    Message,
    OneTimeKey,
    ToDeviceMessage,
    UserKey,
)
from .storage import BodyCipher

log = logging.getLogger("chat.e2e")
QUEUE_FULL_RETRY_SECONDS = 300
# One-time keys one user may claim, counted per key asked for (a token bucket per server
# process, as chat/limits.py counts messages): bursts of 2,000, enough to share a room key
# with a 1,000-device room twice over, then 2,000 an hour. Unlimited, one user could take
# every device's one-time keys and leave everyone the fallback key.
KEYS_CLAIM_RATE = (2_000, 3_600)
# Queued to-device messages read per query when a device logs in: a full queue (10,000
# messages of up to 16 KiB) read at once would hold up to 160 MiB for one login.
TO_DEVICE_PAGE = 200

DEVICE_REQUIRED = "log in with a remembered device to use encrypted conversations"


def require_device(device: str | None) -> str:
    """The session's device; ``device_required`` for a session logged in without one."""
    if device is None:
        raise ServiceError(ErrorCode.DEVICE_REQUIRED, DEVICE_REQUIRED)
    return device


def check_e2e_device(sealed: dict[str, Any] | None, device: str | None) -> None:
    """An ``e2e`` message names the sending session's device (docs/protocol.md 4.5)."""
    if sealed is not None and sealed["device"] != require_device(device):
        raise _bad("e2e.device must be the device this session logged in as")


# --- signatures (the payloads and verifiers are chatproto.e2e's, shared with the clients) ----


def _bad(message: str) -> ServiceError:
    return ServiceError(ErrorCode.BAD_REQUEST, message)


def _check_device_keys(user: User, device: str, keys: dict[str, Any]) -> None:
    """The object is this session's device's, signed by itself, and, if it carries a user
    signature, signed by the user's current user key (none published: not valid)."""
    if keys["user"] != user.username or keys["device"] != device:
        raise _bad("device_keys must name your own user and the device you logged in as")
    if not e2e.device_signature_valid(keys):
        raise _bad("the device signature of device_keys does not verify with its ed25519 key")
    if "user" in keys["signatures"]:
        published = UserKey.objects.filter(user=user).values_list("key", flat=True).first()
        if published is None or not e2e.user_signature_valid(keys, published["ed25519"]):
            raise _bad(
                "the user signature of device_keys does not verify with your current user "
                "key: fetch it with keys_query and sign again"
            )


def _check_one_time_key(user: User, device: str, ed25519: str, key: dict[str, Any]) -> None:
    if not e2e.one_time_key_valid(user.username, device, key, ed25519):
        raise _bad(f"the signature of one-time key {key['key_id']!r} does not verify")


# --- the device-list change log --------------------------------------------------------------


def contacts_of(user_id: int) -> set[int]:
    """The users who share an end-to-end conversation with ``user_id``: members of the
    user's private rooms, and the users they exchanged private messages with."""
    private_rooms = Membership.objects.filter(user_id=user_id, room__private=True).values("room_id")
    ids = set(
        Membership.objects.filter(room_id__in=private_rooms).values_list("user_id", flat=True)
    )
    ids.update(
        Message.objects.filter(sender_id=user_id, recipient__isnull=False)
        .values_list("recipient_id", flat=True)
        .distinct()
    )
    ids.update(
        Message.objects.filter(recipient_id=user_id).values_list("sender_id", flat=True).distinct()
    )
    ids.discard(user_id)
    return ids


def _next_version() -> int:
    """The next device-list version; the clock's row stays locked until the commit."""
    DeviceListClock.objects.get_or_create(pk=1)
    DeviceListClock.objects.filter(pk=1).update(version=F("version") + 1)
    return DeviceListClock.objects.values_list("version", flat=True).get(pk=1)


def record_device_list_change(user_id: int, username: str, *, deleting: bool = False) -> int:
    """Log that ``user_id``'s devices or user key changed; after commit, ``devices_changed``
    to the sessions of the user and their contacts. Inside the caller's transaction.
    ``deleting``: the account is going, and its log row, rooms and messages with it: the
    change is kept for each of its contacts instead (:class:`DeletedAccountChange`), so
    that a contact offline now still finds it in ``device_list_changes``."""
    version = _next_version()
    contacts = sorted(contacts_of(user_id))
    if deleting:
        DeletedAccountChange.objects.bulk_create(
            [
                DeletedAccountChange(contact_id=c, username=username, version=version)
                for c in contacts
            ],
            update_conflicts=True,  # the name was deleted before, as another account
            unique_fields=["contact", "username"],
            update_fields=["version"],
        )
    else:
        DeviceListChange.objects.update_or_create(user_id=user_id, defaults={"version": version})
    message = {"type": "devices_changed", "users": [username], "version": version}
    audience = [user_id, *contacts]
    transaction.on_commit(functools.partial(delivery.devices_changed_sync, audience, message))
    return version


def device_removed(user_id: int, device: str) -> None:
    """A device is being deleted (revoked, logged out, the admin): its keys and queue go
    with it (a cascade); if it had keys, its user's contacts hear of it."""
    if not DeviceKeys.objects.filter(device_id=device).exists():
        return  # in no one's device list
    username = User.objects.filter(pk=user_id).values_list("username", flat=True).first()
    if username is not None:
        record_device_list_change(user_id, username)


def account_changed(user_id: int, username: str, *, deleting: bool = False) -> None:
    """An account with keys was deactivated, reactivated or is being deleted: a change of
    its key directory entry (``keys`` leaves an inactive user out), which its contacts hear
    of. Called before a deletion's cascade, while its rooms and messages still say who."""
    if (
        DeviceKeys.objects.filter(user_id=user_id).exists()
        or UserKey.objects.filter(user_id=user_id).exists()
    ):
        record_device_list_change(user_id, username, deleting=deleting)


def device_list_changes(user: User, since: int) -> dict[str, Any]:
    """``version`` (the current one) and the ``users`` among the user and their contacts
    whose devices or user key changed after version ``since``, and the former contacts
    whose accounts were deleted after it."""
    version = DeviceListClock.objects.filter(pk=1).values_list("version", flat=True).first() or 0
    audience = [user.pk, *contacts_of(user.pk)]
    users = set(
        DeviceListChange.objects.filter(user_id__in=audience, version__gt=since).values_list(
            "user__username", flat=True
        )
    )
    users.update(
        DeletedAccountChange.objects.filter(contact=user, version__gt=since).values_list(
            "username", flat=True
        )
    )
    return {"version": version, "users": sorted(users)}


# --- uploads ---------------------------------------------------------------------------------


def upload_keys(
    user: User,
    device: str,
    *,
    device_keys: dict[str, Any] | None = None,
    one_time_keys: Sequence[dict[str, Any]] = (),
    fallback_key: dict[str, Any] | None = None,
) -> int:
    """Store the device's keys; the count of its one-time keys left on the server.

    ``device_keys`` first (later uploads may omit them); a device's identity keys
    never change (``conflict``), its signatures may (a user signature added after
    approval: a device-list change). One-time keys already stored (same ``key_id``)
    are kept as they were, so a retried upload does no harm.
    """
    with transaction.atomic():
        if not Device.objects.filter(pk=device, user=user).exists():
            raise ServiceError(ErrorCode.UNKNOWN_DEVICE, "this device was revoked: log in again")
        stored = DeviceKeys.objects.select_for_update().filter(device_id=device).first()
        if device_keys is not None:
            _check_device_keys(user, device, device_keys)
            if stored is None:
                stored = DeviceKeys.objects.create(device_id=device, user=user, keys=device_keys)
                record_device_list_change(user.pk, user.username)
            elif stored.keys != device_keys:
                identity = ("curve25519", "ed25519")
                if any(stored.keys[name] != device_keys[name] for name in identity):
                    raise ServiceError(
                        ErrorCode.CONFLICT,
                        "a device's identity keys never change: log out and log in as a new "
                        "device to use new keys",
                    )
                before, after = (e2e.signature_of(k, "user") for k in (stored.keys, device_keys))
                announce = before != after
                stored.keys = device_keys
                stored.save(update_fields=["keys", "updated"])
                if announce:  # what contacts act on; other fields change nothing for them
                    record_device_list_change(user.pk, user.username)
        if stored is None:
            raise _bad("upload this device's device_keys first")
        ed25519 = stored.keys["ed25519"]
        for key in (*one_time_keys, *([fallback_key] if fallback_key else [])):
            _check_one_time_key(user, device, ed25519, key)
        new_keys = _new_one_time_keys(stored, one_time_keys)
        count = OneTimeKey.objects.filter(device=stored).count()
        if count + len(new_keys) > MAX_ONE_TIME_KEYS_STORED:
            raise _bad(
                f"the server keeps at most {MAX_ONE_TIME_KEYS_STORED} unclaimed one-time keys "
                f"per device and has {count} of yours: upload fewer"
            )
        if fallback_key is not None:
            stored.fallback_key = fallback_key
            stored.save(update_fields=["fallback_key", "updated"])
        OneTimeKey.objects.bulk_create(
            [OneTimeKey(device=stored, key_id=k["key_id"], key=k) for k in new_keys],
            ignore_conflicts=True,  # a racing retry of the same upload stored it already
        )
        return count + len(new_keys)


def _new_one_time_keys(
    stored: DeviceKeys, uploaded: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The uploaded one-time keys not stored yet. A ``key_id`` stored (or uploaded twice)
    with the same key is a retried upload and ignored; with another key, ``conflict``."""
    known = dict(
        OneTimeKey.objects.filter(
            device=stored, key_id__in=[key["key_id"] for key in uploaded]
        ).values_list("key_id", "key")
    )
    new: list[dict[str, Any]] = []
    for key in uploaded:
        previous = known.get(key["key_id"])
        if previous is not None:
            if previous["key"] != key["key"]:
                raise ServiceError(
                    ErrorCode.CONFLICT,
                    f"one-time key id {key['key_id']!r} is taken by another key: "
                    "give each new key a new id",
                )
            continue
        known[key["key_id"]] = key
        new.append(key)
    return new


def publish_user_key(user: User, device: str, user_key: dict[str, Any], *, reset: bool) -> None:
    """Publish the user's user key, signed by this device.

    The first key has version 1, each ``reset`` (a new identity, which every contact
    sees) the current version plus one. Without ``reset`` an existing key is kept
    (``conflict``: two devices raced to publish the first key). A reset removes the
    user signature of every device of the user: they are unsigned for the new key
    until re-signed with it (docs/protocol.md 4.2).
    """
    if user_key["user"] != user.username:
        raise _bad("user_key must name your own user")
    with transaction.atomic():
        keys = DeviceKeys.objects.filter(device_id=device, user=user).first()
        if keys is None:
            raise _bad("upload this device's device_keys before publishing a user key")
        if not e2e.user_key_signature_valid(user_key, keys.keys["ed25519"]):
            raise _bad("the device signature of user_key does not verify with this device's key")
        existing = UserKey.objects.select_for_update().filter(user=user).first()
        if existing is not None and not reset:
            raise ServiceError(
                ErrorCode.CONFLICT,
                "you have a user key already: approve this device from one of your other "
                "devices, or reset your identity",
            )
        expected = 1 if existing is None else existing.version + 1
        if user_key["version"] != expected:
            raise _bad(f"the next user key version is {expected}: sign that one")
        try:
            with transaction.atomic():
                UserKey.objects.update_or_create(
                    user=user, defaults={"key": user_key, "version": expected}
                )
        except IntegrityError:  # another device published the first key meanwhile
            raise ServiceError(
                ErrorCode.CONFLICT, "another of your devices published a user key just now"
            ) from None
        if reset:
            _drop_user_signatures(user)
        record_device_list_change(user.pk, user.username)


def _drop_user_signatures(user: User) -> None:
    """Remove ``signatures.user`` from the stored device keys of ``user``'s devices."""
    rows = list(DeviceKeys.objects.select_for_update().filter(user=user))
    changed = [row for row in rows if "user" in row.keys.get("signatures", {})]
    for row in changed:
        row.keys = {**row.keys, "signatures": {"device": row.keys["signatures"]["device"]}}
    DeviceKeys.objects.bulk_update(changed, ["keys"])


# --- queries and claims ----------------------------------------------------------------------


def query_keys(usernames: Iterable[str]) -> dict[str, Any]:
    """``{name: {"user_key", "devices", "version"}}`` for the active users among ``usernames``
    (unknown ones are left out); four queries whatever the count."""
    users = dict(
        User.objects.filter(username__in=list(usernames), is_active=True).values_list(
            "pk", "username"
        )
    )
    answer: dict[str, Any] = {
        name: {"user_key": None, "devices": [], "version": 0} for name in users.values()
    }
    for user_id, key in UserKey.objects.filter(user_id__in=users).values_list("user_id", "key"):
        answer[users[user_id]]["user_key"] = key
    rows = DeviceKeys.objects.filter(user_id__in=users).order_by("device_id")
    for user_id, keys in rows.values_list("user_id", "keys"):
        answer[users[user_id]]["devices"].append(keys)
    changes = DeviceListChange.objects.filter(user_id__in=users)
    for user_id, version in changes.values_list("user_id", "version"):
        answer[users[user_id]]["version"] = version
    return answer


def admit_claim(counters: LimitCounters, user_id: int, count: int, now: float) -> None:
    """Count a ``keys_claim`` of ``count`` devices against the user's :data:`KEYS_CLAIM_RATE`
    bucket: all ``count`` keys, or (``rate_limited``, with the seconds until there are
    enough) none, so that a refused claim costs nothing. ``now``: ``time.monotonic()``.

    No I/O and no await: call it on the event loop, where no other claim runs meanwhile.
    """
    wait = counters.bucket("keys_claim", KEYS_CLAIM_RATE).take(user_id, now, cost=count)
    if wait is not None:
        raise ServiceError(
            ErrorCode.RATE_LIMITED,
            f"You are claiming keys too fast; {try_again(wait)}",
            retry_after=wait,
        )


def claim_keys(targets: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """One key per ``(user, device)``: a one-time key, each handed out once, or else the
    device's fallback key (``fallback`` true). Devices with neither are left out.

    Each one-time key is taken by one DELETE of its own (no surrounding transaction):
    when two claims race for the same key, the database lets one delete it and the
    other finds no row and tries the next key, on SQLite and PostgreSQL alike.
    """
    wanted = list(targets)
    found = {
        (username, device): (pk, fallback)
        for pk, username, device, fallback in DeviceKeys.objects.filter(
            device_id__in=[device for _, device in wanted],
            user__username__in=[user for user, _ in wanted],
            user__is_active=True,
        ).values_list("pk", "user__username", "device_id", "fallback_key")
    }
    claimed = []
    for username, device in wanted:
        if (username, device) not in found:
            continue
        pk, fallback = found[(username, device)]
        key, is_fallback = _take_one_time_key(pk), False
        if key is None:
            key, is_fallback = fallback, True
        if key is not None:
            claimed.append(
                {
                    "user": username,
                    "device": device,
                    "key_id": key["key_id"],
                    "key": key["key"],
                    "signature": key["signature"],
                    "fallback": is_fallback,
                }
            )
    return claimed


def _take_one_time_key(device: str) -> dict[str, Any] | None:
    """The device's oldest one-time key, deleted; None when none is left.

    A key another claim deleted between our read and our DELETE is not ours: we
    try the next one (each round either takes a key or sees one go elsewhere).
    """
    while (candidate := oldest_one_time_key(device)) is not None:
        pk, key = candidate
        deleted, _ = OneTimeKey.objects.filter(pk=pk).delete()
        if deleted:
            return key
    return None


def oldest_one_time_key(device: str) -> tuple[int, dict[str, Any]] | None:
    """The pk and object of the device's oldest one-time key, if any (not yet taken)."""
    return (
        OneTimeKey.objects.filter(device_id=device).order_by("pk").values_list("pk", "key").first()
    )


# --- the to-device relay ---------------------------------------------------------------------


def to_device_push(
    seq: int, sender: str, sender_device: str, body: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "to_device",
        "seq": seq,
        "from": sender,
        "from_device": sender_device,
        "body": body,
    }


def send_to_device(
    user: User, device: str, messages: Sequence[tuple[str, str, dict[str, Any]]]
) -> None:
    """Queue each ``(user, device, body)`` for its target device, numbered by that device's
    ``seq``, and after commit push it to the device's logged-in sessions. All or nothing:
    a target that is not an active user (``unknown_user``) or not one of their devices
    with keys (``unknown_device``) refuses the whole request, so the sender refreshes
    that user's keys and sends again. A message stays queued until its device
    acknowledges it (``to_device_ack``); a full queue refuses (:func:`_check_queue_room`).
    """
    cipher = BodyCipher()
    with transaction.atomic():
        targets = _to_device_targets(messages)
        queued: list[ToDeviceMessage] = []
        pushes: dict[int, list[dict[str, Any]]] = {}
        for username, target, body in messages:
            row = targets[(username, target)]
            row.to_device_seq += 1
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            queued.append(
                ToDeviceMessage(
                    device=row,
                    seq=row.to_device_seq,
                    sender=user,
                    sender_device=device,
                    body_encrypted=cipher.encrypt(text),
                )
            )
            push = to_device_push(row.to_device_seq, user.username, device, body)
            pushes.setdefault(row.user_id, []).append({"device": target, "message": push})
        _check_queue_room(user, queued)
        DeviceKeys.objects.bulk_update(targets.values(), ["to_device_seq"])
        ToDeviceMessage.objects.bulk_create(queued)
        for user_id, items in pushes.items():
            transaction.on_commit(functools.partial(delivery.to_device_sync, user_id, items))


def _to_device_targets(
    messages: Sequence[tuple[str, str, dict[str, Any]]],
) -> dict[tuple[str, str], DeviceKeys]:
    """The device keys rows of every target, locked; the first unknown target refuses all."""
    names = {name for name, _, _ in messages}
    active = set(
        User.objects.filter(username__in=names, is_active=True).values_list("username", flat=True)
    )
    targets = {
        (row.user.username, row.device_id): row
        for row in DeviceKeys.objects.select_for_update()
        .filter(device_id__in=[target for _, target, _ in messages], user__username__in=active)
        .select_related("user")
        .order_by("pk")
    }
    for username, target, _ in messages:
        if username not in active:
            raise ServiceError(ErrorCode.UNKNOWN_USER, f"there is no user {username!r}")
        if (username, target) not in targets:
            raise ServiceError(
                ErrorCode.UNKNOWN_DEVICE,
                f"{username!r} has no device {target!r} with keys: query their keys again",
            )
    return targets


def _check_queue_room(sender: User, queued: Sequence[ToDeviceMessage]) -> None:
    """Refuse the request (nothing is queued) if a target device's queue would pass
    :data:`MAX_QUEUED_TO_DEVICE`, or hold more than :data:`MAX_QUEUED_FROM_ONE_USER` from
    this sender. Nothing queued is ever dropped to make room: dropping the oldest would let
    anyone push out the room keys a device has not fetched yet."""
    adding: dict[str, int] = {}
    for message in queued:
        adding[message.device_id] = adding.get(message.device_id, 0) + 1
    held = {
        device_id: (total, mine)
        for device_id, total, mine in ToDeviceMessage.objects.filter(device_id__in=list(adding))
        .values("device_id")
        .annotate(total=Count("pk"), mine=Count("pk", filter=Q(sender=sender)))
        .values_list("device_id", "total", "mine")
    }  # one query for both counts of every target
    for device_id, count in adding.items():
        total, mine = held.get(device_id, (0, 0))
        if total + count > MAX_QUEUED_TO_DEVICE or mine + count > MAX_QUEUED_FROM_ONE_USER:
            log.warning("to-device messages for device %s refused: its queue is full", device_id)
            raise ServiceError(
                ErrorCode.RATE_LIMITED,
                "a device you are sending to has too many messages waiting for it; "
                "try again once it has been online",
                retry_after=QUEUE_FULL_RETRY_SECONDS,
            )


def queued_to_device(device: str, after: int, limit: int) -> list[dict[str, Any]]:
    """The device's queued to-device messages with ``seq`` above ``after`` as pushes, in
    ``seq`` order, at most ``limit`` of them (one page: see :data:`TO_DEVICE_PAGE`). They
    stay queued until acknowledged. One query, no transaction."""
    rows = list(
        ToDeviceMessage.objects.filter(device_id=device, seq__gt=after)
        .select_related("sender")
        .order_by("seq")[:limit]
    )
    if not rows:
        return []
    cipher = BodyCipher()
    return [
        to_device_push(
            row.seq,
            row.sender.username,
            row.sender_device,
            json.loads(cipher.decrypt(row.body_encrypted)),
        )
        for row in rows
    ]


def acknowledge_to_device(device: str, upto: int) -> None:
    """The device has the messages up to ``seq`` ``upto``: they leave its queue."""
    ToDeviceMessage.objects.filter(device_id=device, seq__lte=upto).delete()
