"""The `file`, `recovery_key` and `backup` vectors of docs/e2e-vectors.json, recomputed.

Each value is computed twice: once here from the words of docs/protocol.md 4.12 and 4.13
(struct, hashlib, hmac, base64, and cryptography's bare primitives: AESGCM, X25519,
Ed25519; HKDF and HPKE written out from RFC 5869 and RFC 9180), and once through
chatproto.e2e_files and chatproto.backup. Both must give the bytes the file holds, so a
client written from the protocol alone can check itself against the same file.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import vodozemac
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatproto import backup, e2e_files
from tests.chatproto import make_e2e_vectors

DOCS = Path(__file__).resolve().parents[2] / "docs"
VECTORS: dict[str, Any] = json.loads((DOCS / "e2e-vectors.json").read_text(encoding="utf-8"))
KEYS = VECTORS["keys"]
FILE = VECTORS["file"]
RECOVERY = VECTORS["recovery_key"]
BACKUP = VECTORS["backup"]
BLOBS = ("identity_blob", "session_blob")


def spec_section(number: str) -> str:
    """The text of docs/protocol.md section ``number`` (e.g. "4.12"), spaces folded."""
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    start = text.index(f"\n### {number} ")
    return " ".join(text[start : text.index("\n### ", start + 1)].split())


def b64(data: bytes) -> str:
    """Unpadded standard base64, as section 4 spells keys (stdlib, not chatproto)."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def canonical(value: Any) -> bytes:
    """Canonical JSON as 4.2 defines it: sorted keys, no spaces, UTF-8 as it is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hkdf_by_hand(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with the standard library's HMAC."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for counter in range(1, math.ceil(length / 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


# --- RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM ---------------

KEM_SUITE = b"KEM" + struct.pack(">H", 0x0020)
HPKE_SUITE = b"HPKE" + struct.pack(">HHH", 0x0020, 0x0001, 0x0002)


def labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), b"HPKE-v1" + suite + label + ikm, hashlib.sha256).digest()


def labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = struct.pack(">H", length) + b"HPKE-v1" + suite + label + info
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + labeled_info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def hpke_key_and_nonce(dh: bytes, enc: bytes, recipient: bytes, info: bytes) -> tuple[bytes, bytes]:
    eae_prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    shared = labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", enc + recipient, 32)
    psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash  # mode_base
    secret = labeled_extract(HPKE_SUITE, shared, b"secret", b"")
    return (
        labeled_expand(HPKE_SUITE, secret, b"key", context, 32),
        labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12),
    )


def hpke_open(private: bytes, ciphertext: bytes, info: bytes) -> bytes:
    """Single-shot open: the encapsulated key (32 bytes), then the AEAD output (aad empty)."""
    enc, sealed = ciphertext[:32], ciphertext[32:]
    recipient = X25519PrivateKey.from_private_bytes(private)
    dh = recipient.exchange(X25519PublicKey.from_public_bytes(enc))
    key, nonce = hpke_key_and_nonce(dh, enc, recipient.public_key().public_bytes_raw(), info)
    return AESGCM(key).decrypt(nonce, sealed, b"")


def hpke_seal(public: bytes, ephemeral: bytes, plaintext: bytes, info: bytes) -> bytes:
    sender = X25519PrivateKey.from_private_bytes(ephemeral)
    enc = sender.public_key().public_bytes_raw()
    dh = sender.exchange(X25519PublicKey.from_public_bytes(public))
    key, nonce = hpke_key_and_nonce(dh, enc, public, info)
    return enc + AESGCM(key).encrypt(nonce, plaintext, b"")


# --- 4.12: the chunks ------------------------------------------------------------------------

FILE_KEY = bytes.fromhex(FILE["key_hex"])
TRANSFER = bytes.fromhex(FILE["transfer"])
CONTENT = bytes(i % 251 for i in range(FILE["size"]))  # as "content" says


def nonce_by_hand(index: int) -> bytes:
    return struct.pack(">IQ", 0, index)  # 0x00000000 || u64(i)


def aad_by_hand(index: int, last: bool) -> bytes:
    return b"chat.file.v1" + TRANSFER + struct.pack(">QB", index, 1 if last else 0)


def test_the_file_is_its_description() -> None:
    assert FILE["content"] == f"{FILE['size']:,} bytes, byte i is i mod 251"
    assert hashlib.sha256(CONTENT).hexdigest() == FILE["sha256"]
    assert len(FILE_KEY) == 32 and len(TRANSFER) == 16
    assert [chunk["index"] for chunk in FILE["chunks"]] == [0, 1]
    assert FILE["chunks"][1]["piece_size"] < FILE["chunks"][0]["piece_size"] == 65_520


@pytest.mark.parametrize("chunk", FILE["chunks"], ids=lambda chunk: f"chunk{chunk['index']}")
def test_nonce_and_aad_are_the_specs_bytes(chunk: dict[str, Any]) -> None:
    index, last = chunk["index"], chunk["last"]
    assert last == (index == len(FILE["chunks"]) - 1)
    assert nonce_by_hand(index).hex() == chunk["nonce_hex"] == e2e_files.nonce(index).hex()
    assert aad_by_hand(index, last).hex() == chunk["aad_hex"]
    assert e2e_files.chunk_aad(TRANSFER, index, last).hex() == chunk["aad_hex"]
    assert len(bytes.fromhex(chunk["nonce_hex"])) == 12
    assert len(bytes.fromhex(chunk["aad_hex"])) == len("chat.file.v1") + 16 + 8 + 1


@pytest.mark.parametrize("chunk", FILE["chunks"], ids=lambda chunk: f"chunk{chunk['index']}")
def test_each_chunk_is_aes_256_gcm_of_its_piece(chunk: dict[str, Any]) -> None:
    index = chunk["index"]
    piece = CONTENT[index * 65_520 : (index + 1) * 65_520]
    assert len(piece) == chunk["piece_size"]
    sealed = bytes.fromhex(chunk["chunk_hex"])
    by_hand = AESGCM(FILE_KEY).encrypt(
        nonce_by_hand(index), piece, aad_by_hand(index, chunk["last"])
    )
    assert by_hand == sealed
    assert len(sealed) == len(piece) + 16
    cipher = e2e_files.ChunkCipher(FILE_KEY, FILE["transfer"], FILE["size"])
    assert cipher.encrypt(index, piece) == sealed
    assert cipher.decrypt(index, sealed) == piece


@pytest.mark.parametrize("chunk", FILE["chunks"], ids=lambda chunk: f"chunk{chunk['index']}")
def test_a_chunk_opens_only_with_its_own_last_flag(chunk: dict[str, Any]) -> None:
    index, last = chunk["index"], chunk["last"]
    with pytest.raises(InvalidTag):
        AESGCM(FILE_KEY).decrypt(
            nonce_by_hand(index), bytes.fromhex(chunk["chunk_hex"]), aad_by_hand(index, not last)
        )


@pytest.mark.parametrize("vector", FILE["encrypted_size"], ids=lambda vector: str(vector["size"]))
def test_encrypted_size_is_the_formula(vector: dict[str, Any]) -> None:
    size = vector["size"]
    assert vector["encrypted_size"] == size + 16 * math.ceil(size / 65_520)
    assert e2e_files.encrypted_size(size) == vector["encrypted_size"]


def test_the_encrypted_sizes_are_the_ones_the_spec_names() -> None:
    sizes = [vector["size"] for vector in FILE["encrypted_size"]]
    assert sizes == [0, 1, 65_520, 65_521, 2**30]
    stream = sum(len(bytes.fromhex(chunk["chunk_hex"])) for chunk in FILE["chunks"])
    assert stream == e2e_files.encrypted_size(FILE["size"])


def test_the_file_plaintext_has_the_specs_fields() -> None:
    plaintext = FILE["plaintext"]
    spelled = re.search(r'\{"type": "file", ([^}]*)\}', spec_section("4.12"))
    assert spelled is not None
    fields = {"type", *re.findall(r'"([a-z_0-9]+)"', spelled.group(1))}
    assert set(plaintext) == fields
    assert plaintext["type"] == "file"
    assert plaintext["conversation"] == "pm:alice:bob"
    assert plaintext["transfer"] == FILE["transfer"]
    assert plaintext["size"] == FILE["size"]
    assert plaintext["sha256"] == FILE["sha256"]
    assert unb64(plaintext["key"]) == FILE_KEY
    assert b64(FILE_KEY) == plaintext["key"]


def test_the_file_plaintext_is_chatprotos_and_parses_back() -> None:
    plaintext = FILE["plaintext"]
    made = e2e_files.file_plaintext(
        conversation=plaintext["conversation"],
        sender=plaintext["sender"],
        sender_device=plaintext["sender_device"],
        transfer=FILE["transfer"],
        name=plaintext["name"],
        size=FILE["size"],
        sha256=FILE["sha256"],
        key=FILE_KEY,
    )
    assert made == plaintext
    offered = e2e_files.encrypted_size(FILE["size"])
    facts = e2e_files.parse_file_plaintext(
        plaintext, transfer=FILE["transfer"], offered_size=offered
    )
    assert (facts.name, facts.size, facts.sha256, facts.key) == (
        plaintext["name"],
        FILE["size"],
        FILE["sha256"],
        FILE_KEY,
    )


def test_section_4_12_states_chatprotos_constants() -> None:
    text = spec_section("4.12")
    assert f"**pieces** of {e2e_files.PIECE_SIZE:,} bytes" in text
    assert f'"{e2e_files.AAD_LABEL.decode()}" (ASCII)' in text
    assert f"`file_cancel` reason `{e2e_files.NOT_VERIFIED}`" in text
    assert f'{{"type": "{e2e_files.MEGOLM_FILE}", ' in text
    assert "16-byte tag" in text and e2e_files.TAG_SIZE == 16
    assert f"at most {e2e_files.PIECE_SIZE + e2e_files.TAG_SIZE:,} (3.3's limit)" in text


# --- 4.13: the recovery key ------------------------------------------------------------------

SECRET = bytes.fromhex(RECOVERY["secret_hex"])
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def test_the_recovery_key_text_is_base32_of_the_key_and_its_check() -> None:
    check = hashlib.sha256(b"chat.recovery_key.v1" + SECRET).digest()[:3]
    compact = base64.b32encode(SECRET + check).decode("ascii")
    assert len(compact) == 56 and "=" not in compact
    grouped = " ".join(compact[i : i + 4] for i in range(0, 56, 4))
    assert RECOVERY["text"] == grouped
    assert len(RECOVERY["text"].split(" ")) == 14
    assert backup.format_recovery_key(SECRET) == grouped


def test_the_typed_spelling_reads_back_and_is_loose() -> None:
    typed = RECOVERY["typed"]
    assert "-" in typed and " " in typed
    assert any(c.islower() for c in typed) and any(c.isupper() for c in typed)
    assert backup.parse_recovery_key(typed) == SECRET
    assert backup.parse_recovery_key(RECOVERY["text"]) == SECRET
    by_hand = base64.b32decode(re.sub(r"[\s-]", "", typed).upper())
    assert by_hand[:32] == SECRET


def test_the_typo_is_one_character_and_only_the_check_catches_it() -> None:
    text, typo = RECOVERY["text"], RECOVERY["typo"]
    assert len(typo) == len(text)
    assert sum(a != b for a, b in zip(text, typo, strict=True)) == 1
    assert set(typo.replace(" ", "")) <= set(ALPHABET)  # same length, same alphabet
    raw = base64.b32decode(typo.replace(" ", ""))
    assert hashlib.sha256(b"chat.recovery_key.v1" + raw[:32]).digest()[:3] != raw[32:]
    with pytest.raises(backup.RecoveryKeyTypo):
        backup.parse_recovery_key(typo)


@pytest.mark.parametrize("name", ["private_key", "mac_key"])
def test_the_backup_key_is_hkdf_of_the_recovery_key(name: str) -> None:
    info = {"private_key": b"chat.backup.v1|private", "mac_key": b"chat.backup.v1|mac"}[name]
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(SECRET)
    assert hkdf_by_hand(SECRET, b"", info, 32) == derived
    assert b64(derived) == RECOVERY[name]
    assert getattr(backup.BackupKey.from_recovery_key(SECRET), name) == derived


def test_the_public_key_is_the_x25519_public_half() -> None:
    private = X25519PrivateKey.from_private_bytes(unb64(RECOVERY["private_key"]))
    assert b64(private.public_key().public_bytes_raw()) == RECOVERY["public_key"]
    assert backup.BackupKey.from_recovery_key(SECRET).public_key == RECOVERY["public_key"]


# --- 4.13: the blobs and the backup object ---------------------------------------------------

PRIVATE_KEY = unb64(RECOVERY["private_key"])
MAC_KEY = unb64(RECOVERY["mac_key"])
BACKUP_KEY = backup.BackupKey(PRIVATE_KEY, MAC_KEY)


@pytest.mark.parametrize("name", BLOBS)
def test_a_blobs_info_names_its_user_version_and_slot(name: str) -> None:
    vector = BACKUP[name]
    by_hand = f"chat.backup.v1|{vector['user']}|{vector['version']}|{vector['slot']}"
    assert vector["info"] == by_hand
    assert backup.blob_info(vector["user"], vector["version"], vector["slot"]) == by_hand.encode()


@pytest.mark.parametrize("name", BLOBS)
def test_a_blobs_mac_is_hmac_of_info_newline_ciphertext(name: str) -> None:
    vector = BACKUP[name]
    ciphertext = unb64(vector["blob"]["ciphertext"])
    mac = hmac.new(MAC_KEY, vector["info"].encode() + b"\n" + ciphertext, hashlib.sha256).digest()
    assert b64(mac) == vector["blob"]["mac"]


@pytest.mark.parametrize("name", BLOBS)
def test_a_blob_opens_by_hand_to_the_canonical_plaintext(name: str) -> None:
    vector = BACKUP[name]
    ciphertext = unb64(vector["blob"]["ciphertext"])
    plaintext = canonical(vector["plaintext"])
    assert len(ciphertext) == 32 + len(plaintext) + 16  # enc, then the AEAD output and tag
    assert hpke_open(PRIVATE_KEY, ciphertext, vector["info"].encode()) == plaintext


@pytest.mark.parametrize("name", BLOBS)
def test_a_blob_opens_through_chatproto(name: str) -> None:
    vector = BACKUP[name]
    opened = backup.open_blob(
        BACKUP_KEY, vector["user"], vector["version"], vector["slot"], vector["blob"]
    )
    assert opened == vector["plaintext"]


def test_a_blob_sealed_by_hand_opens_through_chatproto() -> None:
    """The other direction: RFC 9180 written out here, chatproto's HPKE on the other end."""
    vector = BACKUP["identity_blob"]
    info = vector["info"].encode()
    public = unb64(RECOVERY["public_key"])
    ciphertext = hpke_seal(public, bytes(range(64, 96)), canonical(vector["plaintext"]), info)
    mac = hmac.new(MAC_KEY, info + b"\n" + ciphertext, hashlib.sha256).digest()
    blob = {"ciphertext": b64(ciphertext), "mac": b64(mac)}
    assert backup.open_blob(BACKUP_KEY, "alice", 1, "identity", blob) == vector["plaintext"]


def test_the_identity_blob_holds_alices_user_key() -> None:
    vector = BACKUP["identity_blob"]
    assert vector["slot"] == "identity"
    plaintext = vector["plaintext"]
    assert set(plaintext) == {"type", "user_key", "version"} and plaintext["type"] == "identity"
    private = Ed25519PrivateKey.from_private_bytes(unb64(plaintext["user_key"]))
    assert b64(private.public_key().public_bytes_raw()) == KEYS["user_ed25519"]
    assert plaintext["version"] == VECTORS["user_key"]["object"]["version"]
    assert backup.identity_plaintext(plaintext["user_key"], plaintext["version"]) == plaintext


def test_the_session_blob_holds_a_session_vodozemac_imports() -> None:
    vector = BACKUP["session_blob"]
    plaintext = vector["plaintext"]
    spelled = re.search(r'\{"type": "room_key", ([^}]*)\}', spec_section("4.13"))
    assert spelled is not None
    assert set(plaintext) == {"type", *re.findall(r'"([a-z_0-9]+)"', spelled.group(1))}
    assert vector["slot"] == "session:" + plaintext["session_id"]
    session = vodozemac.InboundGroupSession.import_session(
        vodozemac.ExportedSessionKey(plaintext["session_key"])
    )
    assert session.session_id == plaintext["session_id"]
    assert session.first_known_index == 0
    assert plaintext["sender_ed25519"] == KEYS["device_ed25519"]
    assert plaintext["sender_key"] == VECTORS["device_keys"]["object"]["curve25519"]
    fields = {name: value for name, value in plaintext.items() if name != "type"}
    assert backup.session_plaintext(**fields) == plaintext


def test_the_backup_object_has_the_specs_fields() -> None:
    obj = BACKUP["object"]
    assert set(obj) == {"user", "version", "algorithm", "public_key", "identity", "signatures"}
    assert set(obj["signatures"]) == {"user"}
    assert (obj["user"], obj["version"], obj["algorithm"]) == ("alice", 1, "chat.backup.v1")
    assert obj["public_key"] == RECOVERY["public_key"]
    assert obj["identity"] == BACKUP["identity_blob"]["blob"]
    unsigned = {name: value for name, value in obj.items() if name != "signatures"}
    assert (
        backup.backup_object(user="alice", version=1, key=BACKUP_KEY, identity_blob=obj["identity"])
        == unsigned
    )


def test_the_backup_payload_and_signature_are_alices_user_key_over_it() -> None:
    obj = BACKUP["object"]
    unsigned = {name: value for name, value in obj.items() if name != "signatures"}
    payload = canonical({**unsigned, "purpose": "chat.backup.v1"})
    assert payload.hex() == BACKUP["payload_hex"]
    assert backup.backup_payload(obj).hex() == BACKUP["payload_hex"]
    user_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS["user_ed25519_secret_hex"]))
    assert b64(user_key.sign(payload)) == obj["signatures"]["user"]
    assert backup.backup_signature_valid(obj, KEYS["user_ed25519"])
    assert not backup.backup_signature_valid(obj, KEYS["device_ed25519"])


def test_section_4_13_states_chatprotos_constants() -> None:
    text = spec_section("4.13")
    for phrase in (
        '`"chat.recovery_key.v1"` || `R`',
        f"first {backup.CHECK_BYTES} bytes",
        f"{backup.RECOVERY_KEY_LENGTH} characters",
        f"{backup.RECOVERY_KEY_LENGTH // backup.GROUP} groups of {backup.GROUP}",
        '`"chat.backup.v1|private"`',
        '`"chat.backup.v1|mac"`',
        f'"algorithm": "{backup.ALGORITHM}"',
        f"at most {backup.MAX_BACKUP_BYTES:,} bytes as canonical JSON",
        f"1 to {backup.MAX_SESSIONS_PER_PUT} sessions",
        f"at most {backup.MAX_BLOB_CIPHERTEXT_BYTES:,} bytes)",
        f"at most {backup.MAX_BACKUP_SESSIONS:,} sessions per backup",
        f"(1 to {backup.MAX_FETCH_LIMIT}, default {backup.MAX_FETCH_LIMIT})",
        "from 0 to 2^32-1",
        f"slot `{backup.IDENTITY_SLOT}`",
        f"`{backup.SESSION_SLOT_PREFIX}<session_id>`",
    ):
        assert phrase in text, phrase
    assert backup.MAX_FIRST_INDEX == 2**32 - 1


# --- the generator ---------------------------------------------------------------------------


def test_the_generator_keeps_the_stored_blobs() -> None:
    built = make_e2e_vectors.build(VECTORS)
    assert built["backup"] == BACKUP
    assert {name: built[name] for name in VECTORS} == VECTORS


def test_the_generator_seals_new_blobs_when_the_stored_ones_do_not_open() -> None:
    tampered = copy.deepcopy(VECTORS)
    tampered["backup"]["session_blob"]["blob"]["mac"] = b64(bytes(32))
    built = make_e2e_vectors.build(tampered)["backup"]
    assert built["identity_blob"] == BACKUP["identity_blob"]
    assert built["object"] == BACKUP["object"]
    fresh = built["session_blob"]
    assert fresh["blob"] != BACKUP["session_blob"]["blob"]
    assert fresh["plaintext"] == BACKUP["session_blob"]["plaintext"]
    assert (
        backup.open_blob(BACKUP_KEY, "alice", 1, fresh["slot"], fresh["blob"]) == fresh["plaintext"]
    )
    new = make_e2e_vectors.build({})["backup"]
    assert new["object"]["identity"] != BACKUP["object"]["identity"]
    assert backup.backup_signature_valid(new["object"], KEYS["user_ed25519"])
