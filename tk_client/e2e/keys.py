"""The public key objects peers publish, and exactly which bytes each signature covers.

Every signature is ed25519 over ``canonical_json`` of the object without its signatures,
plus a ``purpose`` that is signed but never sent: a signature made for one kind of object
can then never be passed off as one for another. A client refuses an object whose
signature does not check (:class:`UntrustedKeys`) before it uses any key in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import vodozemac

from chatproto.e2e import canonical_json

from .errors import UntrustedKeys

DEVICE_KEYS_PURPOSE = "chat.device_keys.v1"
USER_KEY_PURPOSE = "chat.user_key.v1"
ONE_TIME_KEY_PURPOSE = "chat.one_time_key.v1"

Peer = tuple[str, str]
"""A device as (user name, device id)."""


def signed_bytes(obj: Mapping[str, Any], purpose: str) -> bytes:
    """What a signature on ``obj`` covers: the object without ``signatures``, plus purpose."""
    payload = {key: value for key, value in obj.items() if key != "signatures"}
    payload["purpose"] = purpose
    return canonical_json(payload)


def one_time_key_signed_bytes(user: str, device: str, key_id: str, key: str) -> bytes:
    """What a one-time (or fallback) key's signature covers: the key and whose it is."""
    return canonical_json(
        {
            "purpose": ONE_TIME_KEY_PURPOSE,
            "user": user,
            "device": device,
            "key_id": key_id,
            "key": key,
        }
    )


def signature_valid(ed25519: str, message: bytes, signature: str | None) -> bool:
    """Whether ``signature`` (unpadded base64) is ``ed25519``'s over ``message``.

    False for a missing, malformed or wrong signature or key alike: callers refuse.
    """
    if not isinstance(signature, str) or not isinstance(ed25519, str):
        return False
    try:
        key = vodozemac.Ed25519PublicKey.from_base64(ed25519)
        key.verify_signature(message, vodozemac.Ed25519Signature.from_base64(signature))
    except ValueError:
        return False
    return True


def _text(obj: Mapping[str, Any], field: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value:
        raise UntrustedKeys(f"a published key object has no valid {field!r}; it is ignored")
    return value


def _signatures(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        raise UntrustedKeys("a published key object is not signed; it is ignored")
    return signatures


@dataclass(frozen=True)
class DeviceKeys:
    """A device's identity keys as published, with their device (and maybe user) signature.

    Built only through :meth:`from_wire`, which checks the device's own signature, so a
    ``DeviceKeys`` in hand always holds keys that its ed25519 key vouches for.
    """

    user: str
    device: str
    curve25519: str
    ed25519: str
    device_signature: str
    user_signature: str | None = None

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> DeviceKeys:
        """Parse and check a device keys object; :class:`UntrustedKeys` if it does not check."""
        if not isinstance(obj, Mapping):
            raise UntrustedKeys("a published device is not an object; it is ignored")
        signatures = _signatures(obj)
        user_signature = signatures.get("user")
        keys = cls(
            user=_text(obj, "user"),
            device=_text(obj, "device"),
            curve25519=_text(obj, "curve25519"),
            ed25519=_text(obj, "ed25519"),
            device_signature=_text(signatures, "device"),
            user_signature=user_signature if isinstance(user_signature, str) else None,
        )
        if not signature_valid(keys.ed25519, keys.signed_bytes(), keys.device_signature):
            raise UntrustedKeys(
                f"device {keys.device} of {keys.user} is not signed by its own key; it is ignored"
            )
        return keys

    @property
    def peer(self) -> Peer:
        return (self.user, self.device)

    def public_fields(self) -> dict[str, str]:
        """The object without signatures, as published."""
        return {
            "user": self.user,
            "device": self.device,
            "curve25519": self.curve25519,
            "ed25519": self.ed25519,
        }

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.public_fields(), DEVICE_KEYS_PURPOSE)

    def to_wire(self) -> dict[str, Any]:
        signatures = {"device": self.device_signature}
        if self.user_signature is not None:
            signatures["user"] = self.user_signature
        return {**self.public_fields(), "signatures": signatures}

    def signed_by_user_key(self, user_ed25519: str | None) -> bool:
        """Whether the user key ``user_ed25519`` (that of this device's user) signed it.

        Only such devices receive room keys: a device the server adds gains nothing.
        """
        if user_ed25519 is None:
            return False
        return signature_valid(user_ed25519, self.signed_bytes(), self.user_signature)


@dataclass(frozen=True)
class PublishedUserKey:
    """A user's published user key: ``{"user", "ed25519", "version", "signatures"}``."""

    user: str
    ed25519: str
    version: int
    device_signature: str

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> PublishedUserKey:
        """Parse the object's shape; its signature is checked by :meth:`published_by`."""
        if not isinstance(obj, Mapping):
            raise UntrustedKeys("a published user key is not an object; it is ignored")
        version = obj.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UntrustedKeys("a published user key has no valid version; it is ignored")
        return cls(
            user=_text(obj, "user"),
            ed25519=_text(obj, "ed25519"),
            version=version,
            device_signature=_text(_signatures(obj), "device"),
        )

    def public_fields(self) -> dict[str, Any]:
        return {"user": self.user, "ed25519": self.ed25519, "version": self.version}

    def to_wire(self) -> dict[str, Any]:
        return {**self.public_fields(), "signatures": {"device": self.device_signature}}

    def published_by(self, device: DeviceKeys) -> bool:
        """Whether ``device`` (one of the same user's devices) signed this object."""
        return device.user == self.user and signature_valid(
            device.ed25519,
            signed_bytes(self.public_fields(), USER_KEY_PURPOSE),
            self.device_signature,
        )


@dataclass(frozen=True)
class ClaimedKey:
    """A one-time or fallback key handed out by ``keys_claim``, checked against its device."""

    user: str
    device: str
    key_id: str
    key: str
    signature: str
    fallback: bool = False

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> ClaimedKey:
        if not isinstance(obj, Mapping):
            raise UntrustedKeys("a claimed one-time key is not an object; it is ignored")
        return cls(
            user=_text(obj, "user"),
            device=_text(obj, "device"),
            key_id=_text(obj, "key_id"),
            key=_text(obj, "key"),
            signature=_text(obj, "signature"),
            fallback=obj.get("fallback") is True,
        )

    def check(self, device: DeviceKeys) -> None:
        """Refuse (:class:`UntrustedKeys`) a key that ``device`` did not sign for itself."""
        message = one_time_key_signed_bytes(self.user, self.device, self.key_id, self.key)
        if (self.user, self.device) != device.peer or not signature_valid(
            device.ed25519, message, self.signature
        ):
            raise UntrustedKeys(
                f"the one-time key of {device.user}'s device {device.device} is not signed "
                "by that device; no session was made"
            )
