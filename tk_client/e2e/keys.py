"""The public key objects peers publish, parsed, and refused unless their signatures check.

Which bytes each signature covers, and the checks, are ``chatproto.e2e``'s (the same in
every client and the server); here they are parsed into typed objects. A client refuses an
object whose signature does not check (:class:`UntrustedKeys`) before it uses any key in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatproto import e2e

from .errors import UntrustedKeys

Peer = tuple[str, str]
"""A device as (user name, device id)."""

_DEVICE_KEYS_FIELDS = ("user", "device", "curve25519", "ed25519", "signatures")
_USER_KEY_FIELDS = ("user", "ed25519", "version", "signatures")


def _text(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise UntrustedKeys(f"a published key object has no valid {name!r}; it is ignored")
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
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Fields this client does not know: signed too (section 4.2), so kept and re-sent."""

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
            extra={k: v for k, v in obj.items() if k not in _DEVICE_KEYS_FIELDS},
        )
        if not e2e.device_signature_valid(keys.to_wire()):
            raise UntrustedKeys(
                f"device {keys.device} of {keys.user} is not signed by its own key; it is ignored"
            )
        return keys

    @property
    def peer(self) -> Peer:
        return (self.user, self.device)

    def public_fields(self) -> dict[str, Any]:
        """The object without signatures, as published."""
        return {
            **self.extra,
            "user": self.user,
            "device": self.device,
            "curve25519": self.curve25519,
            "ed25519": self.ed25519,
        }

    def signed_bytes(self) -> bytes:
        """What both signatures cover (``chatproto.e2e.device_keys_payload``)."""
        return e2e.device_keys_payload(self.public_fields())

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
        return e2e.user_signature_valid(self.to_wire(), user_ed25519)


@dataclass(frozen=True)
class PublishedUserKey:
    """A user's published user key: ``{"user", "ed25519", "version", "signatures"}``."""

    user: str
    ed25519: str
    version: int
    device_signature: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Fields this client does not know: signed too, so kept."""

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
            extra={k: v for k, v in obj.items() if k not in _USER_KEY_FIELDS},
        )

    def public_fields(self) -> dict[str, Any]:
        return {**self.extra, "user": self.user, "ed25519": self.ed25519, "version": self.version}

    def to_wire(self) -> dict[str, Any]:
        return {**self.public_fields(), "signatures": {"device": self.device_signature}}

    def published_by(self, device: DeviceKeys) -> bool:
        """Whether ``device`` (one of the same user's devices) signed this object."""
        return device.user == self.user and e2e.user_key_signature_valid(
            self.to_wire(), device.ed25519
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
        wire = {"key_id": self.key_id, "key": self.key, "signature": self.signature}
        if (self.user, self.device) != device.peer or not e2e.one_time_key_valid(
            self.user, self.device, wire, device.ed25519
        ):
            raise UntrustedKeys(
                f"the one-time key of {device.user}'s device {device.device} is not signed "
                "by that device; no session was made"
            )
