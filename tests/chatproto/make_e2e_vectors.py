"""Writes docs/e2e-vectors.json, the known answers of docs/protocol.md section 4.

Run once (``python -m tests.chatproto.make_e2e_vectors``); the file is then the
reference, and ``test_e2e_formats.py`` recomputes every value in it. The inputs
are public test keys: the Ed25519 secrets of RFC 8032 section 7.1 (tests 1, 2
and 3) and the X25519 public keys of RFC 7748 section 6.1. Ed25519 signatures
are deterministic, so running this again writes the same file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chatproto import e2e, unpadded_b64

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "e2e-vectors.json"

DEVICE_SECRET = (
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"  # RFC 8032 test 1
)
USER_SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"  # test 2
BOB_USER_SECRET = "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"  # test 3
ALICE_CURVE25519 = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"  # RFC 7748
BOB_CURVE25519 = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"  # RFC 7748


def private_key(secret_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret_hex))


def public_b64(secret_hex: str) -> str:
    raw = (
        private_key(secret_hex)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return unpadded_b64.encode(raw)


def sign(secret_hex: str, data: bytes) -> str:
    return unpadded_b64.encode(private_key(secret_hex).sign(data))


def build() -> dict[str, Any]:
    device_ed25519 = public_b64(DEVICE_SECRET)
    user_ed25519 = public_b64(USER_SECRET)
    device_keys: dict[str, Any] = {
        "user": "alice",
        "device": "D7K2QX9A",
        "curve25519": unpadded_b64.encode(bytes.fromhex(ALICE_CURVE25519)),
        "ed25519": device_ed25519,
    }
    device_payload = e2e.device_keys_payload(device_keys)
    device_keys["signatures"] = {
        "device": sign(DEVICE_SECRET, device_payload),
        "user": sign(USER_SECRET, device_payload),
    }
    user_key: dict[str, Any] = {"user": "alice", "ed25519": user_ed25519, "version": 1}
    user_payload = e2e.user_key_payload(user_key)
    user_key["signatures"] = {"device": sign(DEVICE_SECRET, user_payload)}
    one_time_key = {
        "key_id": "AAAAAAAAAAE",
        "key": unpadded_b64.encode(bytes.fromhex(BOB_CURVE25519)),
    }
    otk_payload = e2e.one_time_key_payload("alice", "D7K2QX9A", one_time_key)
    one_time_key["signature"] = sign(DEVICE_SECRET, otk_payload)

    bob_ed25519 = public_b64(BOB_USER_SECRET)
    alice_raw, bob_raw = unpadded_b64.decode(user_ed25519), unpadded_b64.decode(bob_ed25519)
    sas_start = {  # a whole Olm plaintext of section 4.4: its type's fields and the addressing
        "type": "sas_start",
        "txn": "k3Jq8s",
        "kind": "device",
        "from_device": "D7K2QX9A",
        "sender": "alice",
        "sender_device": "D7K2QX9A",
        "recipient": "alice",
        "recipient_device": "P4M8WZ1C",
    }
    sas_key = unpadded_b64.encode(bytes.fromhex(ALICE_CURVE25519))
    return {
        "about": "docs/protocol.md section 4 (Vectors): inputs are RFC 8032 7.1 and RFC 7748 "
        "6.1 test keys; base64 is unpadded standard; *_hex are the exact bytes",
        "keys": {
            "device_ed25519_secret_hex": DEVICE_SECRET,
            "device_ed25519": device_ed25519,
            "user_ed25519_secret_hex": USER_SECRET,
            "user_ed25519": user_ed25519,
        },
        "device_keys": {
            "object": device_keys,
            "payload_hex": device_payload.hex(),
        },
        "user_key": {"object": user_key, "payload_hex": user_payload.hex()},
        "one_time_key": {
            "user": "alice",
            "device": "D7K2QX9A",
            "object": one_time_key,
            "payload_hex": otk_payload.hex(),
        },
        "safety_number": {
            "user_a": "alice",
            "key_a": user_ed25519,
            "user_b": "bob",
            "key_b": bob_ed25519,
            "half_a": e2e.safety_number_half("alice", alice_raw),
            "half_b": e2e.safety_number_half("bob", bob_raw),
            "safety_number": e2e.safety_number("alice", alice_raw, "bob", bob_raw),
        },
        "conversation_ids": [
            {"room": "design-team", "id": e2e.conversation_id(room="design-team")},
            {"pm": ["bob", "alice"], "id": e2e.conversation_id(pm=("bob", "alice"))},
            {"pm": ["Zoe", "adam"], "id": e2e.conversation_id(pm=("Zoe", "adam"))},
        ],
        "sas": {
            "public_key": sas_key,
            "start": {**sas_start, "commitment": e2e.sas_commitment(sas_key, sas_start)},
            "bytes_info": e2e.sas_bytes_info(
                ("alice", "D7K2QX9A", sas_key), ("alice", "P4M8WZ1C", device_ed25519), "k3Jq8s"
            ),
            "mac_info": e2e.sas_mac_info(
                ("alice", "D7K2QX9A"), ("alice", "P4M8WZ1C"), "k3Jq8s", "ed25519:D7K2QX9A"
            ),
        },
    }


def render() -> str:
    """The file's text: two-space indents, UTF-8 as it is, a final newline."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    VECTORS.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
