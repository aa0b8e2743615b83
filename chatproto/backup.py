"""Key backup and the recovery key (docs/protocol.md 4.13): formats that clients share.

A user's Megolm session keys, and their user key, are kept on the server sealed to a
**backup key** that only the user's devices and their recovery key give. The server
stores what it cannot read, and cannot forge either:

- confidentiality is HPKE (RFC 9180, base mode, X25519 / HKDF-SHA256 / AES-256-GCM)
  to the backup's public key, from ``cryptography``;
- authenticity is an HMAC-SHA256 under a second key derived from the same recovery
  key, because anyone who knows a public key (the server too) can seal to it;
- ``info`` names the user, the backup's version and the slot, so a blob cannot be
  moved to another user, version or session.

The recovery key is 32 random bytes with a 3-byte check, in RFC 4648 base32: the
alphabet has no 0, 1, 8 or 9, so nothing in it reads as another character, and the
check catches a typo before anything is fetched.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import crypto_utils, unpadded_b64
from .e2e import _signed_payload, canonical_json
from .errors import CryptoError

ALGORITHM = "chat.backup.v1"  # the backup's "algorithm", and the purpose its signature covers
IDENTITY_SLOT = "identity"
SESSION_SLOT_PREFIX = "session:"
IDENTITY = "identity"  # the "type" of the identity blob's plaintext
ROOM_KEY = "room_key"  # the "type" of a session blob's plaintext

RECOVERY_KEY_BYTES = 32
CHECK_BYTES = 3
RECOVERY_KEY_LENGTH = 56  # base32 characters of the key and its check
GROUP = 4  # characters per group as shown
KEY_SIZE = 32
MAC_SIZE = 32

MAX_SESSIONS_PER_PUT = 100
MAX_FETCH_LIMIT = 500
MAX_BACKUP_SESSIONS = 100_000
MAX_BLOB_CIPHERTEXT_BYTES = 4_096
MAX_BACKUP_BYTES = 4_096  # a backup object as canonical JSON
MAX_FIRST_INDEX = 2**32 - 1

_CHECK_LABEL = b"chat.recovery_key.v1"
_LOOKALIKES = str.maketrans("018", "OIB")  # digits base32 lacks, for the letters they resemble
_PRIVATE_INFO = b"chat.backup.v1|private"
_MAC_INFO = b"chat.backup.v1|mac"


class RecoveryKeyTypo(ValueError):
    """What was typed cannot be a recovery key (length, a character, or its check)."""

    def __init__(self) -> None:
        super().__init__(
            "This is not a recovery key: check it for a typo. It is 56 letters and digits "
            "(2 to 7), in groups of 4."
        )


class BlobRejected(Exception):
    """A backup blob failed to open. One message whatever failed (the MAC, the HPKE
    decryption, the JSON inside), so a server that tampers learns nothing from it."""

    def __init__(self) -> None:
        super().__init__("a key in the backup could not be verified")


# --- the recovery key ----------------------------------------------------------------------


def _check(secret: bytes) -> bytes:
    return crypto_utils.sha256(_CHECK_LABEL + secret)[:CHECK_BYTES]


def new_recovery_key() -> bytes:
    """32 fresh bytes from the operating system's CSPRNG."""
    return os.urandom(RECOVERY_KEY_BYTES)


def format_recovery_key(secret: bytes) -> str:
    """The recovery key as shown: 14 groups of 4 base32 characters."""
    if len(secret) != RECOVERY_KEY_BYTES:
        raise ValueError("a recovery key is 32 bytes")
    text = base64.b32encode(secret + _check(secret)).decode("ascii")
    return " ".join(text[i : i + GROUP] for i in range(0, len(text), GROUP))


def parse_recovery_key(text: str) -> bytes:
    """The 32 bytes of a typed recovery key; :class:`RecoveryKeyTypo` if it cannot be one.

    Case, spaces and hyphens are ignored (people copy it by hand, in groups), and the
    digits 0, 1 and 8, which the alphabet does not have, are read as the letters O, I and
    B that they are mistaken for; the check still catches a wrong guess.
    """
    compact = "".join(text.split()).replace("-", "").upper().translate(_LOOKALIKES)
    if len(compact) != RECOVERY_KEY_LENGTH:
        raise RecoveryKeyTypo()
    try:
        raw = base64.b32decode(compact)
    except (binascii.Error, ValueError):
        raise RecoveryKeyTypo() from None
    secret, check = raw[:RECOVERY_KEY_BYTES], raw[RECOVERY_KEY_BYTES:]
    if not crypto_utils.bytes_equal(check, _check(secret)):
        raise RecoveryKeyTypo()
    return secret


# --- the backup key ------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupKey:
    """The pair a recovery key gives: the X25519 private key that opens blobs, and the
    MAC key that makes and checks them. Devices share this, never the recovery key."""

    private_key: bytes
    mac_key: bytes

    def __post_init__(self) -> None:
        if len(self.private_key) != KEY_SIZE or len(self.mac_key) != KEY_SIZE:
            raise ValueError("a backup key is two 32-byte keys")

    def __repr__(self) -> str:  # never print a key
        return f"BackupKey(public_key={self.public_key!r})"

    @classmethod
    def from_recovery_key(cls, secret: bytes) -> BackupKey:
        return cls(
            crypto_utils.hkdf_sha256(secret, b"", _PRIVATE_INFO, KEY_SIZE),
            crypto_utils.hkdf_sha256(secret, b"", _MAC_INFO, KEY_SIZE),
        )

    @property
    def public_key(self) -> str:
        """The backup's ``public_key``: unpadded base64 of the X25519 public key."""
        private = crypto_utils.x25519_private_from_bytes(self.private_key)
        return unpadded_b64.encode(crypto_utils.x25519_public_bytes(private))

    def share(self, version: int) -> dict[str, Any]:
        """The ``backup`` of ``user_key_share`` and the body of ``backup_key_share``."""
        return {
            "version": version,
            "private_key": unpadded_b64.encode(self.private_key),
            "mac_key": unpadded_b64.encode(self.mac_key),
        }

    @classmethod
    def from_share(cls, share: Mapping[str, Any]) -> tuple[int, BackupKey]:
        """The version and key of a share; ValueError (no detail) if malformed."""
        if not isinstance(share, Mapping):  # it arrives in an Olm plaintext: any JSON
            raise ValueError("a backup key share is malformed")
        version = share.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError("a backup key share names no version")
        try:
            key = cls(
                unpadded_b64.decode(share.get("private_key")),  # type: ignore[arg-type]
                unpadded_b64.decode(share.get("mac_key")),  # type: ignore[arg-type]
            )
        except (ValueError, TypeError):
            raise ValueError("a backup key share is malformed") from None
        return version, key


# --- blobs ---------------------------------------------------------------------------------


def session_slot(session_id: str) -> str:
    """The slot of a Megolm session's blob."""
    return SESSION_SLOT_PREFIX + session_id


def blob_info(user: str, version: int, slot: str) -> bytes:
    """HPKE's ``info`` and the MAC's prefix: binds a blob to its user, version and slot."""
    return f"{ALGORITHM}|{user}|{version}|{slot}".encode()


def _mac_input(info: bytes, ciphertext: bytes) -> bytes:
    return info + b"\n" + ciphertext


def seal_blob(
    key: BackupKey, user: str, version: int, slot: str, plaintext: Mapping[str, Any]
) -> dict[str, str]:
    """A blob of ``plaintext`` (as canonical JSON) for ``slot`` of ``user``'s backup."""
    info = blob_info(user, version, slot)
    public = unpadded_b64.decode(key.public_key)
    ciphertext = crypto_utils.hpke_seal(public, canonical_json(plaintext), info)
    mac = crypto_utils.hmac_sha256(key.mac_key, _mac_input(info, ciphertext))
    return {"ciphertext": unpadded_b64.encode(ciphertext), "mac": unpadded_b64.encode(mac)}


def open_blob(
    key: BackupKey, user: str, version: int, slot: str, blob: Mapping[str, Any]
) -> dict[str, Any]:
    """The plaintext of a blob, its MAC checked first in constant time.

    :class:`BlobRejected` for every failure: a wrong shape, a wrong MAC (altered, or
    sealed by someone without the backup key, or moved from another slot), or a
    ciphertext that does not open.
    """
    info = blob_info(user, version, slot)
    try:
        ciphertext = unpadded_b64.decode(blob["ciphertext"])
        mac = unpadded_b64.decode(blob["mac"])
    except (KeyError, TypeError, ValueError):
        raise BlobRejected() from None
    if len(mac) != MAC_SIZE or not crypto_utils.verify_hmac_sha256(
        key.mac_key, _mac_input(info, ciphertext), mac
    ):
        raise BlobRejected()
    try:
        plaintext = crypto_utils.hpke_open(key.private_key, ciphertext, info)
        opened = _json_object(plaintext)
    except (CryptoError, ValueError, RecursionError):  # deep nesting overflows json's parser
        raise BlobRejected() from None
    return opened


def _no_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _json_object(data: bytes) -> dict[str, Any]:
    """The object a blob seals: canonical JSON, so NaN and Infinity are refused too."""
    value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    if not isinstance(value, dict):
        raise ValueError("a blob holds an object")
    return value


def identity_plaintext(user_key_private_b64: str, user_key_version: int) -> dict[str, Any]:
    """What the ``identity`` blob seals: the user key's private half and its version."""
    return {"type": IDENTITY, "user_key": user_key_private_b64, "version": user_key_version}


def session_plaintext(
    *,
    conversation: str,
    session_id: str,
    session_key: str,
    sender: str,
    sender_device: str,
    sender_key: str,
    sender_ed25519: str,
) -> dict[str, Any]:
    """What a session blob seals: the session exported at its first known index, and
    who sent it, as a ``forwarded_room_key`` records them."""
    return {
        "type": ROOM_KEY,
        "conversation": conversation,
        "session_id": session_id,
        "session_key": session_key,
        "sender": sender,
        "sender_device": sender_device,
        "sender_key": sender_key,
        "sender_ed25519": sender_ed25519,
    }


# --- the backup object ---------------------------------------------------------------------


def backup_object(
    *, user: str, version: int, key: BackupKey, identity_blob: Mapping[str, str]
) -> dict[str, Any]:
    """A backup object without ``signatures`` (the user key signs :func:`backup_payload`)."""
    return {
        "user": user,
        "version": version,
        "algorithm": ALGORITHM,
        "public_key": key.public_key,
        "identity": dict(identity_blob),
    }


def backup_payload(backup: Mapping[str, Any]) -> bytes:
    """The bytes ``signatures.user`` covers: the object without ``signatures``, with
    ``"purpose": "chat.backup.v1"`` set (as every signature of 4.2)."""
    return _signed_payload(backup, ALGORITHM)


def backup_signature_valid(backup: Mapping[str, Any], user_ed25519: str) -> bool:
    """``signatures.user`` is the signature of the user key ``user_ed25519`` (base64)."""
    signatures = backup.get("signatures")
    signature = signatures.get("user") if isinstance(signatures, Mapping) else None
    if not isinstance(signature, str):
        return False
    return crypto_utils.verify_ed25519(user_ed25519, signature, backup_payload(backup))


def sign_backup(backup: Mapping[str, Any], user_key_private: bytes) -> dict[str, Any]:
    """``backup`` with ``signatures.user`` made by the user key's private half."""
    signed = {name: value for name, value in backup.items() if name != "signatures"}
    signed["signatures"] = {
        "user": crypto_utils.ed25519_sign(user_key_private, backup_payload(backup))
    }
    return signed
