"""The user key: one ed25519 key per user that signs the user's own devices.

Cross-signing, simplified: a contact trusts the user key (first use, or verified), and
through it every device it signed. The private half lives only on the user's approved
devices; at rest it is sealed under a key derived from the pickle key.

vodozemac has no bare ed25519 signing key, so signing uses ``cryptography`` here (the one
place in the client); verifying goes through :func:`keys.signature_valid` like any other.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatproto import crypto_utils
from chatproto.errors import CryptoError

from .device import DeviceAccount
from .encoding import decode_b64, encode_b64
from .errors import StoreError
from .keys import USER_KEY_PURPOSE, DeviceKeys, PublishedUserKey, signed_bytes

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
        self._private = Ed25519PrivateKey.from_private_bytes(seed)

    @classmethod
    def generate(cls, user: str, version: int = 1) -> UserIdentity:
        """A new user key: the first device's, or an explicit reset (``version`` + 1)."""
        return cls(user, os.urandom(SEED_BYTES), version)

    @property
    def ed25519(self) -> str:
        raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return encode_b64(raw)

    def sign(self, message: bytes) -> str:
        return encode_b64(self._private.sign(message))

    def sign_device(self, device_keys: DeviceKeys) -> DeviceKeys:
        """``device_keys`` with this user key's signature: the device is now approved."""
        if device_keys.user != self.user:
            raise ValueError("a user key signs only its own user's devices")
        return DeviceKeys(
            **device_keys.public_fields(),
            device_signature=device_keys.device_signature,
            user_signature=self.sign(device_keys.signed_bytes()),
        )

    def published_by(self, device: DeviceAccount) -> PublishedUserKey:
        """The object ``user_key_publish`` carries, signed by the publishing device."""
        unsigned = PublishedUserKey(self.user, self.ed25519, self.version, device_signature="")
        signature = device.sign(signed_bytes(unsigned.public_fields(), USER_KEY_PURPOSE))
        return PublishedUserKey(self.user, self.ed25519, self.version, signature)

    def share(self) -> dict[str, Any]:
        """The private half for ``user_key_share`` (over Olm, to an approved own device only)."""
        return {"user": self.user, "version": self.version, "seed": encode_b64(self._seed)}

    @classmethod
    def from_share(cls, share: dict[str, Any], published_ed25519: str) -> UserIdentity:
        """The key received in ``user_key_share``; ValueError unless it is the published one."""
        try:
            identity = cls(share["user"], decode_b64(share["seed"]), int(share["version"]))
        except (KeyError, TypeError):
            raise ValueError("a malformed user key share") from None
        if identity.ed25519 != published_ed25519:
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
