"""What this device remembers of the key backup (section 4.13), and how it is kept at rest.

The backup key (its X25519 private key and its MAC key) is kept only sealed under a key
derived from the pickle key, as the user key is (4.10); the recovery key is never kept.
The rest is public: the backup version the key belongs to, and which Megolm sessions were
uploaded to that version (session id -> the first index uploaded), so a restarted client
uploads only what the server does not have yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatproto import crypto_utils
from chatproto.backup import BackupKey
from chatproto.errors import CryptoError

from .errors import StoreError

_AT_REST_INFO = b"chat.e2e.backup_key.at_rest.v1"
_KEY_BYTES = 32


def _sealing_key(pickle_key: bytes) -> bytes:
    """A key of its own for the backup key, so the pickle key is used for one thing only."""
    return crypto_utils.hkdf_sha256(pickle_key, b"", _AT_REST_INFO, crypto_utils.STORAGE_KEY_SIZE)


@dataclass
class BackupState:
    """The backup key this device holds (None: none), its version, what was uploaded, and
    whether this device has restored from that version (a restore cut short by a restart
    starts again at the next login)."""

    key: BackupKey | None = None
    version: int | None = None
    uploaded: dict[str, int] = field(default_factory=dict)
    restored: bool = False

    def keep(self, key: BackupKey, version: int) -> None:
        """Hold ``key`` for backup ``version``; what was uploaded to another version is
        forgotten (a new version starts empty on the server)."""
        if self.version != version or self.key != key:
            self.uploaded, self.restored = {}, False
        self.key, self.version = key, version

    def drop(self) -> None:
        """Forget the key: the backup was reset elsewhere, or is gone."""
        self.key, self.version, self.uploaded, self.restored = None, None, {}, False

    def to_state(self, pickle_key: bytes) -> dict[str, Any]:
        sealed = None
        if self.key is not None:
            secret = self.key.private_key + self.key.mac_key
            sealed = crypto_utils.encrypt_aes(_sealing_key(pickle_key), secret)
        return {
            "sealed_key": sealed,
            "version": self.version,
            "uploaded": dict(self.uploaded),
            "restored": self.restored,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None, pickle_key: bytes) -> BackupState:
        """The state of :meth:`to_state`; None (a store from before backups): nothing held."""
        if state is None:
            return cls()
        sealed = state.get("sealed_key")
        key = None
        if sealed is not None:
            try:
                secret = crypto_utils.decrypt_aes(_sealing_key(pickle_key), sealed)
            except CryptoError:
                raise StoreError(
                    "the backup key in the end-to-end store cannot be opened with this pickle key"
                ) from None
            if len(secret) != 2 * _KEY_BYTES:
                raise ValueError("a stored backup key has the wrong length")
            key = BackupKey(private_key=secret[:_KEY_BYTES], mac_key=secret[_KEY_BYTES:])
        version = state.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise ValueError("a stored backup version is not an integer")
        uploaded = state.get("uploaded")
        if not isinstance(uploaded, Mapping):
            raise ValueError("the stored uploaded sessions are not an object")
        restored = state.get("restored", False)
        if not isinstance(restored, bool):
            raise ValueError("the stored restore state is not a boolean")
        return cls(key, version, {str(k): int(v) for k, v in uploaded.items()}, restored)
