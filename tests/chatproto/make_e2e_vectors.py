"""Writes docs/e2e-vectors.json, the known answers of docs/protocol.md section 4.

Run once (``python -m tests.chatproto.make_e2e_vectors``); the file is then the
reference, and ``test_e2e_formats.py`` and ``test_e2e_files_backup_vectors.py``
recompute every value in it. The inputs are public test keys: the Ed25519 secrets
of RFC 8032 section 7.1 (tests 1, 2 and 3) and the X25519 public keys of RFC 7748
section 6.1, and fixed byte patterns for the file key, the transfer, the recovery
key and a Megolm session. Ed25519 signatures and AES-GCM under a fixed nonce are
deterministic, so running this again writes the same file. HPKE is not (its
ephemeral key is random): the two backup blobs were sealed once, and a run keeps
the blobs the file already holds as long as they still open to the same plaintext
under the same key and ``info`` (it seals new ones only when an input changed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chatproto import backup, crypto_utils, e2e, e2e_files, unpadded_b64

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "e2e-vectors.json"

DEVICE_SECRET = (
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"  # RFC 8032 test 1
)
USER_SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"  # test 2
BOB_USER_SECRET = "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"  # test 3
ALICE_CURVE25519 = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"  # RFC 7748
BOB_CURVE25519 = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"  # RFC 7748

# 4.12: a file of two pieces, the second 10 bytes long; byte i is i mod 251, so anyone
# can rebuild the file from this line.
FILE_KEY = bytes(range(32))
FILE_TRANSFER = "00112233445566778899aabbccddeeff"
FILE_SIZE = e2e_files.PIECE_SIZE + 10
FILE_NAME = "résumé 2026.pdf"
ENCRYPTED_SIZES = (0, 1, e2e_files.PIECE_SIZE, e2e_files.PIECE_SIZE + 1, 2**30)
# 4.13: the recovery key, and a Megolm session exported at index 0 from fixed parts
# (its ratchet 0, 1, ... 127 and the Ed25519 key of the secret 32, 33, ... 63).
RECOVERY_KEY = bytes(range(0x80, 0xA0))
SESSION_RATCHET = bytes(range(128))
SESSION_SIGNING_SECRET = bytes(range(32, 64)).hex()


def file_content() -> bytes:
    """The vector file's bytes: byte i is i mod 251."""
    return bytes(i % 251 for i in range(FILE_SIZE))


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


def file_section(device_ed25519: str) -> dict[str, Any]:
    """4.12's known answers: the chunks of a two-piece file and the offer's plaintext."""
    content = file_content()
    cipher = e2e_files.ChunkCipher(FILE_KEY, FILE_TRANSFER, FILE_SIZE)
    transfer = bytes.fromhex(FILE_TRANSFER)
    chunks = []
    for index in range(cipher.pieces):
        piece = content[index * e2e_files.PIECE_SIZE : (index + 1) * e2e_files.PIECE_SIZE]
        chunks.append(
            {
                "index": index,
                "last": index == cipher.pieces - 1,
                "piece_size": len(piece),
                "nonce_hex": e2e_files.nonce(index).hex(),
                "aad_hex": e2e_files.chunk_aad(transfer, index, index == cipher.pieces - 1).hex(),
                "chunk_hex": cipher.encrypt(index, piece).hex(),
            }
        )
    sha256 = crypto_utils.sha256(content).hex()
    plaintext = e2e_files.file_plaintext(
        conversation=e2e.conversation_id(pm=("alice", "bob")),
        sender="alice",
        sender_device="D7K2QX9A",
        transfer=FILE_TRANSFER,
        name=FILE_NAME,
        size=FILE_SIZE,
        sha256=sha256,
        key=FILE_KEY,
    )
    return {
        "key_hex": FILE_KEY.hex(),
        "transfer": FILE_TRANSFER,
        "content": f"{FILE_SIZE:,} bytes, byte i is i mod 251",
        "size": FILE_SIZE,
        "sha256": sha256,
        "chunks": chunks,
        "encrypted_size": [
            {"size": size, "encrypted_size": e2e_files.encrypted_size(size)}
            for size in ENCRYPTED_SIZES
        ],
        "plaintext": plaintext,
    }


def recovery_key_section() -> dict[str, Any]:
    """4.13's recovery key: as shown, as it may be typed back, with a typo, and what it
    derives."""
    text = backup.format_recovery_key(RECOVERY_KEY)
    loose = "-".join(text.lower().split(" ")[:7]) + "  " + " ".join(text.split(" ")[7:])
    typo = text[:5] + ("B" if text[5] != "B" else "C") + text[6:]  # one character changed
    key = backup.BackupKey.from_recovery_key(RECOVERY_KEY)
    return {
        "secret_hex": RECOVERY_KEY.hex(),
        "text": text,
        "typed": loose,
        "typo": typo,
        "private_key": unpadded_b64.encode(key.private_key),
        "public_key": key.public_key,
        "mac_key": unpadded_b64.encode(key.mac_key),
    }


def _kept_or_sealed(
    previous: Any, key: backup.BackupKey, slot: str, plaintext: Mapping[str, Any]
) -> dict[str, str]:
    """The blob the file holds if it still opens to ``plaintext``, else a new one."""
    if isinstance(previous, Mapping):
        blob = {"ciphertext": previous.get("ciphertext"), "mac": previous.get("mac")}
        try:
            if backup.open_blob(key, "alice", 1, slot, blob) == plaintext:
                return blob  # type: ignore[return-value]
        except backup.BlobRejected:
            pass
    return backup.seal_blob(key, "alice", 1, slot, plaintext)


def session_key_export() -> tuple[str, str]:
    """A Megolm session exported at index 0 (vodozemac's ExportedSessionKey: version 1,
    the index, the ratchet, the signing key) and its session id (that key)."""
    signing = unpadded_b64.decode(public_b64(SESSION_SIGNING_SECRET))
    exported = b"\x01" + (0).to_bytes(4, "big") + SESSION_RATCHET + signing
    return unpadded_b64.encode(exported), unpadded_b64.encode(signing)


def backup_section(previous: Mapping[str, Any], device_ed25519: str) -> dict[str, Any]:
    """4.13's backup: the signed object, and an identity blob and a session blob."""
    key = backup.BackupKey.from_recovery_key(RECOVERY_KEY)
    identity = backup.identity_plaintext(unpadded_b64.encode(bytes.fromhex(USER_SECRET)), 1)
    session_key, session_id = session_key_export()
    session = backup.session_plaintext(
        conversation=e2e.conversation_id(pm=("alice", "bob")),
        session_id=session_id,
        session_key=session_key,
        sender="alice",
        sender_device="D7K2QX9A",
        sender_key=unpadded_b64.encode(bytes.fromhex(ALICE_CURVE25519)),
        sender_ed25519=device_ed25519,
    )
    blobs: dict[str, dict[str, Any]] = {}
    sealed: dict[str, dict[str, str]] = {}
    for name, slot, plaintext in (
        ("identity_blob", backup.IDENTITY_SLOT, identity),
        ("session_blob", backup.session_slot(session_id), session),
    ):
        old = previous.get(name)
        blob = sealed[name] = _kept_or_sealed(
            old.get("blob") if isinstance(old, Mapping) else None, key, slot, plaintext
        )
        blobs[name] = {
            "user": "alice",
            "version": 1,
            "slot": slot,
            "info": backup.blob_info("alice", 1, slot).decode(),
            "blob": blob,
            "plaintext": plaintext,
        }
    unsigned = backup.backup_object(
        user="alice", version=1, key=key, identity_blob=sealed["identity_blob"]
    )
    return {
        "object": backup.sign_backup(unsigned, bytes.fromhex(USER_SECRET)),
        "payload_hex": backup.backup_payload(unsigned).hex(),
        **blobs,
    }


def build(previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every section; ``previous`` (the file as it is) gives the backup blobs to keep."""
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
        "file": file_section(device_ed25519),
        "recovery_key": recovery_key_section(),
        "backup": backup_section((previous or {}).get("backup") or {}, device_ed25519),
    }


def previous_file() -> dict[str, Any]:
    """The vectors as the file holds them now (empty if there is none)."""
    if not VECTORS.exists():
        return {}
    loaded = json.loads(VECTORS.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def render() -> str:
    """The file's text: two-space indents, UTF-8 as it is, a final newline."""
    return json.dumps(build(previous_file()), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    VECTORS.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
