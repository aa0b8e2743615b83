"""The Olm plaintexts that carry Megolm keys: ``room_key``, ``room_key_request`` and
``forwarded_room_key`` (section 4.4's fields; :class:`~.olm.OlmSessions` adds and checks
the addressing every Olm plaintext carries: ``sender``, ``recipient`` and their devices).

A room key goes only to a device that its user's current user key signed, and a receiver
keeps one only if it is addressed to this very device and comes (proven by Olm) from a
device that its user's key signed, whose ed25519 key the payload names. So a device that
the server slips into someone's list gets no key, and a key cannot be relayed to another
device or passed off as someone else's.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import Any

import vodozemac

from chatproto.e2e import FORWARDED_ROOM_KEY, ROOM_KEY, ROOM_KEY_REQUEST

from .device import DeviceAccount
from .errors import UntrustedKeys
from .keys import DeviceKeys
from .megolm import GroupSessions, InboundId, OutboundGroup


def may_receive_room_key(device: DeviceKeys, user_key: str | None) -> bool:
    """Whether ``device`` is signed by ``user_key``, its user's CURRENT user key."""
    return device.signed_by_user_key(user_key)


def eligible_devices(
    devices: Iterable[DeviceKeys], user_keys: Mapping[str, str | None]
) -> list[DeviceKeys]:
    """The devices that may receive a conversation's key (``user_keys``: user -> key)."""
    return [d for d in devices if may_receive_room_key(d, user_keys.get(d.user))]


def room_key(
    group: OutboundGroup, sender: DeviceAccount, recipient: DeviceKeys, user_key: str | None
) -> dict[str, Any]:
    """The ``room_key`` payload of ``group`` for ``recipient`` (then Olm-encrypted to it).

    :class:`UntrustedKeys` if ``user_key`` (the recipient's user's current key) did not
    sign the recipient device.
    """
    if not may_receive_room_key(recipient, user_key):
        raise UntrustedKeys(
            f"{recipient.user}'s device {recipient.device} is not approved by "
            f"{recipient.user}'s user key; it gets no room key"
        )
    return {
        "type": ROOM_KEY,
        "conversation": group.conversation,
        "session_id": group.session_id,
        "session_key": group.session_key(),
        "sender_ed25519": sender.ed25519,
        "recipient_ed25519": recipient.ed25519,
    }


def own_inbound(group: OutboundGroup, device: DeviceAccount, sessions: GroupSessions) -> None:
    """Keep our own outbound session's key, so this device reads what it sent.

    Call it when ``outbound_for`` made the session, before its first message: the key is
    taken at the current index.
    """
    sessions.add_inbound(
        group.conversation,
        device.curve25519,
        vodozemac.InboundGroupSession(vodozemac.SessionKey(group.session_key())),
        device.user,
        device.device,
        device.ed25519,
    )


def accept_room_key(
    payload: Mapping[str, Any],
    me: DeviceAccount,
    sender: DeviceKeys,
    sender_user_key: str | None,
    sessions: GroupSessions,
) -> bool:
    """Check a ``room_key`` that Olm proved ``sender`` sent, and keep its session.

    :class:`UntrustedKeys` unless it is addressed to this device (and its ed25519 key),
    names ``sender`` and its ed25519 key, and ``sender`` is signed by ``sender_user_key``.
    True if the key is new.
    """
    if payload.get("type") != ROOM_KEY:
        raise UntrustedKeys("not a room key")
    if (
        payload.get("recipient"),
        payload.get("recipient_device"),
        payload.get("recipient_ed25519"),
    ) != (me.user, me.device, me.ed25519):
        raise UntrustedKeys("a room key addressed to another device was refused")
    if (
        payload.get("sender"),
        payload.get("sender_device"),
        payload.get("sender_ed25519"),
    ) != (sender.user, sender.device, sender.ed25519):
        raise UntrustedKeys("a room key that names another sender than its own was refused")
    if not sender.signed_by_user_key(sender_user_key):
        raise UntrustedKeys(
            f"a room key from {sender.user}'s unapproved device {sender.device} was refused"
        )
    try:
        session = vodozemac.InboundGroupSession(vodozemac.SessionKey(payload["session_key"]))
    except (KeyError, TypeError, ValueError):
        raise UntrustedKeys("a malformed room key was refused") from None
    conversation = payload.get("conversation")
    if session.session_id != payload.get("session_id") or not isinstance(conversation, str):
        raise UntrustedKeys("a malformed room key was refused")
    return sessions.add_inbound(
        conversation, sender.curve25519, session, sender.user, sender.device, sender.ed25519
    )


def room_key_request(conversation: str, e2e: Mapping[str, Any], requester: str) -> dict[str, Any]:
    """Ask the user's own other devices for the key of message ``e2e``.

    ``sender_key`` (the message's) names the session with ``session_id``: receivers keep
    sessions per (conversation, sender key, session id).
    """
    return {
        "type": ROOM_KEY_REQUEST,
        "conversation": conversation,
        "session_id": e2e.get("session_id"),
        "sender_key": e2e.get("sender_key"),
        "requester_device": requester,
    }


def forwarded_room_key(
    request: Mapping[str, Any],
    me: DeviceAccount,
    requester: DeviceKeys,
    own_user_key: str | None,
    sessions: GroupSessions,
) -> dict[str, Any] | None:
    """Answer a ``room_key_request`` with the key we hold, or None.

    Only to a device of our own user signed by our user key (:class:`UntrustedKeys`
    otherwise); the key is exported from the earliest index we can read.
    """
    if requester.user != me.user or not requester.signed_by_user_key(own_user_key):
        raise UntrustedKeys(
            f"device {requester.device} is not approved by your user key; it gets no forwarded key"
        )
    conversation = request.get("conversation")
    sender_key = request.get("sender_key")
    session_id = request.get("session_id")
    if not all(isinstance(v, str) for v in (conversation, sender_key, session_id)):
        return None
    entry = sessions.inbound.get((str(conversation), str(sender_key), str(session_id)))
    if entry is None:
        return None
    exported = entry.session.export_at(entry.session.first_known_index)
    if exported is None:
        return None
    return {
        "type": FORWARDED_ROOM_KEY,
        "conversation": conversation,
        "session_id": entry.session.session_id,
        "session_key": exported.to_base64(),
        "original_sender": entry.sender,
        "original_sender_device": entry.sender_device,
        "original_sender_key": sender_key,
        "original_sender_ed25519": entry.sender_ed25519,
    }


def requested_session(request: Mapping[str, Any]) -> InboundId:
    """The (conversation, sender key, session id) a ``room_key_request`` asks for."""
    return (
        str(request.get("conversation")),
        str(request.get("sender_key")),
        str(request.get("session_id")),
    )


def accept_forwarded_room_key(
    payload: Mapping[str, Any],
    me: DeviceAccount,
    forwarder: DeviceKeys,
    own_user_key: str | None,
    sessions: GroupSessions,
    requested: Container[InboundId],
) -> bool:
    """Keep a ``forwarded_room_key`` from our own approved device ``forwarder``.

    :class:`UntrustedKeys` unless ``forwarder`` is ours and signed by our user key, the
    payload is addressed to this device, and it is a session this device asked for
    (``requested``: :func:`requested_session` of each request sent). True if it gave a
    key we did not have (or an earlier index of one).
    """
    if payload.get("type") != FORWARDED_ROOM_KEY:
        raise UntrustedKeys("not a forwarded room key")
    if forwarder.user != me.user or not forwarder.signed_by_user_key(own_user_key):
        raise UntrustedKeys("a forwarded room key from an unapproved device was refused")
    if (payload.get("recipient"), payload.get("recipient_device")) != (me.user, me.device):
        raise UntrustedKeys("a forwarded room key addressed to another device was refused")
    if (payload.get("sender"), payload.get("sender_device")) != forwarder.peer:
        raise UntrustedKeys("a forwarded room key that names another forwarder was refused")
    asked = (
        payload.get("conversation"),
        payload.get("original_sender_key"),
        payload.get("session_id"),
    )
    if asked not in requested:
        raise UntrustedKeys("a forwarded room key that this device did not ask for was refused")
    fields = (
        "conversation",
        "original_sender",
        "original_sender_device",
        "original_sender_key",
        "original_sender_ed25519",
    )
    if not all(isinstance(payload.get(name), str) for name in fields):
        raise UntrustedKeys("a malformed forwarded room key was refused")
    try:
        session = vodozemac.InboundGroupSession.import_session(
            vodozemac.ExportedSessionKey(payload["session_key"])
        )
    except (KeyError, TypeError, ValueError):
        raise UntrustedKeys("a malformed forwarded room key was refused") from None
    if session.session_id != payload.get("session_id"):
        raise UntrustedKeys("a malformed forwarded room key was refused")
    return sessions.add_inbound(
        payload["conversation"],
        payload["original_sender_key"],
        session,
        payload["original_sender"],
        payload["original_sender_device"],
        payload["original_sender_ed25519"],
    )
