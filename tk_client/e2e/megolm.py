"""Megolm sessions per conversation: encrypt a message once for every member device.

A sending device keeps one outbound session per conversation and shares its key over Olm
(``room_keys``); receivers keep inbound sessions keyed by (conversation, sender key,
session id). The outbound session is replaced (:func:`needs_rotation`) when someone who
had its key should no longer read: a member left, a device went, or it simply served long
enough (100 messages, 7 days). Time is always passed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import vodozemac

from chatproto.e2e import (
    ALGORITHM_MEGOLM,
    MEGOLM_ROTATION_MESSAGES,
    MEGOLM_ROTATION_SECONDS,
    MEGOLM_TEXT,
    canonical_json,
)
from chatproto.e2e_files import MEGOLM_FILE

from .errors import DecryptionFailed
from .keys import Peer


class RotationReason(Enum):
    MESSAGES = "it encrypted 100 messages"
    AGE = "it is 7 days old"
    MEMBER_LEFT = "a member left the conversation"
    DEVICE_REMOVED = "a device that had its key was removed"


@dataclass
class OutboundGroup:
    """This device's outbound session for one conversation, and who has its key."""

    conversation: str
    session: vodozemac.GroupSession
    created_at: float
    shared_with: set[Peer] = field(default_factory=set)
    messages: int = 0

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def session_key(self) -> str:
        """The key at the current index (what ``room_key`` carries): earlier messages stay
        unreadable to whoever receives it now."""
        return self.session.session_key.to_base64()

    def devices_without_key(self, devices: Set[Peer]) -> set[Peer]:
        """Which of the conversation's eligible ``devices`` still need a ``room_key``."""
        return set(devices) - self.shared_with


def needs_rotation(
    group: OutboundGroup, now: float, members: Set[str], devices: Set[Peer]
) -> RotationReason | None:
    """Why ``group`` must be replaced before the next message, or None to keep it.

    ``members`` are the conversation's users now; ``devices`` the devices now eligible for
    its key (user-signed under their user's current user key). Anyone who had the key and
    is in neither any more would read on: rotate.
    """
    if group.messages >= MEGOLM_ROTATION_MESSAGES:
        return RotationReason.MESSAGES
    if now - group.created_at >= MEGOLM_ROTATION_SECONDS:
        return RotationReason.AGE
    if {user for user, _ in group.shared_with} - set(members):
        return RotationReason.MEMBER_LEFT
    if group.shared_with - set(devices):
        return RotationReason.DEVICE_REMOVED
    return None


class Undecryptable(Enum):
    """Why a message shows no text: section 4.9's causes, in its words (never a silent gap).

    ``{name}`` is the sender's user name.
    """

    BEFORE_THIS_DEVICE = (
        "Sent before this device was set up: its key was never shared with this device."
    )
    BEFORE_THIS_DEVICE_NO_BACKUP_KEY = (  # the same, while this device uses no backup key
        "Sent before this device was set up: its key was never shared with this device. "
        "Approve this device from another one, or enter your recovery key, to read it."
    )
    KEY_NOT_RECEIVED = "Waiting for the key from {name}'s device. Asked your other devices."
    SENDER_NOT_VERIFIED = "Sent from a device that {name} has not verified: not shown."
    NOT_VERIFIED = "This message could not be verified and is not shown."

    def text(self, sender: str) -> str:
        """The line shown in the message's place, for a message from ``sender``."""
        return self.value.format(name=sender)


def why_undecryptable(
    sent_at: float,
    device_created_at: float,
    sender_device_approved: bool,
    backup_in_use: bool = True,
) -> Undecryptable:
    """The reason to show for a message whose session key this device does not have (or,
    for ``SENDER_NOT_VERIFIED``, holds aside: it came from an unsigned device).

    A message that has its key but fails to decrypt or check is ``NOT_VERIFIED``. An old
    message on a device that does not use the key backup (it holds no backup key, or one
    that is not the current signed backup's) says how to get it (4.9, 4.13)."""
    if not sender_device_approved:
        return Undecryptable.SENDER_NOT_VERIFIED
    if sent_at < device_created_at:
        if not backup_in_use:
            return Undecryptable.BEFORE_THIS_DEVICE_NO_BACKUP_KEY
        return Undecryptable.BEFORE_THIS_DEVICE
    return Undecryptable.KEY_NOT_RECEIVED


InboundId = tuple[str, str, str]
"""(conversation, sender curve25519, session id)."""


@dataclass
class InboundGroup:
    """A received session key, bound to the device that (proven over Olm) sent it."""

    session: vodozemac.InboundGroupSession
    sender: str
    sender_device: str
    sender_ed25519: str
    seen: dict[int, str] = field(default_factory=dict)  # message index -> message id


@dataclass(frozen=True)
class Decrypted:
    """A message's text and who sent it, all checked against the session's sender."""

    text: str
    sender: str
    sender_device: str
    message_index: int
    payload: Mapping[str, Any] = field(default_factory=dict, repr=False)  # the whole plaintext


class GroupSessions:
    """This device's Megolm sessions: its own outbound ones and every received key."""

    def __init__(self) -> None:
        self.outbound: dict[str, OutboundGroup] = {}
        self.inbound: dict[InboundId, InboundGroup] = {}
        self.changes = 0  # inbound sessions added or improved: what the key backup follows

    # --- sending ----------------------------------------------------------------------------

    def outbound_for(
        self, conversation: str, now: float, members: Set[str], devices: Set[Peer]
    ) -> tuple[OutboundGroup, RotationReason | None]:
        """The session to encrypt with, a new one if the policy says so (and why)."""
        group = self.outbound.get(conversation)
        reason = None
        if group is not None:
            reason = needs_rotation(group, now, members, devices)
        if group is None or reason is not None:
            group = OutboundGroup(conversation, vodozemac.GroupSession(), now)
            self.outbound[conversation] = group
        return group, reason

    def encrypt(
        self, group: OutboundGroup, text: str, sender: str, sender_device: str, sender_key: str
    ) -> dict[str, Any]:
        """The message's ``e2e`` object; the inner plaintext binds conversation and sender."""
        plaintext = {
            "type": MEGOLM_TEXT,
            "text": text,
            "conversation": group.conversation,
            "sender": sender,
            "sender_device": sender_device,
        }
        return self.seal(group, plaintext, sender_device, sender_key)

    def seal(
        self,
        group: OutboundGroup,
        plaintext: Mapping[str, Any],
        sender_device: str,
        sender_key: str,
    ) -> dict[str, Any]:
        """The ``e2e`` object of any Megolm plaintext (a text, a file offer's ``file``): the
        caller's plaintext names the conversation, sender and device that readers check."""
        ciphertext = group.session.encrypt(canonical_json(dict(plaintext))).to_base64()
        group.messages += 1
        return {
            "algorithm": ALGORITHM_MEGOLM,
            "sender_key": sender_key,
            "device": sender_device,
            "session_id": group.session_id,
            "ciphertext": ciphertext,
        }

    # --- receiving --------------------------------------------------------------------------

    def add_inbound(
        self,
        conversation: str,
        sender_key: str,
        session: vodozemac.InboundGroupSession,
        sender: str,
        sender_device: str,
        sender_ed25519: str,
    ) -> bool:
        """Keep a received session; False if it was already known from an earlier index.

        A key from an earlier index reads more, so it replaces a later one; never the
        other way round, and never one whose sender differs from the first one's.
        """
        key = (conversation, sender_key, session.session_id)
        entry = InboundGroup(session, sender, sender_device, sender_ed25519)
        known = self.inbound.get(key)
        if known is not None:
            same_sender = (known.sender, known.sender_device, known.sender_ed25519) == (
                sender,
                sender_device,
                sender_ed25519,
            )
            if not same_sender or known.session.first_known_index <= session.first_known_index:
                return False
            entry.seen = known.seen
        self.inbound[key] = entry
        self.changes += 1
        return True

    def has_key(self, conversation: str, e2e: Mapping[str, Any]) -> bool:
        return (conversation, e2e.get("sender_key"), e2e.get("session_id")) in self.inbound

    def decrypt(
        self,
        conversation: str,
        sender: str,
        e2e: Mapping[str, Any],
        message_id: str | None = None,
        kind: str = MEGOLM_TEXT,
    ) -> Decrypted:
        """The text of a message in ``conversation`` from ``sender`` (the outer message's).

        :class:`DecryptionFailed` alike for a missing key (ask :meth:`has_key` first to
        tell the user why), a bad ciphertext, a plaintext whose conversation, sender or
        device differ from the outer message's or from the key's sender, and a replay: the
        same ciphertext index shown again under another ``message_id`` (the server's id of
        the outer message; the same message decrypted twice, as history reloads, is fine;
        not a file offer, which is opened once).
        ``kind``: the plaintext's ``type`` expected (``text``; ``file`` for a file offer,
        whose further fields the caller checks in :attr:`Decrypted.payload`).
        """
        try:
            entry = self.inbound[(conversation, e2e["sender_key"], e2e["session_id"])]
            if e2e.get("algorithm") != ALGORITHM_MEGOLM:
                raise ValueError
            decrypted = entry.session.decrypt(
                vodozemac.MegolmMessage.from_base64(e2e["ciphertext"])
            )
            inner = json.loads(decrypted.plaintext)
            expected = {
                "type": kind,
                "conversation": conversation,
                "sender": sender,
                "sender_device": e2e.get("device"),
            }
            if (
                not isinstance(inner, dict)
                or any(inner.get(name) != value for name, value in expected.items())
                or (entry.sender, entry.sender_device) != (sender, e2e.get("device"))
                or (kind == MEGOLM_TEXT and not isinstance(inner.get("text"), str))
            ):
                raise ValueError
            if message_id is not None:
                # A file offer is never delivered twice (no history brings it back): seen
                # once already, it is the server replaying an old file as if sent anew.
                if kind == MEGOLM_FILE and decrypted.message_index in entry.seen:
                    raise ValueError
                first = entry.seen.setdefault(decrypted.message_index, message_id)
                if first != message_id:
                    raise ValueError
        except (KeyError, ValueError, TypeError, UnicodeDecodeError):
            raise DecryptionFailed() from None
        text = inner["text"] if kind == MEGOLM_TEXT else ""
        return Decrypted(text, sender, entry.sender_device, decrypted.message_index, inner)

    # --- at rest ----------------------------------------------------------------------------

    def to_state(self, pickle_key: bytes) -> dict[str, Any]:
        return {
            "outbound": [
                {
                    "conversation": group.conversation,
                    "session": group.session.pickle(pickle_key),
                    "created_at": group.created_at,
                    "shared_with": sorted(list(peer) for peer in group.shared_with),
                    "messages": group.messages,
                }
                for group in self.outbound.values()
            ],
            "inbound": [
                {
                    "conversation": conversation,
                    "sender_key": sender_key,
                    "session": entry.session.pickle(pickle_key),
                    "sender": entry.sender,
                    "sender_device": entry.sender_device,
                    "sender_ed25519": entry.sender_ed25519,
                    "seen": {str(index): seen for index, seen in entry.seen.items()},
                }
                for (conversation, sender_key, _), entry in self.inbound.items()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], pickle_key: bytes) -> GroupSessions:
        restored = cls()
        for item in state["outbound"]:
            restored.outbound[item["conversation"]] = OutboundGroup(
                item["conversation"],
                vodozemac.GroupSession.from_pickle(item["session"], pickle_key),
                item["created_at"],
                {(user, device) for user, device in item["shared_with"]},
                item["messages"],
            )
        for item in state["inbound"]:
            session = vodozemac.InboundGroupSession.from_pickle(item["session"], pickle_key)
            restored.inbound[(item["conversation"], item["sender_key"], session.session_id)] = (
                InboundGroup(
                    session,
                    item["sender"],
                    item["sender_device"],
                    item["sender_ed25519"],
                    {int(index): seen for index, seen in item["seen"].items()},
                )
            )
        return restored
