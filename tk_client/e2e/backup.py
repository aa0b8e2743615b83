"""Key backup and the recovery key (docs/protocol.md section 4.13), for one device, sans I/O.

The engine (:class:`~.engine.E2EEngine`) owns one :class:`KeyBackup`, feeds it the answers
to the requests it made (``backup_get``, ``backup_publish``, ``backup_put``,
``backup_fetch``) and the ``backup_changed`` push, and applies each :class:`Step` it
returns: requests to send, events to show, and what only the engine can do (Olm messages
to our own devices, this device's keys uploaded again, the held messages read again).

What it does:

- **Status.** ``backup_get`` at every login (requests still unanswered from before are
  forgotten then, but a publish) says whether a backup exists and whether the
  key this device holds (:class:`~.backup_state.BackupState`, sealed in the store) is the
  current backup's. A backup is used (uploaded to, trusted) only while its
  ``signatures.user`` is valid for the user key: the one this device holds, else the
  published one.
- **Upload.** While it holds a usable key, every Megolm session the device accepts (its own
  outbound sessions' copies, each ``room_key`` and ``forwarded_room_key`` that passed 4.6)
  is sealed and uploaded, at most 100 per ``backup_put``, one request at a time; the
  uploaded session ids are remembered per version. ``conflict`` (the backup was reset)
  fetches the backup again.
- **Sharing.** The backup key comes in ``user_key_share`` (an approval) or
  ``backup_key_share`` from our own signed devices only, and is kept only if its public
  half is the current backup's and the backup's signature is valid. Then the device
  restores: every page of ``backup_sessions``, each blob opened (one that fails is skipped
  and counted), each session imported as a forwarded key is (its original sender
  recorded; 4.5's checks apply when a message is read), and the held messages read again.
- **Recovery.** On a device without another one, the recovery key typed in opens the
  backup's ``identity``: if it is the user's current user key, the device keeps it and
  signs itself (as after an approval), then restores. A wrong key changes nothing.
- **Set-up and reset.** A signed device makes a recovery key, shows it once, publishes
  the backup when the user typed the key back (a reset needs the password; the recovery
  key is forgotten once the publish is sent, or when the set-up is cancelled), then shares
  the key with its other signed devices and uploads every session it holds. After an
  identity reset on a device that holds the key, the backup is updated (same version, new
  identity and signature). ``backup_changed`` (a reset elsewhere) stops the uploads; the
  old key is dropped once ``backup_get`` shows a newer backup signed by our user key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import vodozemac

from chatproto import backup as wire
from chatproto import crypto_utils
from chatproto.backup import BackupKey, BlobRejected, RecoveryKeyTypo
from chatproto.unpadded_b64 import decode as b64decode

from .errors import E2EError
from .identity import UserIdentity
from .keys import DeviceKeys
from .megolm import InboundId
from .store import CryptoStore

BACKUP_KEY_SHARE = "backup_key_share"  # the Olm plaintext type (4.4) that carries the key
FETCH_LIMIT = wire.MAX_FETCH_LIMIT

# Session ids are unpadded base64 of 32 bytes: 42 characters of the whole alphabet, then one
# that holds the last 4 bits (its 2 low bits zero). Both in ASCII order, as the server pages.
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ANY = "".join(sorted(_B64))
_LAST = "".join(sorted(c for i, c in enumerate(_B64) if i % 4 == 0))
_SESSION_ID_LENGTH = 43

# --- words for the user (4.13's where it gives them) ---------------------------------------

NO_BACKUP = "There is no key backup on the server."
KEY_MISMATCH = "This recovery key does not match your key backup. Nothing was changed."
BACKUP_UNREADABLE = (
    "The key backup on the server could not be verified with this recovery key. "
    "Nothing was changed."
)
OLD_IDENTITY = (
    "The key backup holds an identity that was reset since. Approve this device from "
    "another one, then enter the recovery key there to bring the backup up to date. "
    "Nothing was changed."
)
NOT_SIGNED = (
    "This device is not approved yet: approve it from another device, or enter your "
    "recovery key, before you turn on key backup."
)
NOT_THE_KEY_SHOWN = (
    "That is not the recovery key shown: check it for a typo and type it again "
    "(spaces and case do not matter)."
)
NOTHING_TO_CONFIRM = (
    "No recovery key is waiting to be confirmed: start the key backup set-up again."
)
RESET_NEEDS_CREDENTIALS = (
    "A key backup exists already: type your password to replace it (your old recovery key "
    "will then stop working)."
)
CREDENTIALS_REFUSED = "The password is wrong: the key backup was not changed."
CHANGED_MEANWHILE = (
    "Your key backup was changed from another device meanwhile: look at it again, then retry."
)
NOT_CONNECTED = "Not connected to the server: the key backup was not changed; try again."
UNCERTAIN = (
    "The connection was lost while the key backup was being changed: it may or may not "
    "have changed. Look at Key backup (/backup) once you are connected again."
)
RECOVERED_HERE = (
    "This device was approved with your recovery key: it reads encrypted messages, and "
    "your history is being restored from the key backup."
)


class BackupStatus(Enum):
    """What this device knows of the user's key backup."""

    UNKNOWN = "unknown"  # no answer to backup_get yet
    NONE = "none"  # no backup on the server
    ON = "on"  # this device holds the current backup's key and uses the backup
    NEEDS_KEY = "needs_key"  # a backup exists; this device lacks its key (or cannot use it)


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupEnabled:
    """A new backup (``version``) was published from this device: it is on."""

    version: int

    @property
    def text(self) -> str:
        return (
            "Key backup is on: keep your recovery key safe. With it, a new device reads your "
            "history even when no other device is left."
        )


@dataclass(frozen=True)
class BackupRestoreProgress:
    """Restoring: ``done`` backed-up keys read so far (``total`` when known)."""

    done: int
    total: int | None = None


@dataclass(frozen=True)
class BackupRestored:
    """The restore is over: ``restored`` keys imported, ``skipped`` that did not verify."""

    restored: int
    skipped: int

    @property
    def text(self) -> str:
        words = f"{self.restored} keys were restored from the key backup."
        if self.skipped:
            words += f" {self.skipped} keys in the backup could not be verified and were skipped."
        return words


@dataclass(frozen=True)
class BackupProblem:
    """Something about the backup went wrong; ``text`` says what, and what to do."""

    text: str


@dataclass(frozen=True)
class BackupChanged:
    """A new backup (``version``: 1 the first, then a reset) from ``device`` (``name``)."""

    version: int
    device: str
    name: str
    by_me: bool

    @property
    def text(self) -> str:
        if self.by_me:
            return "Your key backup was reset from this device."
        label = f"{self.name} ({self.device})" if self.name else self.device
        if not self.reset:
            return f"Key backup was turned on from {label}."
        return f"Your key backup was reset from {label}. Your old recovery key no longer works."

    @property
    def reset(self) -> bool:
        """A new backup replaced one (version 1 is the first: no old recovery key)."""
        return self.version > 1


@dataclass(frozen=True)
class BackupStatusChanged:
    """:attr:`KeyBackup.status` changed (a view that shows it redraws)."""

    status: BackupStatus


@dataclass(frozen=True)
class BackupRecovered:
    """The recovery key gave this device the user key: it is approved (signed) now."""

    text: str = RECOVERED_HERE


BackupEvent = (
    BackupEnabled
    | BackupRestoreProgress
    | BackupRestored
    | BackupProblem
    | BackupChanged
    | BackupRecovered
    | BackupStatusChanged
)


@dataclass
class Step:
    """What one call produced, for the engine to carry out in this order."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    events: list[BackupEvent] = field(default_factory=list)
    olm: list[tuple[DeviceKeys, dict[str, Any]]] = field(default_factory=list)
    upload_device_keys: bool = False  # this device just got the user key: sign itself
    query_own_keys: bool = False  # fetch our user's keys, then call keys_arrived
    retry_held: bool = False  # sessions were imported: read the held messages again

    def extend(self, other: Step) -> None:
        self.requests.extend(other.requests)
        self.events.extend(other.events)
        self.olm.extend(other.olm)
        self.upload_device_keys |= other.upload_device_keys
        self.query_own_keys |= other.query_own_keys
        self.retry_held |= other.retry_held


def _problem(text: str) -> Step:
    return Step(events=[BackupProblem(text)])


def session_id_before(session_id: str) -> str | None:
    """The greatest session id below ``session_id`` (None: it is the smallest), so that
    ``backup_fetch`` with it as ``after`` and ``limit`` 1 returns that one session.
    ValueError if ``session_id`` is not one."""
    allowed = [_ANY] * (_SESSION_ID_LENGTH - 1) + [_LAST]
    if len(session_id) != _SESSION_ID_LENGTH or any(
        c not in chars for c, chars in zip(session_id, allowed, strict=True)
    ):
        raise ValueError("not a session id")
    for i in reversed(range(_SESSION_ID_LENGTH)):
        place = allowed[i].index(session_id[i])
        if place > 0:
            tail = "".join(chars[-1] for chars in allowed[i + 1 :])
            return session_id[:i] + allowed[i][place - 1] + tail
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class _Restore:
    key: BackupKey
    version: int
    done: int = 0
    restored: int = 0
    skipped: int = 0
    after: str = ""  # the last page's ``next``: each must be past it
    waiting: str | None = None  # the id of the backup_fetch whose page comes next


class KeyBackup:
    """The key backup as one device sees it (section 4.13)."""

    def __init__(self, store: CryptoStore, new_id: Callable[[], str]) -> None:
        self.store = store
        self._new_id = new_id
        self.status = BackupStatus.UNKNOWN
        self.current: Mapping[str, Any] | None = None  # the last backup object fetched
        self.created: str | None = None
        self.published_by: str | None = None  # the device that published its version
        self.keys_query: str | None = None  # our own keys_query that a recovery waits for
        self._requests: dict[str, str] = {}  # request id -> what it was for
        self._puts: dict[str, list[tuple[str, int]]] = {}  # backup_put id -> what it carried
        self._publishing: dict[str, tuple[BackupKey, int, dict[str, Any], bool]] = {}
        self._queue: list[InboundId] = []  # sessions to upload, from the last scan
        self._scanned = -1  # GroupSessions.changes at the last scan
        self._candidates: list[tuple[int, BackupKey]] = []  # shared keys to check
        self._recovering: BackupKey | None = None
        self._recovery_waits: set[str] = set()  # "backup", "keys": answers still out
        self._recovery_get: str | None = None
        self._secret: bytes | None = None  # the recovery key being set up (memory only)
        self._setup_password: str | None = None
        self._setup_waits = False  # finish_setup came before backup_get's answer
        self._restore: _Restore | None = None
        self._looked_up: set[str] = set()  # session ids looked for since the last login
        self._signature_checked: tuple[tuple[bytes, str, str], bool] | None = None

    @property
    def me(self) -> str:
        return self.store.device.user

    @property
    def info(self) -> tuple[int, str | None, str | None] | None:
        """(version, when it was created, the device that published it) of the current
        backup, or None when there is none (or it is not known yet)."""
        version = _int(self.current.get("version")) if self.current is not None else None
        return (version, self.created, self.published_by) if version is not None else None

    def owns(self, message: Mapping[str, Any]) -> bool:
        """Whether ``message`` is the ``backup_changed`` push or answers one of ours."""
        if message.get("type") == "backup_changed":
            return "ref" not in message
        return str(message.get("ref")) in self._requests

    # --- the requests --------------------------------------------------------------------

    def _request(self, purpose: str, kind: str, **fields: Any) -> dict[str, Any]:
        request = {"type": kind, "id": self._new_id(), **fields}
        self._requests[request["id"]] = purpose
        return request

    def _get(self) -> Step:
        return Step(requests=[self._request("get", "backup_get")])

    def login(self) -> Step:
        """After every login: what is the backup now? (Uploads resume with the answer.)

        Whatever was asked before is asked again from here (the backup, the restore, the
        uploads, the look-ups), so the ids still unanswered are forgotten: the session's
        outbox fails what the lost connection carried, or sends again what it never took,
        and such a late answer must not be matched to what this login asks. A publish is
        kept: its answer says whether the user's new backup is on (the outbox answers it)."""
        self._puts.clear()
        self._scanned = -1
        self._restore = None  # cut short: starts again once the backup is known (restored False)
        self._looked_up.clear()
        self._requests = {
            ref: purpose
            for ref, purpose in self._requests.items()
            if purpose in ("publish", "update")
        }
        step = self._get()
        if self._recovering is not None and self._recovery_get is not None:
            self._recovery_get = step.requests[-1]["id"]  # the recovery waits for this one
        return step

    # --- answers and pushes ----------------------------------------------------------------

    def receive(self, message: Mapping[str, Any]) -> Step:
        """An answer to one of our requests, or ``backup_changed`` (:meth:`owns`); with
        :class:`BackupStatusChanged` when the status changed."""
        before = self.status
        step = self._receive(message)
        if self.status is not before:
            step.events.append(BackupStatusChanged(self.status))
        return step

    def _receive(self, message: Mapping[str, Any]) -> Step:
        kind = message.get("type")
        if kind == "backup_changed" and "ref" not in message:
            return self._changed(message)
        ref = str(message.get("ref"))
        purpose = self._requests.pop(ref, None)
        if purpose is None:
            return Step()
        if kind == "error":
            return self._refused(purpose, ref, message)
        if purpose == "get" and kind == "backup":
            return self._got(ref, message)
        if purpose == "put" and kind == "backup_stored":
            return self._stored(ref)
        if purpose == "fetch" and kind == "backup_sessions":
            return self._page(ref, message)
        if purpose == "lookup" and kind == "backup_sessions":
            return self._looked(message)
        if purpose in ("publish", "update") and kind == "ok":
            return self._published(ref)
        return Step()

    def _refused(self, purpose: str, ref: str, error: Mapping[str, Any]) -> Step:
        code = error.get("code")
        put = self._puts.pop(ref, None)
        publishing = self._publishing.pop(ref, None)
        if purpose == "get" and ref == self._recovery_get:
            self._recovering, self._recovery_get = None, None
            return _problem(NOT_CONNECTED if code == "not_sent" else self._words(error))
        if purpose == "fetch":  # the restore stops; it starts again with the next answer
            self._restore = None  # to backup_get (conflict, below) or after the next login
        if code == "conflict":  # the backup was reset (or changed) meanwhile: look again
            step = self._get()
            if publishing is not None:
                step.events.append(BackupProblem(CHANGED_MEANWHILE))
            return step
        if put is not None or purpose == "put":
            # Not stored (too_large, rate_limited...): scan again with the next change or
            # login, not at once (that would ask again and again, each refused alike).
            self._queue = []
            return Step()
        if purpose == "fetch":
            return Step()
        if publishing is not None:
            if code == "invalid_credentials":
                return _problem(CREDENTIALS_REFUSED)
            if code == "not_sent":
                return _problem(NOT_CONNECTED)
            if code == "uncertain":
                return _problem(UNCERTAIN)
            return _problem(self._words(error))
        return Step()

    @staticmethod
    def _words(error: Mapping[str, Any]) -> str:
        said = error.get("message")
        said = said if isinstance(said, str) and said else str(error.get("code"))
        return f"The server refused it ({said}): the key backup was not changed."

    def _changed(self, push: Mapping[str, Any]) -> Step:
        """``backup_changed``: a new version from another device. The old key opens
        nothing the server keeps: stop using it, and wait for the new one (its device
        shares it with us) or for the recovery key. It is dropped once ``backup_get``
        shows the new backup, signed by our user key (:meth:`_check_held`)."""
        version = _int(push.get("version"))
        if version is None:
            return Step()
        device, name = str(push.get("device") or ""), str(push.get("name") or "")
        by_me = device == self.store.device.device
        held = self.store.backup.version
        if not by_me and (held is None or version > held):
            self._queue, self._scanned = [], -1
            self.status = BackupStatus.NEEDS_KEY
        step = self._get()
        step.events.append(BackupChanged(version, device, name, by_me))
        return step

    def _got(self, ref: str, answer: Mapping[str, Any]) -> Step:
        backup = answer.get("backup")
        self.current = backup if isinstance(backup, Mapping) else None
        created, device = answer.get("created"), answer.get("device")
        self.created = created if isinstance(created, str) else None
        self.published_by = device if isinstance(device, str) else None
        step = self._check_held()
        step.extend(self._take_candidates())
        if ref == self._recovery_get:
            self._recovery_get = None
            self._recovery_waits.discard("backup")
            step.extend(self._maybe_recover())
        if self._setup_waits:
            self._setup_waits = False
            step.extend(self._publish_new(self._setup_password))
        step.extend(self._restore_if_due())
        return step

    # --- which backup, and whether to use it -----------------------------------------------

    def _my_user_key(self) -> str | None:
        """The user key a backup's signature must be valid for: the one this device holds,
        else the published one."""
        if self.store.identity is not None:
            return self.store.identity.ed25519
        return self.store.directory.user_key(self.me)

    def _signed(self, backup: Mapping[str, Any] | None) -> bool:
        """Whether ``backup`` is signed by our user key (the last answer is remembered:
        this is asked before every upload)."""
        key = self._my_user_key()
        if backup is None or key is None:
            return False
        asked = (wire.backup_payload(backup), str(backup.get("signatures")), key)
        if self._signature_checked is None or self._signature_checked[0] != asked:
            self._signature_checked = (asked, wire.backup_signature_valid(backup, key))
        return self._signature_checked[1]

    def _is_current(self, key: BackupKey, version: int | None) -> bool:
        backup = self.current
        return (
            backup is not None
            and version is not None
            and _int(backup.get("version")) == version
            and backup.get("public_key") == key.public_key
        )

    def _replaces_held(self, backup: Mapping[str, Any]) -> bool:
        """Whether ``backup`` is a newer version than the key this device holds, signed by
        our user key: a reset made on one of our devices. The server's word alone (a
        push, or another object) must not make a device forget its key for good."""
        version, held = _int(backup.get("version")), self.store.backup.version
        return version is not None and held is not None and version > held and self._signed(backup)

    def usable(self) -> bool:
        """Whether this device holds the current backup's key and may use the backup."""
        state = self.store.backup
        return (
            state.key is not None
            and self._is_current(state.key, state.version)
            and self._signed(self.current)
        )

    def in_use(self) -> bool:
        """Whether this device reads the backup now (4.9 then says nothing of approving it or
        of the recovery key): status ON. Before the first answer to ``backup_get``, a key
        held counts; the answer settles it (:class:`BackupStatusChanged`)."""
        if self.status is BackupStatus.UNKNOWN:
            return self.store.backup.key is not None
        return self.status is BackupStatus.ON

    def _check_held(self) -> Step:
        """The status, from the backup just fetched and the key this device holds."""
        state = self.store.backup
        if self.current is None:  # the key is kept: only the server says so
            self.status = BackupStatus.NONE
            return Step()
        if state.key is None:
            self.status = BackupStatus.NEEDS_KEY
            return Step()
        if not self._is_current(state.key, state.version):
            if self._replaces_held(self.current):
                state.drop()  # reset elsewhere while this device was away
            self.status = BackupStatus.NEEDS_KEY
            return Step()
        if self._signed(self.current):
            self.status = BackupStatus.ON
            return Step()
        if self.store.identity is not None and state.version is not None:
            # Signed for an older user key: an identity reset made where the backup key is
            # not. We hold both: bring the backup up to date (4.13, "Reset").
            if any(not new for *_, new in self._publishing.values()):
                return Step()  # already on its way
            return self._publish(state.key, state.version, new=False)
        self.status = BackupStatus.NEEDS_KEY
        return Step()

    # --- uploading -------------------------------------------------------------------------

    def flush(self) -> Step:
        """Upload what was accepted since the last upload, 100 sessions per request, one
        request at a time (the next goes when the server has stored this one)."""
        groups = self.store.groups
        if self._puts or self._restore is not None or self.status is not BackupStatus.ON:
            return Step()  # one request at a time; after a restore (which imports many)
        if (groups.changes == self._scanned and not self._queue) or not self.usable():
            return Step()
        if groups.changes != self._scanned:
            self._scanned = groups.changes
            uploaded = self.store.backup.uploaded
            self._queue = [
                inbound_id
                for inbound_id, entry in groups.inbound.items()
                if uploaded.get(inbound_id[2], -1) < 0
                or entry.session.first_known_index < uploaded[inbound_id[2]]
            ]
        key, version = self.store.backup.key, self.store.backup.version
        assert key is not None and version is not None
        sessions: list[dict[str, Any]] = []
        carried: list[tuple[str, int]] = []
        while self._queue and len(sessions) < wire.MAX_SESSIONS_PER_PUT:
            inbound_id = self._queue.pop(0)
            item = self._sealed_session(key, version, inbound_id)
            if item is not None:
                sessions.append(item)
                carried.append((item["session_id"], item["first_index"]))
        if not sessions:
            return Step()
        request = self._request("put", "backup_put", version=version, sessions=sessions)
        self._puts[request["id"]] = carried
        return Step(requests=[request])

    def _sealed_session(
        self, key: BackupKey, version: int, inbound_id: InboundId
    ) -> dict[str, Any] | None:
        entry = self.store.groups.inbound.get(inbound_id)
        if entry is None:
            return None
        conversation, sender_key, session_id = inbound_id
        first = entry.session.first_known_index
        exported = entry.session.export_at(first)
        if exported is None:
            return None
        plaintext = wire.session_plaintext(
            conversation=conversation,
            session_id=session_id,
            session_key=exported.to_base64(),
            sender=entry.sender,
            sender_device=entry.sender_device,
            sender_key=sender_key,
            sender_ed25519=entry.sender_ed25519,
        )
        slot = wire.session_slot(session_id)
        blob = wire.seal_blob(key, self.me, version, slot, plaintext)
        return {"session_id": session_id, "first_index": first, "blob": blob}

    def _stored(self, ref: str) -> Step:
        uploaded = self.store.backup.uploaded
        for session_id, first in self._puts.pop(ref, []):
            uploaded[session_id] = min(uploaded.get(session_id, first), first)
        return self.flush()

    # --- sharing the key -------------------------------------------------------------------

    def offer_share(
        self, sender: DeviceKeys, share: Mapping[str, Any], own_user_key: str | None
    ) -> Step:
        """A backup key from ``user_key_share``'s ``backup`` or a ``backup_key_share``:
        considered only from our own user's device signed by ``own_user_key`` (the key this
        device holds), and kept only once ``backup_get`` shows it is the current backup's."""
        if sender.user != self.me or not sender.signed_by_user_key(own_user_key):
            return Step()
        fields = {name: share.get(name) for name in ("version", "private_key", "mac_key")}
        try:
            version, key = BackupKey.from_share(fields)
        except ValueError:
            return Step()
        held = self.store.backup
        if held.key == key and held.version == version and self.status is BackupStatus.ON:
            return Step()
        self._candidates.append((version, key))
        return self._get()

    def _take_candidates(self) -> Step:
        candidates, self._candidates = self._candidates, []
        for version, key in candidates:
            if self._is_current(key, version) and self._signed(self.current):
                self.store.backup.keep(key, version)
                self.status = BackupStatus.ON
                self._scanned = -1
                return self._restore_if_due()
        return Step()

    def _share_with_own_devices(self, key: BackupKey, version: int) -> list[Any]:
        """``backup_key_share`` for each of our other devices signed by our user key."""
        identity = self.store.identity
        if identity is None:
            return []
        devices = self.store.directory.signed_devices([self.me], key_of=lambda _: identity.ed25519)
        payload = {"type": BACKUP_KEY_SHARE, **key.share(version)}
        return [(d, dict(payload)) for d in devices if d.device != self.store.device.device]

    def share_for_approval(self) -> dict[str, Any] | None:
        """The ``backup`` field of a ``user_key_share`` (4.7), while the backup is in use."""
        state = self.store.backup
        if state.key is None or state.version is None or not self.usable():
            return None
        return state.key.share(state.version)

    # --- restoring -------------------------------------------------------------------------

    def _restore_if_due(self) -> Step:
        """Restore from the backup unless this device did already (or is doing it)."""
        state = self.store.backup
        if self._restore is not None or state.restored or self.status is not BackupStatus.ON:
            return Step()
        return self._start_restore()

    def _start_restore(self) -> Step:
        state = self.store.backup
        if state.key is None or state.version is None:
            return Step()
        self._restore = _Restore(state.key, state.version)
        return self._fetch(None)

    def _fetch(self, after: str | None) -> Step:
        assert self._restore is not None
        fields: dict[str, Any] = {"version": self._restore.version, "limit": FETCH_LIMIT}
        if after is not None:
            fields["after"] = after
        request = self._request("fetch", "backup_fetch", **fields)
        self._restore.waiting = request["id"]
        return Step(requests=[request])

    def look_up(self, session_id: str) -> Step:
        """A message came whose session this device lacks: look for that one session in
        the backup (4.9), once per login, while this device uses the backup and is not
        restoring it all anyway."""
        if session_id in self._looked_up or self._restore is not None or not self.usable():
            return Step()
        try:
            after = session_id_before(session_id)
        except ValueError:
            return Step()  # not a session id: that message is shown as not verifiable
        self._looked_up.add(session_id)
        fields: dict[str, Any] = {"version": self.store.backup.version, "limit": 1}
        if after is not None:
            fields["after"] = after
        return Step(requests=[self._request("lookup", "backup_fetch", **fields)])

    def _looked(self, answer: Mapping[str, Any]) -> Step:
        """The answer to :meth:`look_up`: the session, if the backup has it."""
        key, version = self.store.backup.key, self.store.backup.version
        sessions = answer.get("sessions")
        if key is None or version is None or not isinstance(sessions, list):
            return Step()
        restore = _Restore(key, version)
        found = [
            item
            for item in sessions
            if isinstance(item, Mapping)
            and item.get("session_id") in self._looked_up
            and self._import(restore, item)
        ]
        return Step(retry_held=bool(found))

    def _page(self, ref: str, answer: Mapping[str, Any]) -> Step:
        """One page of the restore: only the answer to the restore's own last fetch, and
        only of the version it restores (a page of another version, which an honest server
        never sends, ends the restore with nothing imported; it starts again with the next
        login or ``backup_get``)."""
        restore = self._restore
        if restore is None or ref != restore.waiting:
            return Step()  # a page of a restore that ended (a reset, a login) since
        restore.waiting = None
        if _int(answer.get("version")) != restore.version:
            self._restore = None
            return Step()
        sessions = answer.get("sessions")
        sessions = sessions if isinstance(sessions, list) else []
        for item in sessions[:FETCH_LIMIT]:
            if self._import(restore, item):
                restore.restored += 1
            else:
                restore.skipped += 1
        restore.done += len(sessions[:FETCH_LIMIT])
        step = Step(events=[BackupRestoreProgress(restore.done)], retry_held=bool(sessions))
        after = answer.get("next")
        # A server that pages backwards, or past the most a backup holds, is not followed.
        if (
            isinstance(after, str)
            and sessions
            and after > restore.after
            and restore.done < wire.MAX_BACKUP_SESSIONS
        ):
            restore.after = after
            step.extend(self._fetch(after))
        else:
            self._restore = None
            if self.store.backup.version == restore.version:
                self.store.backup.restored = True
            step.events.append(BackupRestored(restore.restored, restore.skipped))
            step.extend(self._restore_if_due())  # a newer backup's key came meanwhile
            step.extend(self.flush())
        return step

    def _import(self, restore: _Restore, item: Any) -> bool:
        """Open one backed-up session and keep it, as a forwarded key is kept: bound to
        the original sender, device and keys it names; 4.5's checks apply when a message
        is read. False if the blob does not open or its content does not match its slot."""
        try:
            session_id = item["session_id"]
            slot = wire.session_slot(session_id)
            plain = wire.open_blob(restore.key, self.me, restore.version, slot, item["blob"])
            names = ("conversation", "session_key", "sender", "sender_device", "sender_key")
            if (
                plain.get("type") != "room_key"
                or plain.get("session_id") != session_id
                or not all(isinstance(plain.get(n), str) for n in (*names, "sender_ed25519"))
            ):
                return False
            session = vodozemac.InboundGroupSession.import_session(
                vodozemac.ExportedSessionKey(plain["session_key"])
            )
        except (BlobRejected, KeyError, TypeError, ValueError):
            return False
        if session.session_id != session_id:
            return False
        held = self.store.backup
        if (held.key, held.version) == (restore.key, restore.version):
            # In the backup this device uploads to: not to be uploaded again. (A restore of
            # an older version, whose page came after a reset, says nothing of the new one.)
            first = _int(item.get("first_index"))
            server_has = first if first is not None else session.first_known_index
            held.uploaded[session_id] = min(held.uploaded.get(session_id, server_has), server_has)
        self.store.groups.add_inbound(
            plain["conversation"],
            plain["sender_key"],
            session,
            plain["sender"],
            plain["sender_device"],
            plain["sender_ed25519"],
        )
        return True

    # --- recovery with the recovery key ----------------------------------------------------

    def recover(self, text: str) -> Step:
        """The user typed the recovery key. :class:`RecoveryKeyTypo` at once for a typo;
        otherwise the backup and our own keys are fetched, and the rest follows."""
        secret = wire.parse_recovery_key(text)
        self._recovering = BackupKey.from_recovery_key(secret)
        self._recovery_waits = {"backup", "keys"}
        step = self._get()
        self._recovery_get = step.requests[-1]["id"]
        step.query_own_keys = True
        return step

    def keys_arrived(self) -> Step:
        """Our own keys (the recovery's ``keys_query``) were answered or refused."""
        self.keys_query = None
        self._recovery_waits.discard("keys")
        return self._maybe_recover()

    def _maybe_recover(self) -> Step:
        if self._recovering is None or self._recovery_waits:
            return Step()
        key, self._recovering = self._recovering, None
        backup = self.current
        if backup is None:
            return _problem(NO_BACKUP)
        version = _int(backup.get("version"))
        if backup.get("public_key") != key.public_key or version is None:
            return _problem(KEY_MISMATCH)
        try:
            plain = wire.open_blob(key, self.me, version, wire.IDENTITY_SLOT, backup["identity"])
            user_key_version = _int(plain.get("version"))
            if plain.get("type") != "identity" or user_key_version is None:
                raise ValueError
            opened = UserIdentity(self.me, b64decode(str(plain["user_key"])), user_key_version)
        except (BlobRejected, KeyError, TypeError, ValueError):
            return _problem(BACKUP_UNREADABLE)
        step = Step()
        if self.store.identity is None:
            published = self.store.directory.published_user_key(self.me)
            if published is None or (published.ed25519, published.version) != (
                opened.ed25519,
                opened.version,
            ):
                return _problem(OLD_IDENTITY)
            self.store.identity = opened
            step.upload_device_keys = True
            step.events.append(BackupRecovered())
        self.store.backup.keep(key, version)
        self._scanned = -1
        if self._signed(backup):
            self.status = BackupStatus.ON
            step.extend(self._start_restore())
        else:  # signed for an older user key: this device brings it up to date first
            step.extend(self._publish(key, version, new=False))  # then restores
        return step

    # --- set-up, reset and update ----------------------------------------------------------

    def begin_setup(self) -> str:
        """A new recovery key, to show once (kept in memory only until the set-up ends:
        published or not, or :meth:`cancel_setup`). :class:`E2EError` if this device is
        not signed: it cannot sign a backup."""
        if self.store.identity is None:
            raise E2EError(NOT_SIGNED)
        self._secret = wire.new_recovery_key()
        return wire.format_recovery_key(self._secret)

    def cancel_setup(self) -> None:
        """The user closed the set-up: forget the recovery key shown (and the password
        given for a reset), so that neither stays in memory, and publish nothing that was
        waiting for ``backup_get``. A publish already sent is not undone: its answer is
        still reported."""
        self._secret, self._setup_password, self._setup_waits = None, None, False

    def finish_setup(self, typed: str, password: str | None) -> Step:
        """The user typed the recovery key back: publish the backup (a reset when one
        exists, which needs ``password``). ValueError in words if the key differs or the
        password is missing; the answer's events say how it went."""
        if self._secret is None:
            raise ValueError(NOTHING_TO_CONFIRM)
        try:  # read as a recovery key is (case, spaces, hyphens, the digits 0, 1 and 8)
            same = crypto_utils.bytes_equal(wire.parse_recovery_key(typed), self._secret)
        except RecoveryKeyTypo:
            same = False
        if not same:
            raise ValueError(NOT_THE_KEY_SHOWN)
        if self.store.identity is None:
            raise E2EError(NOT_SIGNED)
        if self.status is BackupStatus.UNKNOWN:  # publish once we know the version
            self._setup_waits, self._setup_password = True, password
            return self._get()
        if self.current is not None and not password:
            raise ValueError(RESET_NEEDS_CREDENTIALS)
        return self._publish_new(password)

    def _publish_new(self, password: str | None) -> Step:
        # The set-up ends here either way: the recovery key is not needed past its key.
        secret, self._secret, self._setup_password = self._secret, None, None
        if secret is None:
            return Step()
        if self.current is not None and not password:
            return _problem(RESET_NEEDS_CREDENTIALS)
        current_version = _int(self.current.get("version")) if self.current is not None else 0
        version = (current_version or 0) + 1
        key = BackupKey.from_recovery_key(secret)
        return self._publish(key, version, new=True, password=password)

    def _publish(
        self, key: BackupKey, version: int, *, new: bool, password: str | None = None
    ) -> Step:
        """``backup_publish`` of ``version`` signed by the user key this device holds: a
        new backup, or (``new`` False) an update with a new identity and signature."""
        identity = self.store.identity
        if identity is None:
            return Step()
        identity_blob = wire.seal_blob(
            key,
            self.me,
            version,
            wire.IDENTITY_SLOT,
            wire.identity_plaintext(identity.private_b64(), identity.version),
        )
        backup = wire.backup_object(
            user=self.me, version=version, key=key, identity_blob=identity_blob
        )
        backup["signatures"] = {"user": identity.sign(wire.backup_payload(backup))}
        fields: dict[str, Any] = {"backup": backup}
        if new and password:
            fields["password"] = password
        request = self._request("publish" if new else "update", "backup_publish", **fields)
        self._publishing[request["id"]] = (key, version, backup, new)
        return Step(requests=[request])

    def _published(self, ref: str) -> Step:
        published = self._publishing.pop(ref, None)
        if published is None:
            return Step()
        key, version, backup, new = published
        self.store.backup.keep(key, version)
        self.current = backup
        self.status = BackupStatus.ON
        self._scanned = -1
        step = Step()
        if new:
            self.store.backup.restored = True  # a new backup holds nothing to restore
            self.created, self.published_by = None, self.store.device.device
            step.events.append(BackupEnabled(version))
            step.olm.extend(self._share_with_own_devices(key, version))
            step.extend(self._get())  # for the date the server gives it
        step.extend(self._restore_if_due())
        step.extend(self.flush())
        return step


__all__ = [
    "BACKUP_KEY_SHARE",
    "BackupChanged",
    "BackupEnabled",
    "BackupEvent",
    "BackupProblem",
    "BackupRecovered",
    "BackupRestoreProgress",
    "BackupRestored",
    "BackupStatus",
    "BackupStatusChanged",
    "KeyBackup",
    "RecoveryKeyTypo",
    "Step",
]
