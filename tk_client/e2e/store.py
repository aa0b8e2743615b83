"""One device's end-to-end state, and the JSON file (mode 0600) that keeps it.

The file holds only vodozemac pickles, the sealed user key and the sealed backup key (all
encrypted under the pickle key of :mod:`keyfile`) and public data: contacts' pinned keys and
their states, the backup version and the ids of the sessions uploaded to it, the device
lists of tracked users (as received; checked again when read back), the device list
version, and when the fallback key was last published. A store written before the device
lists were kept (same format) opens with none: the next send fetches them. It is
rewritten whole and atomically after every change that matters (:meth:`CryptoStore.save`),
so a crash never leaves half a store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatproto.crypto_utils import write_secret_file

from .backup_state import BackupState
from .contacts import ContactBook
from .device import DeviceAccount
from .directory import DeviceDirectory
from .errors import StoreError
from .identity import UserIdentity
from .megolm import GroupSessions
from .olm import OlmSessions

STORE_FORMAT = 1


class CryptoStore:
    """Everything one device knows: its account, user key, sessions and contacts."""

    def __init__(
        self,
        device: DeviceAccount,
        created_at: float,
        *,
        identity: UserIdentity | None = None,
        olm: OlmSessions | None = None,
        groups: GroupSessions | None = None,
        contacts: ContactBook | None = None,
        device_list_version: int = 0,
        directory: DeviceDirectory | None = None,
        fallback_published_at: float | None = None,
        backup: BackupState | None = None,
    ) -> None:
        self.device = device
        self.created_at = created_at  # what "sent before this device existed" compares with
        self.identity = identity
        self.olm = olm or OlmSessions(device)
        self.groups = groups or GroupSessions()
        self.contacts = contacts or ContactBook()
        self.device_list_version = device_list_version
        # Tracked users' device lists (4.3), and when the fallback key was last published
        # (None: not known yet); both public.
        self.directory = directory if directory is not None else DeviceDirectory()
        self.fallback_published_at = fallback_published_at
        # The key backup's key (sealed at rest), its version and what was uploaded (4.13).
        self.backup = backup if backup is not None else BackupState()

    @classmethod
    def create(cls, user: str, device: str, now: float) -> CryptoStore:
        """A new device's state: a fresh account, nothing else yet."""
        return cls(DeviceAccount.create(user, device), now)

    # --- the file ---------------------------------------------------------------------------

    def to_json(self, pickle_key: bytes) -> str:
        state = {
            "format": STORE_FORMAT,
            "created_at": self.created_at,
            "device": self.device.to_state(pickle_key),
            "identity": self.identity.to_state(pickle_key) if self.identity else None,
            "olm": self.olm.to_state(pickle_key),
            "groups": self.groups.to_state(pickle_key),
            "contacts": self.contacts.to_state(),
            "device_list_version": self.device_list_version,
            "directory": self.directory.to_state(),
            "fallback_published_at": self.fallback_published_at,
            "backup": self.backup.to_state(pickle_key),
        }
        return json.dumps(state, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, pickle_key: bytes) -> CryptoStore:
        """The state in ``text``; :class:`StoreError` if it is not ours or the key is wrong."""
        try:
            state: dict[str, Any] = json.loads(text)
            if state.get("format") != STORE_FORMAT:
                raise StoreError("this end-to-end store is of an unknown format")
            device = DeviceAccount.from_state(state["device"], pickle_key)
        except StoreError:
            raise
        except (ValueError, KeyError, TypeError):
            raise StoreError(
                "the end-to-end store cannot be opened with the key in e2e_pickle.key: "
                "restore the key file that belongs to it (a new key cannot read this "
                "device's messages)"
            ) from None
        try:
            identity = state["identity"]
            return cls(
                device,
                state["created_at"],
                identity=UserIdentity.from_state(identity, pickle_key) if identity else None,
                olm=OlmSessions.from_state(device, state["olm"], pickle_key),
                groups=GroupSessions.from_state(state["groups"], pickle_key),
                contacts=ContactBook.from_state(state["contacts"]),
                device_list_version=state["device_list_version"],
                directory=DeviceDirectory.from_state(state.get("directory", {"users": {}})),
                fallback_published_at=_optional_time(state.get("fallback_published_at")),
                backup=BackupState.from_state(state.get("backup"), pickle_key),
            )
        except (ValueError, KeyError, TypeError):
            raise StoreError("the end-to-end store is damaged; restore it from a backup") from None

    def save(self, path: Path, pickle_key: bytes) -> None:
        """Write the store to ``path`` atomically, mode 0600."""
        write_secret_file(path, self.to_json(pickle_key).encode("utf-8"), replace=True)

    @classmethod
    def load(cls, path: Path, pickle_key: bytes) -> CryptoStore:
        """Read the store at ``path`` (:class:`StoreError` as in :meth:`from_json`)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise StoreError(
                f"the end-to-end store {path} cannot be read ({error.strerror})"
            ) from None
        return cls.from_json(text, pickle_key)


def _optional_time(value: Any) -> float | None:
    """A stored time in seconds, or None (absent: a store written before it was kept)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a stored time is not a number")
    return float(value)
