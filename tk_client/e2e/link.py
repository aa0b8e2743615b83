"""The end-to-end engine on a live session: the store file, request ids, first-device set-up.

:class:`~.engine.E2EEngine` is sans-I/O; this is the one place that joins it to a
:class:`~tk_client.session.ChatSession`. It runs on the user interface's thread (the
controller calls it with the session's events), so the engine and its store are never
touched by two threads. What it adds:

- **The store on disk.** One store file per (server, user, device) in the client's
  folder, under the pickle key of :mod:`.keyfile`; saved after every call that changed
  it and *before* the requests that call produced are sent, so what the server learns
  (an ack, a message encrypted at some Megolm index) is never ahead of the disk.
- **Requests through the outbox.** The engine's requests go out as the session's own
  requests (queued while offline, their answers matched by ``ref``); this maps the
  session's ids back to the engine's. ``to_device_ack`` is not a request: it is sent as
  is, and dropped while offline (the queue is pushed again on the next login).
- **The first device's set-up (4.2).** A device whose user has no user key yet makes it:
  device keys uploaded, the user key published, the keys uploaded again signed. A device
  whose user has one waits for approval from a signed device (4.7), or resets the identity.
- **Sends tied to the lines shown.** :meth:`E2ELink.encrypt` may have to wait for device
  lists and one-time keys; the ``send``/``pm`` leaves later, and ``on_request`` then gets
  its :class:`RequestStatus`, so the controller follows it like any other message.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chatproto import e2e
from chatproto.e2e_files import file_plaintext
from chatproto.unpadded_b64 import decode as b64decode

from ..account import devices_from_wire
from ..events import NotConnected, RequestState, RequestStatus
from .backup import BackupStatus
from .contacts import TrustState
from .engine import E2EEngine, Event, Notice, NotShown, Output, Shown
from .errors import E2EError
from .files import (
    FileOfferRefused,
    FileOfferVerified,
    FileOfferWaiting,
    Opened,
    Sealed,
    file_message_id,
    transfer_of,
    verdict,
)
from .identity import UserIdentity
from .keyfile import load_or_create_pickle_key
from .megolm import Undecryptable
from .store import CryptoStore
from .verification import Verified

STORE_FOLDER = "e2e"
SETUP_CHECK = "setup"  # the link's own keys_query of the user's own keys (4.2)
DEVICE_NAMES = "names"  # the link's own ``devices`` request (3.4): new devices' names

WAIT_FOR_APPROVAL = (
    "This device is new and cannot read encrypted conversations yet. Open the chat on a "
    "device you already use to approve this one (it shows a code to compare), or reset "
    "your identity (/reset-identity in the terminal client; your contacts are told)."
)
IDENTITY_CREATED = (
    "Your encryption identity was created on this device: private conversations are end "
    "to end encrypted from now on."
)
IDENTITY_RESET = (
    "Your identity was reset: this device holds the new key. Your other devices must be "
    "approved again, and your contacts are told that your identity changed."
)


OnRequest = Callable[[RequestStatus | None], None]
"""Gets a message's ``send``/``pm`` request when it leaves, or None if it never will."""
OnSealed = Callable[[dict[str, Any]], None]
"""Gets a file offer's ``e2e`` once the room keys went (4.12)."""


class NotApproved(E2EError):
    """This device has no user key yet: it cannot send encrypted messages (words say why)."""


class SessionLike(Protocol):
    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus: ...
    def send_message(self, message: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class OwnDeviceToApprove:
    """This (signed) device saw a device of its own user that nobody approved yet (4.7)."""

    device: str
    name: str | None = None  # the name it was remembered by (3.4), when the server said

    @property
    def label(self) -> str:
        """How a person knows the device: its name, with the id that commands take."""
        return f"{self.name} ({self.device})" if self.name else self.device

    @property
    def text(self) -> str:
        return (
            f"A new device, {self.label}, logged in to your account. If it is yours, "
            f"approve it: /approve {self.device} in the terminal client, or the Approve "
            "button, then compare the codes on both devices."
        )


@dataclass(frozen=True)
class KeysFetched:
    """The server's answer with these users' keys arrived (a safety number can be shown)."""

    users: tuple[str, ...]


LinkEvent = (
    Event
    | OwnDeviceToApprove
    | KeysFetched
    | FileOfferVerified
    | FileOfferRefused
    | FileOfferWaiting
)
"""What the link reports: the engine's events, and own devices waiting for approval."""


@dataclass(frozen=True)
class DeviceView:
    """One device of a user, as ``/devices`` and the Verify dialog show it."""

    user: str
    device: str
    ed25519: str
    signed: bool
    this_device: bool

    @property
    def fingerprint(self) -> str:
        """The device's ed25519 key in groups of four, for reading aloud."""
        return " ".join(self.ed25519[i : i + 4] for i in range(0, len(self.ed25519), 4))


@dataclass(frozen=True)
class LockState:
    """What a conversation's lock says: encrypted, and how far its members are verified."""

    verified: tuple[str, ...]
    unverified: tuple[str, ...]
    changed: tuple[str, ...]
    paused: tuple[str, ...]  # verified contacts whose identity changed: sending waits

    @property
    def all_verified(self) -> bool:
        return not self.unverified and not self.changed

    @property
    def text(self) -> str:
        if self.paused:
            return f"end-to-end encrypted; sending paused: {', '.join(self.paused)} changed"
        if self.changed:
            return f"end-to-end encrypted; identity changed: {', '.join(self.changed)}"
        if not self.unverified:
            return "end-to-end encrypted; verified"
        return f"end-to-end encrypted; not verified: {', '.join(self.unverified)}"


def store_path(folder: Path, server: str, user: str, device: str) -> Path:
    """The store file of one device: named by a hash, so no name can escape the folder."""
    digest = hashlib.sha256(f"{server}\n{user}\n{device}".encode()).hexdigest()[:32]
    return folder / STORE_FOLDER / f"{digest}.json"


class E2ELink:
    """One logged-in device's engine, its store file, and the session it talks through."""

    def __init__(
        self,
        session: SessionLike,
        store: CryptoStore,
        path: Path,
        pickle_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.store = store
        self.path = path
        self._pickle_key = pickle_key
        self._clock = clock
        self._ids = 0
        self.engine = E2EEngine(store, new_id=self._new_id)
        self._by_request: dict[str, str] = {}  # the session's request id -> the engine's
        self._link_requests: dict[str, str] = {}  # the session's request id -> link step
        self._sends: deque[tuple[str, OnRequest]] = deque()
        self._before_setup: list[tuple[str, list[str], str, OnRequest]] = []
        self._announced: set[str] = set()  # own unsigned devices already shown
        self._unnamed: list[str] = []  # ... waiting for the devices list to name them
        self._setup_pending = False
        self._setting_up = False  # from the set-up check until the user key is settled
        self._resetting: UserIdentity | None = None
        self._seals: dict[str, OnSealed] = {}  # transfer -> who sends its file offer
        self._seals_before_setup: list[Callable[[], list[LinkEvent]]] = []
        self._offers: dict[str, Mapping[str, Any]] = {}  # transfer -> e2e offer being opened

    @classmethod
    def open(
        cls,
        session: SessionLike,
        folder: Path,
        server: str,
        user: str,
        device: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> E2ELink:
        """The device's store from ``folder``, or a new one. :class:`StoreError` (its words
        say what to do) when the key file or the store cannot be used."""
        pickle_key = load_or_create_pickle_key(folder)
        path = store_path(folder, server, user, device)
        if path.exists():
            store = CryptoStore.load(path, pickle_key)
        else:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            store = CryptoStore.create(user, device, clock())
            store.save(path, pickle_key)
        return cls(session, store, path, pickle_key, clock=clock)

    @classmethod
    def opener(cls, session: Any, folder: Path | None = None) -> Callable[[str, str], E2ELink]:
        """How a controller opens the link of a :class:`~tk_client.session.ChatSession`
        after a login: the store in the client's folder (by default the folder of the
        session's known servers), named by the server's key, the user and the device."""
        where = folder if folder is not None else Path(session.known_servers.path).parent

        def open_link(user: str, device: str) -> E2ELink:
            return cls.open(session, where, str(session.fingerprint or ""), user, device)

        return open_link

    # --- state for the views ----------------------------------------------------------------

    @property
    def user(self) -> str:
        return self.store.device.user

    @property
    def device(self) -> str:
        return self.store.device.device

    @property
    def busy(self) -> bool:
        """Messages typed are still waiting here (for the set-up, device lists or keys):
        a client that is about to quit waits for them."""
        return bool(self._before_setup) or bool(self._sends)

    @property
    def can_send(self) -> bool:
        """Approved, or the first login's set-up is on its way (what is sent waits for it)."""
        return self.store.identity is not None or self._setting_up

    @property
    def backup_status(self) -> BackupStatus:
        """The key backup as this device knows it (4.13); UNKNOWN until the server said."""
        return self.engine.backup.status

    @property
    def backup_info(self) -> tuple[int, str | None, str | None] | None:
        """(version, when it was made as the server's ``ts``, the device that made it) of
        the current key backup; None when there is none or it is not known yet."""
        return self.engine.backup.info

    @property
    def approved(self) -> bool:
        """This device holds the user key: it reads and sends encrypted messages."""
        return self.store.identity is not None

    def lock(self, members: Iterable[str]) -> LockState:
        """The verification state of a conversation with ``members`` (4.8)."""
        verified, unverified, changed, paused = [], [], [], []
        for user in sorted(set(members) - {self.user}):
            contact = self.store.contacts.get(user)
            if contact is None or contact.state is TrustState.TOFU:
                unverified.append(user)
            elif contact.state is TrustState.VERIFIED:
                verified.append(user)
            else:
                changed.append(user)
                if contact.blocks_sending:
                    paused.append(user)
        return LockState(tuple(verified), tuple(unverified), tuple(changed), tuple(paused))

    def safety_number(self, user: str) -> str | None:
        """The 60 digits to compare with ``user`` in 12 groups of 5, or None while either
        user key is unknown (this device not approved, or ``user``'s keys not fetched)."""
        mine = self.store.identity.ed25519 if self.store.identity else None
        theirs = self.store.contacts.current_key(user)
        if mine is None or theirs is None or user == self.user:
            return None
        digits = e2e.safety_number(self.user, b64decode(mine), user, b64decode(theirs))
        return " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))

    def devices(self, user: str) -> list[DeviceView]:
        """``user``'s devices as last fetched (empty before the first ``keys`` answer)."""
        entry = self.engine.directory.users.get(user)
        if entry is None:
            return []
        own_key = self.store.identity.ed25519 if self.store.identity else None
        signed = {d.device for d in entry.signed_devices(own_key if user == self.user else None)}
        return [
            DeviceView(
                user,
                d.device,
                d.ed25519,
                d.device in signed,
                user == self.user and d.device == self.device,
            )
            for _, d in sorted(entry.devices.items())
        ]

    # --- the session's side ------------------------------------------------------------------

    def logged_in(self) -> list[LinkEvent]:
        """After every ``login_ok``: publish keys, catch up on device lists, and set the
        device up (4.2) if it has no user key yet."""
        out = self.engine.login()
        if self.store.identity is None and not self._setup_pending:
            self._setup_pending = self._setting_up = True
            request = {"type": "keys_query", "users": [self.user]}
            out.requests.append({**request, "id": f"{SETUP_CHECK}:{self._new_id()}"})
        return self._flush(out)

    def owns(self, request_id: str) -> bool:
        """True for a session request that this link sent (its answer comes here)."""
        return request_id in self._by_request or request_id in self._link_requests

    def answered(self, status: RequestStatus, answer: Mapping[str, Any] | None) -> list[LinkEvent]:
        """A :class:`RequestUpdate` for one of our requests (:meth:`owns`)."""
        if status.state not in (RequestState.DONE, RequestState.FAILED):
            return []
        step = self._link_requests.pop(status.id, None)
        engine_id = self._by_request.pop(status.id, None)
        if status.state is RequestState.FAILED:
            reply: Mapping[str, Any] = {
                "type": "error",
                # Lost with the connection after it left: it may have been done.
                "code": status.code or ("uncertain" if status.uncertain else "not_sent"),
                "message": status.error or "",
            }
        else:
            reply = answer or {}
        if step is not None:
            return self._setup_step(step, reply)
        if engine_id is None:
            return []
        events = self._flush(self.engine.receive({**reply, "ref": engine_id}, self._clock()))
        users = reply.get("users") if reply.get("type") == "keys" else None
        if isinstance(users, Mapping):  # the only answer that lists devices: new ones of ours?
            events.append(KeysFetched(tuple(sorted(str(u) for u in users))))
            events.extend(self._own_devices_to_approve())
        return events

    def pushed(self, message: Mapping[str, Any]) -> list[LinkEvent]:
        """A push of section 4 (``to_device``, ``devices_changed``, ``backup_changed``) or a
        ``message`` / ``private`` with ``e2e``: what it made readable, and notices."""
        out = self.engine.receive(message, self._clock())
        return self._flush(out, save=message.get("type") not in ("message", "private"))

    def read(self, item: Mapping[str, Any]) -> list[LinkEvent]:
        """A history entry with ``e2e`` (the fields of ``message`` or ``private``)."""
        kind = "message" if "room" in item else "private"
        return self._flush(self.engine.receive({**item, "type": kind}, self._clock()), save=False)

    # --- the user's side ---------------------------------------------------------------------

    def encrypt(
        self,
        conversation: str,
        members: Iterable[str],
        text: str,
        on_request: OnRequest,
    ) -> list[LinkEvent]:
        """Send ``text`` to ``conversation``; ``on_request`` gets the ``send``/``pm``
        request once it leaves (at once, or when device lists and keys have come).

        :class:`~.errors.SendingBlocked` (its words say what to do) when a verified
        member's identity changed; an :class:`~.errors.E2EError` when this device cannot
        send yet (not approved)."""
        if self.store.identity is None:
            if not self._setting_up:
                raise NotApproved(WAIT_FOR_APPROVAL)
            # The first login's set-up is on its way: the message leaves when it is done.
            self._before_setup.append((conversation, list(members), text, on_request))
            return []
        out = self.engine.encrypt_for(conversation, members, text, self._clock())
        self._sends.append((conversation, on_request))
        return self._flush(out)

    def seal_file(
        self,
        peer: str,
        *,
        transfer: str,
        name: str,
        size: int,
        sha256: str,
        key: bytes,
        on_sealed: OnSealed,
        on_failed: Callable[[str], None],
    ) -> list[LinkEvent]:
        """Seal a file offer's ``file`` plaintext for ``peer`` (4.12) as a Megolm message of
        ``pm:<me>:<peer>``, its room keys shared as for a private message; ``on_sealed``
        gets the offer's ``e2e`` once they went (at once, or after device lists and keys;
        during the first login's set-up, after it), ``on_failed`` words if it never will.

        :class:`NotApproved` (with words) when this device cannot send encrypted yet;
        :class:`~.errors.SendingBlocked` when the peer's verified identity changed."""
        if self.store.identity is None:
            if not self._setting_up:
                raise NotApproved(WAIT_FOR_APPROVAL)

            def later() -> list[LinkEvent]:
                try:
                    return self.seal_file(
                        peer,
                        transfer=transfer,
                        name=name,
                        size=size,
                        sha256=sha256,
                        key=key,
                        on_sealed=on_sealed,
                        on_failed=on_failed,
                    )
                except E2EError as exc:
                    on_failed(str(exc))
                    return []

            self._seals_before_setup.append(later)
            return []
        conversation = e2e.conversation_id(pm=(self.user, peer))
        payload = file_plaintext(
            conversation=conversation,
            sender=self.user,
            sender_device=self.device,
            transfer=transfer,
            name=name,
            size=size,
            sha256=sha256,
            key=key,
        )
        out = self.engine.seal_for(conversation, [peer], payload, transfer, self._clock())
        self._seals[transfer] = on_sealed
        return self._flush(out)

    def open_file_offer(self, offer: Mapping[str, Any]) -> list[LinkEvent]:
        """A relayed ``file_offer`` with ``e2e``: :class:`FileOfferVerified` or
        :class:`FileOfferRefused` now, or later (from another call) once its key came."""
        transfer = offer.get("transfer")
        if not isinstance(transfer, str):
            return []
        self._offers[transfer] = offer
        return self._flush(self.engine.open_file_offer(offer, self._clock()), save=False)

    def drop_file_offer(self, transfer: str) -> None:
        """The offer ended before its verdict (cancelled, expired, disconnected): nothing of
        it stays here or in the engine, and a key that comes later shows nothing."""
        self._offers.pop(transfer, None)
        self.engine.forget_held(file_message_id(transfer))

    def start_verification(self, user: str, device: str, kind: str) -> list[LinkEvent]:
        """Start SAS with ``user``'s ``device``: ``device`` approves one of our devices,
        ``contact`` verifies someone. ValueError (in words) for an unknown device."""
        return self._flush(self.engine.start_verification(user, device, kind, self._clock()))

    def accept_verification(self, txn: str) -> list[LinkEvent]:
        return self._flush(self.engine.accept_verification(txn, self._clock()))

    def confirm_verification(self, txn: str) -> list[LinkEvent]:
        """The user says the codes match."""
        return self._flush(self.engine.confirm_verification(txn, self._clock()))

    def cancel_verification(self, txn: str) -> list[LinkEvent]:
        return self._flush(self.engine.cancel_verification(txn))

    def mark_verified(self, user: str) -> None:
        """The user compared the safety number with ``user`` and it matched (4.8)."""
        key = self.store.contacts.current_key(user)
        if key is None:
            raise ValueError(f"{user}'s keys are not known yet; try again in a moment")
        self.store.contacts.verify(user, key)
        self._save()

    def acknowledge(self, user: str) -> None:
        """The user accepts ``user``'s changed identity: sending to them resumes."""
        self.store.contacts.acknowledge(user)
        self._save()

    def reset_identity(self) -> list[LinkEvent]:
        """Make a new user key (4.7): this device holds it; the others need approval again."""
        published = self.engine.directory.published_user_key(self.user)
        version = (published.version + 1) if published is not None else 1
        identity = UserIdentity.generate(self.user, version)
        self._resetting = identity
        request = {
            "type": "user_key_publish",
            "user_key": identity.published_by(self.store.device).to_wire(),
            "reset": published is not None,
        }
        return self._send_link_request("reset", request)

    def begin_backup_setup(self) -> str:
        """A new recovery key, formatted to show once (nothing is published yet: the user
        types it back into :meth:`finish_backup_setup`). :class:`~.errors.E2EError` in
        words if this device is not approved."""
        return self.engine.begin_backup_setup()

    def cancel_backup_setup(self) -> None:
        """The set-up window or dialog closed: the recovery key shown is forgotten (a
        publish already sent still reports its answer)."""
        self.engine.cancel_backup_setup()

    def finish_backup_setup(self, typed: str, password: str | None) -> list[LinkEvent]:
        """The user typed the recovery key back: publish the backup. ValueError in words if
        it is not the key shown (spaces and case ignored), or if a backup exists and no
        ``password`` was given (replacing it is a reset). :class:`BackupEnabled` or a
        :class:`BackupProblem` follows with the server's answer."""
        return self._flush(self.engine.finish_backup_setup(typed, password))

    def restore_with_recovery_key(self, text: str) -> list[LinkEvent]:
        """Restore the history (and, on a device not approved yet, the identity) with the
        recovery key typed in. :class:`RecoveryKeyTypo` at once for a typo; the rest comes
        as events (:class:`BackupRestored`, or a :class:`BackupProblem` in words)."""
        return self._flush(self.engine.restore_with_recovery_key(text))

    def fetch_keys(self, user: str) -> list[LinkEvent]:
        """Ask for ``user``'s keys now; :class:`KeysFetched` says when they are here."""
        return self._flush(self.engine.query([user]))

    def peer_of(self, txn: str) -> tuple[str, str] | None:
        """(user, device) of the verification ``txn``, while it is in progress."""
        peer = self.engine.verifications.peer_of(txn)
        return (peer.user, peer.device) if peer is not None else None

    def tick(self) -> list[LinkEvent]:
        """Call now and then: verifications idle for 10 minutes are cancelled, and a
        week-old fallback key is replaced."""
        return self._flush(self.engine.tick(self._clock()))

    def set_rooms(self, private_rooms: Iterable[str]) -> None:
        """The private rooms the user is a member of now (names); call it whenever they
        change. Our other devices get forwarded keys only for these (and private chats)."""
        self.engine.set_rooms(private_rooms)

    # --- inside ------------------------------------------------------------------------------

    def _new_id(self) -> str:
        self._ids += 1
        return f"e{self._ids}"

    def _save(self) -> None:
        self.store.save(self.path, self._pickle_key)

    def _flush(self, out: Output, *, save: bool = True) -> list[LinkEvent]:
        """Save the store, then send ``out``'s requests; the events, with ours added.

        ``save`` False: reading a message changed nothing that must survive a crash
        (Megolm decryption does not ratchet; the replay memory goes with the next save),
        so the store (rewritten whole: milliseconds for hundreds of sessions) is kept as
        it is, unless the reading asked for something (a key request: Olm ratchets)."""
        if save or out.requests:
            self._save()
        unsent = [request["id"] for request in out.requests if not self._send(request)]
        events: list[LinkEvent] = []
        for event in out.events:
            if isinstance(event, Sealed | Opened) or (
                isinstance(event, NotShown) and transfer_of(event.msg_id) is not None
            ):
                events.extend(self._file_event(event))
            else:
                events.append(event)
        for event in out.events:
            if isinstance(event, Verified) and event.approved_here:
                events.append(Notice("This device was approved: it reads encrypted messages."))
        for engine_id in unsent:  # refused at once, offline: the engine hears it as an error
            refusal = {"type": "error", "ref": engine_id, "code": "not_sent"}
            events.extend(self._flush(self.engine.receive(refusal, self._clock())))
        return events

    def _file_event(self, event: Sealed | Opened | NotShown) -> list[LinkEvent]:
        """4.12's engine events: a sealed offer goes to its sender; an opened one is checked
        against its offer; one that failed is refused; one whose key is missing waits."""
        if isinstance(event, Sealed):
            on_sealed = self._seals.pop(event.tag, None)
            if on_sealed is not None:
                on_sealed(event.e2e)
            return []
        transfer = transfer_of(event.msg_id)
        offer = self._offers.get(transfer) if transfer is not None else None
        if offer is None:
            return []  # it ended meanwhile
        if isinstance(event, Opened):
            del self._offers[str(transfer)]
            # Its message index is now seen (4.5's replay memory, which refuses it again):
            # saved at once, so a restart does not forget it (an offer is rare, unlike a
            # message read, whose save waits for the next one).
            self._save()
            return [verdict(offer, event)]
        if event.reason is Undecryptable.NOT_VERIFIED:
            del self._offers[str(transfer)]
            return [FileOfferRefused(str(transfer), event.sender)]
        # Waiting for its key (asked already), or for its sender's device: one line says so.
        return [FileOfferWaiting(str(transfer), event.sender, event.reason)]

    def _send(self, request: Mapping[str, Any]) -> bool:
        """Send one of the engine's requests; False if it was refused at once (offline,
        and not one to wait in the outbox)."""
        fields = {k: v for k, v in request.items() if k not in ("type", "id")}
        kind = str(request["type"])
        if "id" not in request:  # to_device_ack: no answer, nothing to queue
            # Offline: the queue is pushed again on the next login, and acked then.
            with contextlib.suppress(NotConnected):
                self.session.send_message(dict(request))
            return True
        engine_id = str(request["id"])
        if engine_id.startswith(f"{SETUP_CHECK}:"):
            status = self.session.request(kind, **fields)
            self._link_requests[status.id] = SETUP_CHECK
            return True
        # A password never waits in an outbox through an outage (as change_password).
        durable = "password" not in fields
        try:
            status = self.session.request(kind, durable=durable, **fields)
        except NotConnected:
            if durable:
                raise
            return False
        if kind in ("send", "pm"):
            # The answer is the controller's (ack, or a refusal shown on the line).
            _conversation, on_request = self._sends.popleft()
            on_request(status)
            return True
        self._by_request[status.id] = engine_id
        return True

    def _send_link_request(self, step: str, request: dict[str, Any]) -> list[LinkEvent]:
        status = self.session.request(str(request.pop("type")), **request)
        self._link_requests[status.id] = step
        return []

    def _setup_step(self, step: str, reply: Mapping[str, Any]) -> list[LinkEvent]:
        """The answers of the first device's set-up (4.2), of an identity reset, and of
        the ``devices`` list that names new devices to approve."""
        if step == DEVICE_NAMES:
            names = {d.device: d.name for d in devices_from_wire(reply.get("devices"))}
            unnamed, self._unnamed = self._unnamed, []
            return [OwnDeviceToApprove(device, names.get(device)) for device in unnamed]
        if step == SETUP_CHECK:
            self._setup_pending = False
            if reply.get("type") != "keys" or self.store.identity is not None:
                # Offline or refused: the next login checks again; what was typed waits.
                return []
            users = reply.get("users")
            entry = users.get(self.user) if isinstance(users, Mapping) else None
            if isinstance(entry, Mapping) and entry.get("user_key") is not None:
                return [Notice(WAIT_FOR_APPROVAL), *self._setup_over()]
            identity = UserIdentity.generate(self.user)
            self._resetting = identity
            request = {
                "type": "user_key_publish",
                "user_key": identity.published_by(self.store.device).to_wire(),
                "reset": False,
            }
            return self._send_link_request("publish", request)
        made, self._resetting = self._resetting, None
        if reply.get("type") != "ok" or made is None:
            if step == "publish":  # another device published first (conflict): approve
                return [Notice(WAIT_FOR_APPROVAL), *self._setup_over()]
            words = reply.get("message") or "the server refused it"
            return [Notice(f"The identity was not reset: {words}.")]
        self.store.identity = made
        self._save()
        events = self._flush(self.engine.login())  # the device keys again, now signed
        notice = Notice(IDENTITY_CREATED if step == "publish" else IDENTITY_RESET)
        return [*events, notice, *self._setup_over()]

    def _setup_over(self) -> list[LinkEvent]:
        """The set-up settled: send what was typed meanwhile, or give it up (unapproved)."""
        self._setting_up = False
        waiting, self._before_setup = self._before_setup, []
        events: list[LinkEvent] = []
        for conversation, members, text, on_request in waiting:
            if self.store.identity is None:
                on_request(None)
                continue
            events.extend(self.encrypt(conversation, members, text, on_request))
        sealing, self._seals_before_setup = self._seals_before_setup, []
        for seal in sealing:
            events.extend(seal())
        return events

    def _own_devices_to_approve(self) -> list[LinkEvent]:
        if self.store.identity is None:
            return []
        new = [
            device.device
            for device in self.devices(self.user)
            if not (device.signed or device.this_device or device.device in self._announced)
        ]
        if not new:
            return []
        self._announced.update(new)
        asked = bool(self._unnamed)
        self._unnamed.extend(new)
        # Ask the account's device list (3.4) for their names; announced with the answer.
        return [] if asked else self._send_link_request(DEVICE_NAMES, {"type": "devices"})


__all__ = [
    "DeviceView",
    "E2ELink",
    "FileOfferRefused",
    "FileOfferVerified",
    "FileOfferWaiting",
    "LockState",
    "NotApproved",
    "NotShown",
    "Notice",
    "OwnDeviceToApprove",
    "Shown",
]
