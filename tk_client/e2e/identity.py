"""The user key: one ed25519 key per user that signs the user's own devices.

Cross-signing, simplified: a contact trusts the user key (first use, or verified), and
through it every device it signed. The private half lives only on the user's approved
devices; at rest it is sealed under a key derived from the pickle key.

vodozemac has no bare ed25519 signing key, so signing goes through
``chatproto.crypto_utils`` (``ed25519_sign``), and verifying through ``chatproto.e2e`` like
any other signature.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from chatproto import crypto_utils, e2e, unpadded_b64
from chatproto.errors import CryptoError

from .device import DeviceAccount
from .errors import StoreError
from .keys import DeviceKeys, PublishedUserKey

SEED_BYTES = 32
_AT_REST_INFO = b"chat.e2e.user_key.at_rest.v1"


def _sealing_key(pickle_key: bytes) -> bytes:
    """A key of its own for sealing the seed, so the pickle key is used for one thing only."""
    return crypto_utils.hkdf_sha256(pickle_key, b"", _AT_REST_INFO, crypto_utils.STORAGE_KEY_SIZE)


class UserIdentity:
    """The private user key of ``user``, at ``version`` (a new version = an identity reset)."""

    def __init__(self, user: str, seed: bytes, version: int) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError("a user key seed is 32 bytes")
        self.user = user
        self.version = version
        self._seed = seed
        self._public = crypto_utils.ed25519_public(seed)  # asked for at every message sent

    @classmethod
    def generate(cls, user: str, version: int = 1) -> UserIdentity:
        """A new user key: the first device's, or an explicit reset (``version`` + 1)."""
        return cls(user, os.urandom(SEED_BYTES), version)

    @property
    def ed25519(self) -> str:
        return self._public

    def sign(self, message: bytes) -> str:
        return crypto_utils.ed25519_sign(self._seed, message)

    def sign_device(self, device_keys: DeviceKeys) -> DeviceKeys:
        """``device_keys`` with this user key's signature: the device is now approved."""
        if device_keys.user != self.user:
            raise ValueError("a user key signs only its own user's devices")
        return replace(device_keys, user_signature=self.sign(device_keys.signed_bytes()))

    def published_by(self, device: DeviceAccount) -> PublishedUserKey:
        """The object ``user_key_publish`` carries, signed by the publishing device."""
        unsigned = PublishedUserKey(self.user, self.ed25519, self.version, device_signature="")
        signature = device.sign(e2e.user_key_payload(unsigned.public_fields()))
        return PublishedUserKey(self.user, self.ed25519, self.version, signature)

    def share(self, txn: str, new_device: DeviceKeys) -> dict[str, Any]:
        """The ``user_key_share`` plaintext (section 4.7) for ``new_device``, just approved.

        The private half, its version and the user signature of the new device's keys; it
        goes over Olm, after both SAS MACs checked, to that device only.
        """
        return {
            "type": e2e.USER_KEY_SHARE,
            "txn": txn,
            "user_key": unpadded_b64.encode(self._seed),
            "version": self.version,
            "signature": self.sign_device(new_device).user_signature,
        }

    def private_b64(self) -> str:
        """The private half in base64: for the key backup's ``identity`` blob only (4.13),
        which is sealed to the backup key before it leaves this device."""
        return unpadded_b64.encode(self._seed)

    @classmethod
    def from_share(
        cls, share: Mapping[str, Any], user: str, published: PublishedUserKey
    ) -> UserIdentity:
        """The key received in ``user_key_share`` by a device of ``user``.

        ValueError unless its public half and version are ``published`` (the user's
        current user key from ``keys``). The share's ``signature`` is then this device's
        ``signatures.user``, for ``keys_upload``.
        """
        version = share.get("version")
        try:
            if not isinstance(version, int) or isinstance(version, bool):
                raise TypeError
            identity = cls(user, unpadded_b64.decode(share["user_key"]), version)
        except (KeyError, TypeError, ValueError):
            raise ValueError("a malformed user key share") from None
        if (identity.ed25519, identity.version) != (published.ed25519, published.version):
            raise ValueError("the shared user key is not the published one")
        return identity

    # --- at rest ----------------------------------------------------------------------------

    def to_state(self, pickle_key: bytes) -> dict[str, Any]:
        return {
            "user": self.user,
            "version": self.version,
            "ed25519": self.ed25519,
            "sealed_seed": crypto_utils.encrypt_aes(_sealing_key(pickle_key), self._seed),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], pickle_key: bytes) -> UserIdentity:
        try:
            seed = crypto_utils.decrypt_aes(_sealing_key(pickle_key), state["sealed_seed"])
        except CryptoError:
            raise StoreError(
                "the user key in the end-to-end store cannot be opened with this pickle key"
            ) from None
        return cls(state["user"], seed, state["version"])
