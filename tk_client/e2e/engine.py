"""One logged-in device's end-to-end coordinator (section 4), sans I/O.

Wire dicts in, wire dicts and events out: no socket, no thread, no clock (``now`` is
passed in, request ids come from ``new_id``). The session layer sends what
:class:`Output.requests` holds, feeds every section 4 answer and push to
:meth:`E2EEngine.receive`, and shows :class:`Output.events`.

What it does: publishes this device's keys and keeps one-time keys topped up
(``keys_upload``); tracks the device lists of the users it talks with (``keys_query``,
``device_list_changes``, ``devices_changed``); encrypts a message for a conversation
(:meth:`E2EEngine.encrypt_for`: fresh device lists, Olm sessions from claimed keys, the
room key to every signed member device, rotation, then the Megolm ``e2e`` message); and
reads ``to_device`` pushes and encrypted ``message`` / ``private`` pushes, asking the
user's other devices for a missing key and retrying held messages when keys arrive.

SAS flows (device approval, contact verification) are :mod:`.verification`'s; the engine
carries their plaintexts over Olm and re-uploads this device's keys once it is approved.

Whom it trusts: a device signed by its user's current user key; for our own user, the key
this device holds (never the server's published copy), and none once a newer published
key shows that the identity was reset elsewhere (the device drops its stale key and says
so: :data:`STALE_IDENTITY_NOTICE`). A message shows only while its session's sender device
is listed and signed; an ``e2e`` push of the wrong shape is a :class:`NotShown`.

The device lists it tracks live in the store, so a restarted client still has them; the
fallback key is replaced once the published one is a week old (:meth:`E2EEngine.tick`).
Requests stay within the protocol's bounds (at most 1,000 devices in a ``keys_claim``, 1,000
messages and :data:`MAX_REQUEST_BYTES` in a ``to_device``); a ``to_device`` refused for an
unknown user or device makes it fetch those users' keys again and share the room keys again.
A key is forwarded to our own devices only for a conversation the user is still in
(:meth:`E2EEngine.set_rooms`). The caller saves the store before it sends a
``to_device_ack``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chatproto import e2e
from chatproto.e2e_files import MEGOLM_FILE

from . import room_keys
from .backup import BACKUP_KEY_SHARE, BackupEvent, BackupStatusChanged, KeyBackup
from .backup import Step as BackupStep
from .device import TOP_UP_BELOW
from .directory import DeviceDirectory, UserKeys
from .errors import DecryptionFailed, E2EError, UntrustedKeys
from .files import Opened, Sealed
from .keys import ClaimedKey, DeviceKeys, Peer, PublishedUserKey
from .megolm import InboundGroup, Undecryptable, why_undecryptable
from .store import CryptoStore
from .verification import (
    CodesReady,
    VerificationCancelled,
    VerificationRequested,
    Verifications,
    VerificationStarted,
    Verified,
)

_VERIFICATION_TYPES = (
    e2e.SAS_START,
    e2e.SAS_KEY,
    e2e.SAS_MAC,
    e2e.SAS_DONE,
    e2e.SAS_CANCEL,
    e2e.USER_KEY_SHARE,
)
STALE_IDENTITY_NOTICE = (
    "Your identity was reset on another of your devices (if you did not do it, someone may "
    "be intercepting). This device stopped using the old user key and is no longer "
    "approved: approve it from a device you already use, or reset your identity here."
)
MAX_KEYS_ASIDE = 1_000
"""Room keys from unsigned devices kept while waiting for a signature; older ones go."""
FALLBACK_KEY_LIFETIME = 7 * 24 * 3600.0
"""Seconds after which the published fallback key is replaced (4.3: at least weekly)."""
MAX_REQUEST_BYTES = 512 * 1024
"""Bytes of JSON in one ``to_device`` request: half a record (1 MiB, less its framing), so
a request never comes near the record limit however its envelope is spelled."""
_REFRESH_CODES = frozenset({"unknown_device", "unknown_user"})

# --- what comes out ------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """A decrypted message, to show in place of its ciphertext."""

    conversation: str
    msg_id: Any
    sender: str
    text: str


@dataclass(frozen=True)
class NotShown:
    """An encrypted message that cannot be shown yet, and the line that says why (4.9)."""

    conversation: str
    msg_id: Any
    sender: str
    reason: Undecryptable

    @property
    def text(self) -> str:
        return self.reason.text(self.sender)


@dataclass(frozen=True)
class Notice:
    """A sentence for the user (a contact's changed identity, say)."""

    text: str


Event = (
    Shown
    | NotShown
    | Notice
    | VerificationRequested
    | VerificationStarted
    | CodesReady
    | Verified
    | VerificationCancelled
    | BackupEvent
    | Sealed
    | Opened
)


@dataclass
class Output:
    """What one call produced: requests to send (in order) and events to show."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.requests.extend(other.requests)
        self.events.extend(other.events)


# --- what is remembered between calls -----------------------------------------------------


@dataclass
class _PendingSend:
    """A message waiting for device lists or one-time keys before it goes out."""

    conversation: str
    members: frozenset[str]
    # Neither the text nor the payload (a file offer's: its name, hash and file key) is
    # ever printed, in a traceback or a debug line.
    text: str | None = field(repr=False)  # None: only share the room key again
    now: float
    payload: Mapping[str, Any] | None = field(default=None, repr=False)  # a file offer's
    tag: str = ""  # the payload's, on its Sealed event
    waiting_for: set[str] = field(default_factory=set)  # request ids
    claimed: dict[Peer, ClaimedKey] = field(default_factory=dict)
    claim_sent: bool = False
    unanswered: set[str] = field(default_factory=set)
    """Users whose ``keys_query`` was refused: this message goes with what is known of them
    (nothing, for a user never fetched), and is not held up by asking again."""


@dataclass
class _HeldMessage:
    """An encrypted message not shown yet, and what the user was last told about it."""

    conversation: str
    message: Mapping[str, Any]  # its ``e2e`` checked by :func:`_well_formed`
    reason: Undecryptable | None = None
    query: str | None = None  # the keys_query about its session's sender, if one was needed


_E2E_FIELDS = frozenset({"algorithm", "sender_key", "device", "session_id", "ciphertext"})


def _well_formed(sealed: Any) -> bool:
    """Whether a message's ``e2e`` has the shape of 4.5: an object of strings, with every
    field a reader uses (anything else is shown as not verifiable, never an exception)."""
    return (
        isinstance(sealed, Mapping)
        and sealed.keys() >= _E2E_FIELDS
        and all(isinstance(k, str) and isinstance(v, str) for k, v in sealed.items())
    )


@dataclass
class _HeldToDevice:
    """A ``to_device`` push kept back: its sender is not known yet (``query``: the
    ``keys_query`` that will say), or an earlier push is held (to keep their order)."""

    push: Mapping[str, Any]
    query: str | None = None


def _ts_seconds(ts: Any) -> float:
    """A wire ``ts`` (``YYYY-MM-DDTHH:MM:SS.mmmZ``) in seconds since the epoch, or +inf."""
    try:
        parsed = datetime.strptime(str(ts), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return parsed.timestamp()


class E2EEngine:
    """Section 4 for one device (``store``), between a session layer and the user."""

    def __init__(self, store: CryptoStore, new_id: Callable[[], str]) -> None:
        self.store = store
        self._new_id = new_id
        self.directory: DeviceDirectory = store.directory
        self._queries: dict[str, set[str]] = {}  # keys_query id -> users
        self._uploads: dict[str, bool] = {}  # keys_upload id -> whether it has a fallback key
        self._room_keys_sent: dict[str, tuple[_PendingSend, set[Peer]]] = {}  # to_device id ->
        # the send whose room keys it carried, and to which devices
        self._olm_sent: dict[str, set[str]] = {}  # other to_device id -> users it addressed
        self._rooms: frozenset[str] | None = None  # the user's room conversations, once told
        self._sends: list[_PendingSend] = []
        self._held: list[_HeldMessage] = []
        self._held_to_device: list[_HeldToDevice] = []
        self._sender_queries: dict[str, str] = {}  # user -> keys_query id, for held pushes
        self._requested: set[tuple[str, str, str]] = set()
        self._olm_waiting: dict[str, list[tuple[DeviceKeys, dict[str, Any]]]] = {}
        self._aside: list[tuple[Peer, dict[str, Any]]] = []  # room keys of unsigned devices
        self._last_seq = 0
        self._now = 0.0
        self.verifications = Verifications(store)
        self.backup = KeyBackup(store, new_id)  # the key backup (4.13)
        self.verifications.backup_share = self.backup.share_for_approval

    @property
    def me(self) -> str:
        return self.store.device.user

    # --- login ------------------------------------------------------------------------------

    def login(self) -> Output:
        """After ``login_ok``: publish this device's keys (signed by the user key when this
        device holds it), fetch our own devices, and ask what changed meanwhile.

        One-time keys are not made here: the ``keys_uploaded`` answer says how many the
        server still has, and the top-up follows from that count (section 4.3), so logging
        in again never piles keys past the server's limit of 100.
        """
        out = self._upload(device_keys=True, left_on_server=None)
        out.extend(self._query([self.me]))  # our own devices: for key requests and sharing
        self._requested.clear()  # ask again, on each connection, for keys still missing
        for held in self._held:
            if not self.store.groups.has_key(held.conversation, held.message["e2e"]):
                out.extend(self._request_key(held.conversation, held.message["e2e"]))
        out.requests.append(
            {
                "type": "device_list_changes",
                "id": self._new_id(),
                "since": self.store.device_list_version,
            }
        )
        out.extend(self._backup_step(self.backup.login()))
        return out

    def _upload(
        self, *, device_keys: bool, left_on_server: int | None, new_fallback: bool = False
    ) -> Output:
        """A ``keys_upload``; ``left_on_server`` (``keys_uploaded``'s count) tops up the
        one-time keys; None makes none and only sends again those not yet confirmed. A new
        fallback key goes with the device keys and when ``new_fallback`` asks for one."""
        device = self.store.device
        request: dict[str, Any] = {"type": "keys_upload", "id": self._new_id()}
        if device_keys:
            keys = device.device_keys()
            if self.store.identity is not None:
                keys = self.store.identity.sign_device(keys)
            request["device_keys"] = keys.to_wire()
        one_time_keys = (
            device.one_time_keys_to_upload(left_on_server)
            if left_on_server is not None
            else device.unpublished_one_time_keys()
        )
        if one_time_keys:
            request["one_time_keys"] = one_time_keys
        fallback = (
            device.new_fallback_key()
            if new_fallback
            else device.unpublished_fallback_key()
            or (device.new_fallback_key() if device_keys else None)
        )
        if fallback is not None:
            request["fallback_key"] = fallback
        self._uploads[request["id"]] = fallback is not None
        return Output(requests=[request])

    def _fallback_key_due(self, now: float) -> bool:
        """Whether the published fallback key is over a week old, and no upload of a new
        one is on its way (its time is known once the server confirmed it)."""
        published = self.store.fallback_published_at
        return (
            published is not None
            and now - published > FALLBACK_KEY_LIFETIME
            and not any(self._uploads.values())
        )

    # --- sending ----------------------------------------------------------------------------

    def encrypt_for(
        self, conversation: str, members: Iterable[str], text: str, now: float
    ) -> Output:
        """Everything to send so that ``text`` reaches ``conversation``'s ``members``.

        :class:`~.errors.SendingBlocked` if a verified member's identity changed. The
        message may wait for device lists or one-time keys: the requests that fetch them
        come first, and the message leaves when their answers have been received.
        """
        member_set = frozenset(members) | {self.me}
        self.store.contacts.check_sending(member_set - {self.me})
        pending = _PendingSend(conversation, member_set, text, now)
        self._sends.append(pending)
        out = self._advance_sends()
        out.extend(self._backup_step(self.backup.flush()))  # a new session's copy, if made
        return out

    def seal_for(
        self,
        conversation: str,
        members: Iterable[str],
        payload: Mapping[str, Any],
        tag: str,
        now: float,
    ) -> Output:
        """Like :meth:`encrypt_for`, for a Megolm plaintext other than a text (4.12: a file
        offer's ``file``): a :class:`~.files.Sealed` event with ``tag`` carries its ``e2e``
        once the room keys have gone."""
        member_set = frozenset(members) | {self.me}
        self.store.contacts.check_sending(member_set - {self.me})
        self._sends.append(_PendingSend(conversation, member_set, None, now, payload, tag))
        out = self._advance_sends()
        out.extend(self._backup_step(self.backup.flush()))  # a new session's copy, if made
        return out

    def open_file_offer(self, offer: Mapping[str, Any], now: float) -> Output:
        """A relayed ``file_offer`` with ``e2e`` (4.12): an :class:`~.files.Opened` event,
        or a ``NotShown`` (held until its key comes, like a message), under the message id
        ``file:<transfer>``."""
        msg_id = f"file:{offer.get('transfer')}"
        return self.receive({**offer, "type": "file_offer", "msg_id": msg_id}, now)

    def forget_held(self, msg_id: str) -> None:
        """Stop holding the message ``msg_id`` (a file offer that ended while it waited for
        its key, 4.12): a key that comes later shows nothing, and nothing of it is kept."""
        self._held = [held for held in self._held if held.message.get("msg_id") != msg_id]

    def _advance_sends(self) -> Output:
        out = Output()
        while self._sends and not self._sends[0].waiting_for:  # a waiting one asked already
            step = self._advance(self._sends[0])
            out.extend(step)
            if self._sends[0].waiting_for:
                break
            self._sends.pop(0)
        return out

    def _advance(self, pending: _PendingSend) -> Output:
        out = Output()
        unknown = self.directory.needs_query(pending.members) - pending.unanswered
        if unknown:
            out.extend(self._query(unknown))
            pending.waiting_for.add(out.requests[-1]["id"])
            return out
        group, _reason = self.store.groups.outbound_for(
            pending.conversation, pending.now, pending.members, self._eligible(pending.members)
        )
        if group.messages == 0 and not group.shared_with:
            room_keys.own_inbound(group, self.store.device, self.store.groups)
        devices = self._eligible_devices(pending.members)
        missing = group.devices_without_key({d.peer for d in devices})
        needing = [d for d in devices if d.peer in missing]
        without_session = [
            d
            for d in needing
            if not self.store.olm.has_session(d) and d.peer not in pending.claimed
        ]
        if without_session and not pending.claim_sent:
            pending.claim_sent = True  # the message waits for every claim's answer
            for claim in self._claims(without_session):
                pending.waiting_for.add(claim["id"])
                out.requests.append(claim)
            return out
        messages = []
        for device in needing:
            user_key = self._user_key(device.user)
            try:
                payload = room_keys.room_key(group, self.store.device, device, user_key)
                body = self.store.olm.encrypt(device, payload, pending.claimed.get(device.peer))
            except (E2EError, ValueError):
                continue  # no usable one-time key, or a bad one: that device waits
            messages.append({"user": device.user, "device": device.device, "body": body})
            group.shared_with.add(device.peer)
        for request in self._to_device_requests(messages):
            peers = {(m["user"], m["device"]) for m in request["messages"]}
            self._room_keys_sent[request["id"]] = (pending, peers)
            out.requests.append(request)
        me = self.store.device
        if pending.payload is not None:
            sealed = self.store.groups.seal(group, pending.payload, me.device, me.curve25519)
            out.events.append(Sealed(pending.tag, sealed))
            return out
        if pending.text is None:
            return out
        sealed = self.store.groups.encrypt(group, pending.text, me.user, me.device, me.curve25519)
        out.requests.append(self._message_request(pending.conversation, sealed))
        return out

    def _claims(self, devices: list[DeviceKeys]) -> list[dict[str, Any]]:
        """``keys_claim`` requests for ``devices``, at most 1,000 devices each (4.3)."""
        step = e2e.MAX_KEYS_CLAIM_DEVICES
        return [
            {
                "type": "keys_claim",
                "id": self._new_id(),
                "devices": [{"user": d.user, "device": d.device} for d in devices[i : i + step]],
            }
            for i in range(0, len(devices), step)
        ]

    def _to_device_requests(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``messages`` as ``to_device`` requests within bounds (4.4): at most 1,000
        messages and about :data:`MAX_REQUEST_BYTES` of JSON each."""
        batches: list[list[dict[str, Any]]] = []
        size = 0
        for message in messages:
            length = len(e2e.canonical_json(message)) + 1  # and its comma
            if (
                not batches
                or len(batches[-1]) >= e2e.MAX_TO_DEVICE_MESSAGES
                or size + length > MAX_REQUEST_BYTES
            ):
                batches.append([])
                size = 100  # the envelope: type, id, the list's brackets
            batches[-1].append(message)
            size += length
        return [{"type": "to_device", "id": self._new_id(), "messages": b} for b in batches]

    def _message_request(self, conversation: str, sealed: dict[str, Any]) -> dict[str, Any]:
        kind, _, rest = conversation.partition(":")
        if kind == "room":
            return {"type": "send", "id": self._new_id(), "room": rest, "e2e": sealed}
        first, _, second = rest.partition(":")
        other = second if first == self.me else first
        return {"type": "pm", "id": self._new_id(), "to": other, "e2e": sealed}

    def _user_key(self, user: str) -> str | None:
        """The user key that vouches for ``user``'s devices.

        For our own user it is the one this device holds, when it holds one: the server's
        published copy could be a substitute, and trusting it would hand our room keys to a
        device the server signed. For everyone else, the published one (pinned in
        :attr:`CryptoStore.contacts`, with a notice when it changes).
        """
        if user == self.me and self.store.identity is not None:
            return self.store.identity.ed25519
        return self.directory.user_key(user)

    def _signed_devices(self, users: Iterable[str]) -> list[DeviceKeys]:
        """Every device of ``users`` signed by its user's key (:meth:`_user_key`)."""
        return self.directory.signed_devices(users, key_of=self._user_key)

    def _device_of(self, user: str, device: str) -> DeviceKeys | None:
        return self.directory.device(user, device)

    def _eligible_devices(self, members: Iterable[str]) -> list[DeviceKeys]:
        """Every signed device of every member except this one (section 4.6)."""
        own = (self.store.device.user, self.store.device.device)
        return [d for d in self._signed_devices(members) if d.peer != own]

    def _eligible(self, members: Iterable[str]) -> set[Peer]:
        return {d.peer for d in self._eligible_devices(members)}

    # --- the key directory ------------------------------------------------------------------

    def _query(self, users: Iterable[str]) -> Output:
        request_id = self._new_id()
        names = sorted(set(users))
        self._queries[request_id] = set(names)
        return Output(requests=[{"type": "keys_query", "id": request_id, "users": names}])

    def _query_sender(self, user: str) -> tuple[Output, str]:
        """A ``keys_query`` for the sender of a push just received, or none if one asked
        since is still out; and its id. (Not an older query: its answer may predate the
        device that sent the push.)"""
        request_id = self._sender_queries.get(user)
        if request_id in self._queries:
            return Output(), request_id
        out = self._query([user])
        self._sender_queries[user] = request_id = out.requests[-1]["id"]
        return out, request_id

    def _take_keys(self, answer: Mapping[str, Any]) -> Output:
        out = Output()
        asked = self._queries.pop(str(answer.get("ref")), set())
        users = answer.get("users")
        users = users if isinstance(users, Mapping) else {}
        for user in asked:
            entry = users.get(user)
            keys = UserKeys.from_wire(user, entry if isinstance(entry, Mapping) else {})
            for gone in self.directory.take(user, keys):
                self.store.olm.forget(gone)
            if keys.user_key is None:
                continue
            notice = self.store.contacts.observe(user, keys.user_key.ed25519)
            if user == self.me and self._identity_is_stale(keys.user_key):
                out.extend(self._drop_stale_identity())
            elif notice is not None:
                out.events.append(Notice(notice.text))
        for pending in self._sends:
            pending.waiting_for.discard(str(answer.get("ref")))
        out.extend(self._retry_aside())
        out.extend(self._retry_to_device())
        out.extend(self._retry_held())
        out.extend(self._advance_sends())
        return out

    def _identity_is_stale(self, published: PublishedUserKey) -> bool:
        """Whether the user key this device holds was replaced: the published one is newer
        (an identity reset from another device). An older or same-version different key
        does not count: this device's own reset not yet seen, or a substitute."""
        held = self.store.identity
        return (
            held is not None
            and published.ed25519 != held.ed25519
            and published.version > held.version
        )

    def _drop_stale_identity(self) -> Output:
        """Stop using a replaced user key: forget it (the store then keeps none), publish
        this device's keys without its signature, and say so. The device is unsigned now
        and must be approved again (4.2, 4.7)."""
        self.store.identity = None
        out = self._upload(device_keys=True, left_on_server=None)
        out.events.append(Notice(STALE_IDENTITY_NOTICE))
        return out

    def _changed(self, users: Iterable[Any], version: Any) -> Output:
        tracked = self.directory.mark_changed(u for u in users if isinstance(u, str))
        if isinstance(version, int) and not isinstance(version, bool):
            self.store.device_list_version = max(self.store.device_list_version, version)
        return self._query(tracked) if tracked else Output()

    # --- receiving --------------------------------------------------------------------------

    def receive(self, message: Mapping[str, Any], now: float) -> Output:
        """Handle one answer or push of section 4 (others give an empty :class:`Output`);
        then upload to the key backup the sessions it brought (4.13)."""
        self._now = now
        if self.backup.owns(message):
            out = self._backup_step(self.backup.receive(message))
        else:
            out = self._receive(message)
            waited = self.backup.keys_query  # our own keys, that a recovery waits for
            if waited is not None and message.get("ref") == waited:
                out.extend(self._backup_step(self.backup.keys_arrived()))
        out.extend(self._backup_step(self.backup.flush()))
        return out

    def _receive(self, message: Mapping[str, Any]) -> Output:
        kind = message.get("type")
        if kind == "keys_uploaded":
            return self._uploaded(message)
        if kind == "keys":
            return self._take_keys(message)
        if kind == "keys_claimed":
            return self._claimed(message)
        if kind in ("device_list_changes", "devices_changed"):
            users = message.get("users")
            return self._changed(users if isinstance(users, list) else [], message.get("version"))
        if kind == "error" and "ref" in message:
            return self._refused(str(message["ref"]), message.get("code"))
        if kind == "ok" and "ref" in message:  # a to_device delivered: nothing to redo
            self._room_keys_sent.pop(str(message["ref"]), None)
            self._olm_sent.pop(str(message["ref"]), None)
            return Output()
        if kind == "to_device" and "seq" in message:
            return self._to_device(message)
        if kind in ("message", "private", "file_offer") and message.get("e2e") is not None:
            return self._encrypted(message)
        return Output()

    def _refused(self, ref: str, code: Any = None) -> Output:
        """An ``error`` answer to one of our requests: stop waiting for it.

        A refused ``keys_query`` changes nothing in the directory: what we knew of those
        users stays (and stays stale, so the next send asks again); the message that waited
        for it goes with what is known, and to-device pushes held for it are settled.
        A ``to_device`` refused for an unknown user or device: see :meth:`_resend`.
        """
        self._uploads.pop(ref, None)
        self._olm_waiting.pop(ref, None)
        served = self._room_keys_sent.pop(ref, None)
        addressed = self._olm_sent.pop(ref, None)
        if code in _REFRESH_CODES and (served is not None or addressed is not None):
            return self._resend(served, addressed or set())
        asked = self._queries.pop(ref, set())
        for pending in self._sends:
            if ref in pending.waiting_for:
                pending.unanswered |= asked
                pending.waiting_for.discard(ref)
        out = Output()
        if asked:
            out.extend(self._retry_to_device())
            out.extend(self._retry_held())
        out.extend(self._advance_sends())
        return out

    def _resend(self, served: tuple[_PendingSend, set[Peer]] | None, addressed: set[str]) -> Output:
        """A ``to_device`` refused as ``unknown_device`` / ``unknown_user`` (4.4): the server
        refused the whole batch, so nothing of it was queued. Every user it addressed is
        queried again (the error names one target; the others may be gone too), and the room
        keys it carried go again, after that answer, to those devices that still exist (the
        send that shares them waits for the fresh lists), once: a share sent again and
        refused again only refreshes. Other to-device messages (verification, key requests)
        are not sent again."""
        if served is None:
            self.directory.mark_changed(addressed)
            return self._query(addressed) if addressed else Output()
        pending, peers = served
        users = {user for user, _ in peers}
        self.directory.mark_changed(users)  # so the share below asks for them first
        group = self.store.groups.outbound.get(pending.conversation)
        if group is not None:
            group.shared_with -= peers  # they never got it: the next message shares it
        if pending.text is None and pending.payload is None:
            return self._query(users)
        self._sends.append(_PendingSend(pending.conversation, pending.members, None, self._now))
        return self._advance_sends()

    def _uploaded(self, answer: Mapping[str, Any]) -> Output:
        ref = str(answer.get("ref"))
        if ref not in self._uploads:
            return Output()
        if self._uploads.pop(ref):
            self.store.fallback_published_at = self._now
        self.store.device.mark_published()
        left = answer.get("one_time_keys")
        if isinstance(left, int) and left < TOP_UP_BELOW:
            return self._upload(device_keys=False, left_on_server=left)
        return Output()

    def _claimed(self, answer: Mapping[str, Any]) -> Output:
        ref = str(answer.get("ref"))
        claimed: dict[Peer, ClaimedKey] = {}
        keys = answer.get("keys")
        for raw in keys if isinstance(keys, list) else []:
            try:
                key = ClaimedKey.from_wire(raw)
            except UntrustedKeys:
                continue
            claimed[(key.user, key.device)] = key
        if ref in self._olm_waiting:
            return self._send_olm(self._olm_waiting.pop(ref), claimed)
        pending = next((p for p in self._sends if ref in p.waiting_for), None)
        if pending is None:
            return Output()
        pending.claimed.update(claimed)
        pending.waiting_for.discard(ref)
        return self._advance_sends()

    def _send_olm(
        self,
        items: list[tuple[DeviceKeys, dict[str, Any]]],
        claimed: Mapping[Peer, ClaimedKey] | None = None,
    ) -> Output:
        """To-device messages over Olm; for devices without a session, claim keys first
        (once: a device whose key cannot be claimed is skipped)."""
        ready, later, messages = [], [], []
        for device, payload in items:
            if self.store.olm.has_session(device) or claimed is not None:
                ready.append((device, payload))
            else:
                later.append((device, payload))
        for device, payload in ready:
            try:
                key = claimed.get(device.peer) if claimed is not None else None
                body = self.store.olm.encrypt(device, payload, key)
            except (E2EError, ValueError):
                continue
            messages.append({"user": device.user, "device": device.device, "body": body})
        out = Output()
        for request in self._to_device_requests(messages):
            self._olm_sent[request["id"]] = {m["user"] for m in request["messages"]}
            out.requests.append(request)
        step = e2e.MAX_KEYS_CLAIM_DEVICES
        for i in range(0, len(later), step):
            batch = later[i : i + step]
            (claim,) = self._claims([device for device, _ in batch])
            self._olm_waiting[claim["id"]] = batch
            out.requests.append(claim)
        return out

    def _to_device(self, push: Mapping[str, Any]) -> Output:
        seq = push.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= self._last_seq:
            return Output()
        sender = self._device_of(str(push.get("from")), str(push.get("from_device")))
        if sender is None:  # fetch the sender's keys; what follows waits, to keep the order
            out, query = self._query_sender(str(push.get("from")))
            self._held_to_device.append(_HeldToDevice(push, query))
            return out
        if self._held_to_device:
            self._held_to_device.append(_HeldToDevice(push))
            return Output()
        return self._read_and_ack(sender, push, seq)

    def _read_and_ack(self, sender: DeviceKeys, push: Mapping[str, Any], seq: int) -> Output:
        out = self._read_to_device(sender, push)
        self._last_seq = seq
        out.requests.append({"type": "to_device_ack", "upto": seq})
        return out

    def _retry_to_device(self) -> Output:
        """Read the held pushes, oldest first, up to one whose sender's query is still out.

        A push is dropped (and acked) only once the query for ITS sender was answered or
        refused and the device is still unknown (section 4.4: a client refreshes the
        sender's keys; a device the server does not list sent nothing we can read).
        """
        out = Output()
        held, self._held_to_device = self._held_to_device, []
        for item in sorted(held, key=lambda h: int(h.push["seq"])):
            if self._held_to_device:  # an earlier push still waits: keep the order
                self._held_to_device.append(item)
                continue
            seq = int(item.push["seq"])
            if seq <= self._last_seq:
                continue
            user, device = str(item.push.get("from")), str(item.push.get("from_device"))
            sender = self._device_of(user, device)
            if sender is not None:
                out.extend(self._read_and_ack(sender, item.push, seq))
            elif item.query in self._queries:  # its answer has not come yet
                self._held_to_device.append(item)
            elif item.query is None:  # held for the order only; its sender is gone since
                asked, item.query = self._query_sender(user)
                out.extend(asked)
                self._held_to_device.append(item)
            else:  # asked and answered (or refused), still unknown: drop it, and ack
                self._last_seq = seq
                out.requests.append({"type": "to_device_ack", "upto": seq})
        return out

    def _read_to_device(self, sender: DeviceKeys, push: Mapping[str, Any]) -> Output:
        body = push.get("body")
        try:
            plaintext = self.store.olm.decrypt(sender, body if isinstance(body, Mapping) else {})
        except DecryptionFailed:
            return Output()  # dropped, and acked (section 4.4)
        payload = plaintext.payload
        try:
            if payload["type"] == e2e.ROOM_KEY:
                return self._take_room_key(sender, payload)
            if payload["type"] == e2e.FORWARDED_ROOM_KEY:
                room_keys.accept_forwarded_room_key(
                    payload,
                    self.store.device,
                    sender,
                    self._user_key(self.me),
                    self.store.groups,
                    self._requested,
                )
                return self._retry_held()
            if payload["type"] == e2e.ROOM_KEY_REQUEST:
                return self._answer_key_request(payload, sender)
            if payload["type"] in _VERIFICATION_TYPES:
                return self._verification_step(sender, payload)
            if payload["type"] == BACKUP_KEY_SHARE:
                own_key = self.store.identity.ed25519 if self.store.identity else None
                return self._backup_step(self.backup.offer_share(sender, payload, own_key))
        except UntrustedKeys:
            return Output()
        return Output()

    def _take_room_key(self, sender: DeviceKeys, payload: dict[str, Any]) -> Output:
        """Keep a room key; one from a device its user has not signed (yet) is kept aside
        and tried again whenever device lists arrive (section 4.6)."""
        if not sender.signed_by_user_key(self._user_key(sender.user)):
            self._aside = [*self._aside, (sender.peer, payload)][-MAX_KEYS_ASIDE:]
            return Output()
        room_keys.accept_room_key(
            payload, self.store.device, sender, self._user_key(sender.user), self.store.groups
        )
        return self._retry_held()

    def _retry_aside(self) -> Output:
        out = Output()
        aside, self._aside = self._aside, []
        for (user, device), payload in aside:
            sender = self._device_of(user, device)
            if sender is None:
                continue  # the device is gone: its key goes too
            try:
                out.extend(self._take_room_key(sender, payload))
            except UntrustedKeys:
                continue
        return out

    # --- verifications ----------------------------------------------------------------------

    def start_verification(self, user: str, device: str, kind: str, now: float) -> Output:
        """Start SAS with ``user``'s ``device`` (``kind``: ``device`` to approve one of our
        own new devices, ``contact`` to verify someone). ValueError for an unknown device,
        and for a device approval of another user's device."""
        peer = self._device_of(user, device)
        if peer is None:
            raise ValueError(f"{user}'s device {device} is not known: refresh the device list")
        txn, payloads = self.verifications.start(peer, kind, now)
        out = self._send_olm([(peer, p) for p in payloads])
        out.events.append(VerificationStarted(txn, user, device, kind))
        return out

    def query(self, users: Iterable[str]) -> Output:
        """Fetch ``users``' keys now (a ``keys_query``), e.g. to show a safety number
        before the first message to them."""
        return self._query(users)

    def accept_verification(self, txn: str, now: float) -> Output:
        return self._to_verifier(txn, self.verifications.accept(txn, now))

    def confirm_verification(self, txn: str, now: float) -> Output:
        """The user says the codes match."""
        peer = self.verifications.peer_of(txn)
        if peer is None:
            return Output()
        payloads, events = self.verifications.confirm(txn, now, self._user_key(peer.user))
        out = self._send_olm([(peer, p) for p in payloads])
        out.events.extend(events)
        return out

    def cancel_verification(self, txn: str) -> Output:
        """Cancel ``txn`` and tell the other device (its peer is looked up first: the
        flow is gone once cancelled)."""
        peer = self.verifications.peer_of(txn)
        payloads = self.verifications.cancel(txn)
        return self._send_olm([(peer, p) for p in payloads]) if peer is not None else Output()

    def tick(self, now: float) -> Output:
        """Call now and then: cancels verifications idle for 10 minutes, and replaces the
        fallback key once the published one is a week old (4.3)."""
        out = self._send_olm(list(self.verifications.expire(now)))
        if self._fallback_key_due(now):
            out.extend(self._upload(device_keys=False, left_on_server=None, new_fallback=True))
        return out

    def set_rooms(self, rooms: Iterable[str]) -> None:
        """The private rooms the user is a member of now (their names); call it whenever
        they change. A room key is forwarded to our other devices only for these rooms and
        for private-message conversations (4.6); for no room before the first call."""
        known = set()
        for name in rooms:
            try:
                known.add(e2e.conversation_id(room=name))
            except ValueError:
                continue
        self._rooms = frozenset(known)

    def _to_verifier(self, txn: str, payloads: list[dict[str, Any]]) -> Output:
        peer = self.verifications.peer_of(txn)
        return self._send_olm([(peer, p) for p in payloads]) if peer else Output()

    def _verification_step(self, sender: DeviceKeys, payload: Mapping[str, Any]) -> Output:
        user_keys = {
            user: self.directory.published_user_key(user) for user in {sender.user, self.me}
        }
        payloads, events = self.verifications.receive(sender, payload, self._now, user_keys)
        out = self._send_olm([(sender, p) for p in payloads])
        out.events.extend(events)
        if any(isinstance(e, Verified) and e.approved_here for e in events):
            out.extend(self._upload(device_keys=True, left_on_server=None))
        own_key = self._user_key(self.me)
        for peer, share in self.verifications.take_backup_shares():  # 4.13: with the approval
            out.extend(self._backup_step(self.backup.offer_share(peer, share, own_key)))
        return out

    def _answer_key_request(self, request: Mapping[str, Any], requester: DeviceKeys) -> Output:
        """Forward a key to our own device signed by the user key that THIS device holds; a
        device without it (unapproved, or its identity reset elsewhere) vouches for nobody."""
        if self.store.identity is None:
            return Output()
        conversation = request.get("conversation")
        if not isinstance(conversation, str) or (
            not conversation.startswith("pm:") and conversation not in (self._rooms or ())
        ):
            return Output()  # a room the user left (or was never in): its keys stay here
        answer = room_keys.forwarded_room_key(
            request, self.store.device, requester, self._user_key(self.me), self.store.groups
        )
        if answer is None:
            return Output()
        return self._send_olm([(requester, answer)])

    # --- the key backup (4.13: :mod:`.backup`) -----------------------------------------------

    def begin_backup_setup(self) -> str:
        """A new recovery key to show once; :class:`E2EError` if this device is not signed."""
        return self.backup.begin_setup()

    def cancel_backup_setup(self) -> None:
        """The set-up was closed: forget its recovery key (:meth:`KeyBackup.cancel_setup`)."""
        self.backup.cancel_setup()

    def finish_backup_setup(self, typed: str, password: str | None) -> Output:
        """The recovery key typed back: publish the backup (ValueError in words)."""
        return self._backup_step(self.backup.finish_setup(typed, password))

    def restore_with_recovery_key(self, text: str) -> Output:
        """Recover (and restore) with the recovery key typed in; RecoveryKeyTypo at once."""
        return self._backup_step(self.backup.recover(text))

    def _backup_step(self, step: BackupStep) -> Output:
        """Carry out what the key backup asked for, in its order."""
        out = Output(requests=list(step.requests), events=list(step.events))
        if step.upload_device_keys:  # the recovery gave us the user key: sign ourselves
            out.extend(self._upload(device_keys=True, left_on_server=None))
        if step.olm:
            out.extend(self._send_olm(step.olm))
        if step.query_own_keys:
            asked = self._query([self.me])
            self.backup.keys_query = asked.requests[-1]["id"]
            out.extend(asked)
        # Sessions imported, or the backup's status changed: what held messages say (4.9's
        # hint to approve this device or enter the recovery key) follows it.
        if step.retry_held or any(isinstance(e, BackupStatusChanged) for e in step.events):
            out.extend(self._retry_held())
        return out

    # --- encrypted messages -----------------------------------------------------------------

    def _conversation_of(self, message: Mapping[str, Any]) -> str | None:
        """The conversation a ``message`` / ``private`` push belongs to; None if its
        ``room``, ``from`` or ``to`` are not usable names."""
        try:
            if message.get("type") == "message":
                room = message.get("room")
                return e2e.conversation_id(room=room) if isinstance(room, str) else None
            offer = message.get("type") == "file_offer"  # always to us (4.12)
            pair = (message.get("from"), self.me if offer else message.get("to"))
            if not all(isinstance(name, str) for name in pair):
                return None
            return e2e.conversation_id(pm=(str(pair[0]), str(pair[1])))
        except ValueError:
            return None

    def _encrypted(self, message: Mapping[str, Any]) -> Output:
        """A ``message`` / ``private`` push with ``e2e``: its text, or why not (4.9). A push
        of the wrong shape is never an exception: it is shown as not verifiable."""
        conversation = self._conversation_of(message)
        sender = message.get("from")
        if conversation is None or not isinstance(sender, str) or not _well_formed(message["e2e"]):
            reason = Undecryptable.NOT_VERIFIED
            shown_as = conversation or ""
            return Output(events=[NotShown(shown_as, message.get("msg_id"), str(sender), reason)])
        held = _HeldMessage(conversation, message)
        out, settled = self._show(held, first_time=True)
        if not settled:
            self._held.append(held)
        return out

    def _show(self, held: _HeldMessage, first_time: bool) -> tuple[Output, bool]:
        """Show ``held`` if its session's checks pass (4.5), else say why (4.9); and
        whether it is settled (nothing that arrives later can change what it shows).

        The first time, an event always comes out (but for one wait: the session's
        sender never fetched, whose keys are asked first); later, only when what the
        user sees changes.
        """
        conversation, message = held.conversation, held.message
        sealed = message["e2e"]
        sender = str(message["from"])
        msg_id = message.get("msg_id")
        out = Output()
        entry = self.store.groups.inbound.get(
            (conversation, sealed["sender_key"], sealed["session_id"])
        )
        if entry is None:
            device = self._device_of(sender, sealed["device"])
            approved = device is None or device.signed_by_user_key(self._user_key(sender))
            sent_at = _ts_seconds(message.get("ts"))
            reason: Undecryptable | None = why_undecryptable(
                sent_at, self.store.created_at, approved, self.backup.in_use()
            )
            settled = False
            if first_time:
                out.extend(self._request_key(conversation, sealed))
                out.extend(self._backup_step(self.backup.look_up(sealed["session_id"])))
        else:
            if not self._own_session(entry) and entry.sender not in self.directory.users:
                if held.query is None:  # whose device is it? ask before saying anything
                    asked, held.query = self._query_sender(entry.sender)
                    out.extend(asked)
                if held.query in self._queries:
                    return out, False
            reason, settled = self._session_trust(entry, sealed)
            if reason is None:
                kind = e2e.MEGOLM_TEXT if message.get("type") != "file_offer" else MEGOLM_FILE
                try:
                    shown = self.store.groups.decrypt(
                        conversation, sender, sealed, str(msg_id), kind
                    )
                except DecryptionFailed:
                    reason, settled = Undecryptable.NOT_VERIFIED, True
                else:
                    if kind == MEGOLM_FILE:
                        out.events.append(Opened(conversation, str(msg_id), sender, shown.payload))
                    else:
                        out.events.append(Shown(conversation, msg_id, sender, shown.text))
                    return out, True
        if first_time or reason is not held.reason:
            assert reason is not None
            out.events.append(NotShown(conversation, msg_id, sender, reason))
        held.reason = reason
        return out, settled

    def _own_session(self, entry: InboundGroup) -> bool:
        """A session this very device made (it trusts itself)."""
        me = self.store.device
        return (entry.sender, entry.sender_device, entry.sender_ed25519) == (
            me.user,
            me.device,
            me.ed25519,
        )

    def _session_trust(
        self, entry: InboundGroup, sealed: Mapping[str, str]
    ) -> tuple[Undecryptable | None, bool]:
        """Whether a session's messages may show NOW (4.5): it came from a device that is
        still listed and signed by its user's current user key, with the keys it had.

        (None, True) if so; else the reason, and whether it is for good (a device gone from
        a fresh list never comes back; an unsigned one may be signed later).
        """
        if self._own_session(entry):
            # Ours only with our curve25519 too: a restored or forwarded copy may name this
            # device with another key (4.5: sender_key is that device's curve25519).
            mine = sealed["sender_key"] == self.store.device.curve25519
            return (None, True) if mine else (Undecryptable.NOT_VERIFIED, True)
        device = self._device_of(entry.sender, entry.sender_device)
        if device is None:
            gone = entry.sender in self.directory.users and entry.sender not in self.directory.stale
            return Undecryptable.SENDER_NOT_VERIFIED, gone
        if (device.ed25519, device.curve25519) != (entry.sender_ed25519, sealed["sender_key"]):
            return Undecryptable.NOT_VERIFIED, True
        if not device.signed_by_user_key(self._user_key(entry.sender)):
            return Undecryptable.SENDER_NOT_VERIFIED, False
        return None, True

    def _request_key(self, conversation: str, sealed: Mapping[str, Any]) -> Output:
        wanted = (conversation, str(sealed.get("sender_key")), str(sealed.get("session_id")))
        if wanted in self._requested:
            return Output()
        self._requested.add(wanted)
        request = room_keys.room_key_request(conversation, sealed, self.store.device.device)
        others = [
            device
            for device in self._signed_devices([self.me])
            if device.device != self.store.device.device
        ]
        return self._send_olm([(device, dict(request)) for device in others])

    def _retry_held(self) -> Output:
        """Show again what is held, now that keys or device lists changed."""
        out = Output()
        still = []
        for held in self._held:
            step, settled = self._show(held, first_time=False)
            out.extend(step)
            if not settled:
                still.append(held)
        self._held = still
        return out
