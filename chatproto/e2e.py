"""End-to-end encryption's shared formats (docs/protocol.md section 4).

What every client and the server must compute byte for byte lives here, so that
a client written from the protocol alone can check its output against the
vectors (``docs/e2e-vectors.json``): the bytes each signature covers, the
conversation ids, the safety number, the SAS commitment and info strings, and
the limits. Olm, Megolm and SAS themselves are vodozemac's, on the clients only;
the server uses this module to refuse badly signed uploads and to bound sizes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import crypto_utils, unpadded_b64

# --- names ---------------------------------------------------------------------------------

# The purpose is part of the signed bytes and never sent: a signature made for one kind of
# object cannot be replayed as another (a device's keys as a one-time key, say).
PURPOSE_DEVICE_KEYS = "chat.device_keys.v1"
PURPOSE_USER_KEY = "chat.user_key.v1"
PURPOSE_ONE_TIME_KEY = "chat.one_time_key.v1"

ALGORITHM_OLM = "olm.v1"  # to-device bodies: vodozemac Session
ALGORITHM_MEGOLM = "megolm.v1"  # message bodies: vodozemac GroupSession

OLM_PRE_KEY = 0  # vodozemac's message types, as the to-device body's "type"
OLM_NORMAL = 1

# The "type" of an Olm plaintext (section 4.4), each with the fields every one carries.
ROOM_KEY = "room_key"
ROOM_KEY_REQUEST = "room_key_request"
FORWARDED_ROOM_KEY = "forwarded_room_key"
SAS_START = "sas_start"
SAS_KEY = "sas_key"
SAS_MAC = "sas_mac"
SAS_DONE = "sas_done"
SAS_CANCEL = "sas_cancel"
USER_KEY_SHARE = "user_key_share"
OLM_PLAINTEXT_TYPES = (
    ROOM_KEY,
    ROOM_KEY_REQUEST,
    FORWARDED_ROOM_KEY,
    SAS_START,
    SAS_KEY,
    SAS_MAC,
    SAS_DONE,
    SAS_CANCEL,
    USER_KEY_SHARE,
)
OLM_ENVELOPE_FIELDS = ("sender", "sender_device", "recipient", "recipient_device")
MEGOLM_TEXT = "text"  # the "type" of a Megolm plaintext

SAS_KINDS = ("device", "contact")  # approval of one's own device; verification of a contact
SAS_CANCEL_REASONS = ("user", "mismatch", "timeout", "unexpected")
SAS_TIMEOUT_SECONDS = 600  # between two steps of a verification

# --- limits --------------------------------------------------------------------------------

# An e2e body, as canonical JSON: 4,000 code points of text escape to at most 24,000 bytes,
# Megolm adds ~100 and base64 a third, the other fields ~300: 64 KiB leaves room to spare.
MAX_E2E_BYTES = 65_536
# A to-device body (canonical JSON): a room key in an Olm pre-key message is ~1.5 KB; SAS
# and key requests are smaller. 16 KiB bounds what one queued message costs the server.
MAX_TO_DEVICE_BODY_BYTES = 16_384
# Messages in one to_device request: a 100-member room's rotation is a few hundred.
MAX_TO_DEVICE_MESSAGES = 1_000
# Messages queued for one device that has not acked them, in all and from any one user; a
# request that would pass either is refused whole (rate_limited): nothing queued is dropped,
# so nobody can push a device's room keys out of its queue.
MAX_QUEUED_TO_DEVICE = 10_000
MAX_QUEUED_FROM_ONE_USER = 1_000
# Users in one keys_query: 100 users with ten devices each still fit a 1 MiB record.
MAX_KEYS_QUERY_USERS = 100
MAX_KEYS_CLAIM_DEVICES = 1_000  # devices in one keys_claim (an answer is ~250 bytes each)
# One-time keys in one upload, and unclaimed ones kept per device (vodozemac's Account holds
# 50 unpublished keys at most; a client keeps about that many on the server).
MAX_ONE_TIME_KEYS = 100
MAX_KEY_ID_LENGTH = 64  # vodozemac's key ids are 11 characters
MAX_DEVICE_KEYS_BYTES = 4_096  # a device keys or user key object, as canonical JSON (~400)
MAX_SAS_TRANSACTION_LENGTH = 64  # the "txn" of the SAS messages
CURVE25519_KEY_SIZE = 32
ED25519_KEY_SIZE = crypto_utils.ED25519_KEY_SIZE

# Rotation of a sending device's outbound Megolm session (and on membership changes).
MEGOLM_ROTATION_MESSAGES = 100
MEGOLM_ROTATION_SECONDS = 7 * 24 * 3600

# Safety numbers (Signal's numeric fingerprint, over our user keys).
SAFETY_NUMBER_VERSION = 0
SAFETY_NUMBER_ITERATIONS = 5_200
SAFETY_NUMBER_DIGITS = 60  # 30 per user, shown as 12 groups of 5

# SAS: the info strings that vodozemac's EstablishedSas.bytes / calculate_mac are given.
SAS_BYTES_PREFIX = "CHAT_SAS_V1_BYTES"
SAS_MAC_PREFIX = "CHAT_SAS_V1_MAC"

# --- canonical JSON and the signed payloads ------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, UTF-8 as it is.

    One spelling per value, so that a signer and a verifier who rebuilt the same
    object from different JSON texts agree on what was signed.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _signed_payload(obj: Mapping[str, Any], purpose: str) -> bytes:
    payload = {name: value for name, value in obj.items() if name != "signatures"}
    payload["purpose"] = purpose  # set, never taken from the object: the verifier decides
    return canonical_json(payload)


def device_keys_payload(device_keys: Mapping[str, Any]) -> bytes:
    """What ``signatures.device`` and ``signatures.user`` of a device keys object cover.

    The object without ``signatures`` (every other field, unknown ones too), with
    ``"purpose": "chat.device_keys.v1"`` set.
    """
    return _signed_payload(device_keys, PURPOSE_DEVICE_KEYS)


def user_key_payload(user_key: Mapping[str, Any]) -> bytes:
    """What ``signatures.device`` of a published user key covers (purpose ``chat.user_key.v1``)."""
    return _signed_payload(user_key, PURPOSE_USER_KEY)


def one_time_key_payload(user: str, device: str, one_time_key: Mapping[str, Any]) -> bytes:
    """What a one-time (or fallback) key's ``signature`` covers.

    Exactly five fields: the purpose, the owner's ``user`` and ``device`` (which the
    uploaded object does not carry) and the key's ``key_id`` and ``key``, so that a
    key cannot be presented as another device's.
    """
    return canonical_json(
        {
            "purpose": PURPOSE_ONE_TIME_KEY,
            "user": user,
            "device": device,
            "key_id": one_time_key["key_id"],
            "key": one_time_key["key"],
        }
    )


def signature_of(obj: Mapping[str, Any], signer: str) -> Any:
    """``obj["signatures"][signer]`` if there is one (unchecked), else None."""
    signatures = obj.get("signatures")
    return signatures.get(signer) if isinstance(signatures, Mapping) else None


def device_signature_valid(device_keys: Mapping[str, Any]) -> bool:
    """``signatures.device`` is the device's own ed25519 signature over its keys."""
    public, signature = device_keys.get("ed25519"), signature_of(device_keys, "device")
    if not isinstance(public, str) or not isinstance(signature, str):
        return False
    return crypto_utils.verify_ed25519(public, signature, device_keys_payload(device_keys))


def user_signature_valid(device_keys: Mapping[str, Any], user_ed25519: str) -> bool:
    """``signatures.user`` is the signature of the user key ``user_ed25519`` (b64)."""
    signature = signature_of(device_keys, "user")
    if not isinstance(signature, str):
        return False
    return crypto_utils.verify_ed25519(user_ed25519, signature, device_keys_payload(device_keys))


def user_key_signature_valid(user_key: Mapping[str, Any], device_ed25519: str) -> bool:
    """The user key object was signed by the device whose ed25519 is ``device_ed25519``."""
    signature = signature_of(user_key, "device")
    if not isinstance(signature, str):
        return False
    return crypto_utils.verify_ed25519(device_ed25519, signature, user_key_payload(user_key))


def one_time_key_valid(
    user: str, device: str, one_time_key: Mapping[str, Any], device_ed25519: str
) -> bool:
    """The one-time or fallback key carries the device's signature for this user and device."""
    signature = one_time_key.get("signature")
    if not isinstance(signature, str) or not {"key_id", "key"} <= one_time_key.keys():
        return False
    payload = one_time_key_payload(user, device, one_time_key)
    return crypto_utils.verify_ed25519(device_ed25519, signature, payload)


# --- conversations -------------------------------------------------------------------------


def conversation_id(room: str | None = None, pm: tuple[str, str] | None = None) -> str:
    """``room:<name>`` or ``pm:<a>:<b>`` (the two usernames sorted): what a Megolm
    plaintext and a room key name, so that the server cannot move a message or a
    key into another conversation. Usernames and room names hold no ``:``.
    """
    if (room is None) == (pm is None):
        raise ValueError("give exactly one of room and pm")
    if room is not None:
        return f"room:{room}"
    assert pm is not None
    first, second = sorted(pm)
    if first == second:
        raise ValueError("a private conversation is between two different users")
    return f"pm:{first}:{second}"


# --- safety numbers ------------------------------------------------------------------------


def safety_number_half(user: str, ed25519_key: bytes) -> str:
    """One user's 30 digits: Signal's numeric fingerprint over the raw user key.

    ``h = u16(version) || key || username``, then 5,200 times ``h = SHA-512(h || key)``;
    the first 30 bytes of ``h`` read as six 5-byte big-endian numbers, each mod 100,000
    written as 5 digits.
    """
    if len(ed25519_key) != ED25519_KEY_SIZE:
        raise ValueError(f"a user key is {ED25519_KEY_SIZE} bytes")
    key = bytes(ed25519_key)
    digest = SAFETY_NUMBER_VERSION.to_bytes(2, "big") + key + user.encode("utf-8")
    for _ in range(SAFETY_NUMBER_ITERATIONS):
        digest = crypto_utils.sha512(digest + key)
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5)
    )


def safety_number(user_a: str, key_a: bytes, user_b: str, key_b: bytes) -> str:
    """The 60 digits that two users compare: both halves, the lower one first.

    The order does not depend on who asks, so both users see the same number.
    ``key_a`` and ``key_b`` are the raw 32 bytes of the users' ed25519 user keys.
    """
    halves = sorted((safety_number_half(user_a, key_a), safety_number_half(user_b, key_b)))
    return halves[0] + halves[1]


# --- SAS (device approval and contact verification over vodozemac's Sas) -------------------


def sas_commitment(public_key: str, sas_start: Mapping[str, Any]) -> str:
    """The starter's commitment to its SAS public key, sent in ``sas_start``.

    Unpadded base64 of SHA-256(``public_key`` (its base64 text, ASCII) || canonical
    JSON of the ``sas_start`` body without ``commitment``). The starter reveals its
    key only after the other side's, so neither can choose a key to steer the code.
    """
    start = {name: value for name, value in sas_start.items() if name != "commitment"}
    return unpadded_b64.encode(
        crypto_utils.sha256(public_key.encode("ascii") + canonical_json(start))
    )


def sas_bytes_info(starter: tuple[str, str, str], responder: tuple[str, str, str], txn: str) -> str:
    """The info for ``EstablishedSas.bytes``: whose keys met, in the starter's order.

    ``starter`` and ``responder`` are (user, device, SAS public key b64) each.
    """
    return "|".join((SAS_BYTES_PREFIX, *starter, *responder, txn))


def sas_mac_info(sender: tuple[str, str], receiver: tuple[str, str], txn: str, key_id: str) -> str:
    """The info for ``calculate_mac`` of one key: (user, device) of the side that MACs,
    then of the other side, the transaction and ``key_id`` (``ed25519:<device>``,
    ``user:<user>`` or ``KEY_IDS``).
    """
    return "|".join((SAS_MAC_PREFIX, *sender, *receiver, txn, key_id))
