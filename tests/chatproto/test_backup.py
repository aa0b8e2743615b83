"""chatproto.backup: the recovery key, the backup key, the blobs and the signed backup.

docs/protocol.md 4.13. The server stores the blobs and can seal to the backup's public
key, so the tests play that server: a blob it seals, moves or alters never opens, and
every refusal is the same message. No key material shows in a repr or an error.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatproto import backup, crypto_utils, unpadded_b64
from chatproto.backup import BackupKey, BlobRejected, RecoveryKeyTypo

SECRET = bytes(range(0x80, 0xA0))
KEY = BackupKey.from_recovery_key(SECRET)
OTHER = BackupKey.from_recovery_key(bytes(32))
USER_SECRET = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
USER_ED25519 = crypto_utils.ed25519_public(USER_SECRET)
SESSION_ID = unpadded_b64.encode(bytes(range(32)))
SLOT = backup.session_slot(SESSION_ID)
PLAINTEXT = backup.session_plaintext(
    conversation="pm:alice:bob",
    session_id=SESSION_ID,
    session_key="AQAAAAA",
    sender="alice",
    sender_device="D7K2QX9A",
    sender_key=unpadded_b64.encode(bytes(32)),
    sender_ed25519=USER_ED25519,
)


def text_of(secret: bytes) -> str:
    return backup.format_recovery_key(secret)


# --- the recovery key ----------------------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, bytes(32), b"\xff" * 32, os.urandom(32)])
def test_a_recovery_key_reads_back(secret: bytes) -> None:
    text = text_of(secret)
    assert len(text) == 56 + 13
    assert [len(group) for group in text.split(" ")] == [4] * 14
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567 ")
    assert backup.parse_recovery_key(text) == secret


def test_new_recovery_key_is_32_fresh_bytes() -> None:
    keys = {backup.new_recovery_key() for _ in range(4)}
    assert len(keys) == 4 and all(len(key) == 32 for key in keys)


@pytest.mark.parametrize(
    "spell",
    [
        str.lower,
        lambda text: text.replace(" ", ""),
        lambda text: text.replace(" ", "-"),
        lambda text: text.replace(" ", " - "),
        lambda text: "  " + text.lower().replace(" ", "\t") + "\n",
        lambda text: "".join(c.lower() if i % 2 else c for i, c in enumerate(text)),
        lambda text: "-".join(text.replace(" ", "")),  # a hyphen between every character
    ],
    ids=[
        "lower",
        "no-spaces",
        "hyphens",
        "spaced-hyphens",
        "tabs-newlines",
        "mixed",
        "all-hyphens",
    ],
)
def test_case_spaces_and_hyphens_are_ignored(spell: Callable[[str], str]) -> None:
    assert backup.parse_recovery_key(spell(text_of(SECRET))) == SECRET


def one_changed(text: str) -> str:
    """The recovery key with its 6th character replaced by another letter of the alphabet."""
    return text[:5] + ("B" if text[5] != "B" else "C") + text[6:]


TEXT = text_of(SECRET)
TYPOS = {
    "empty": "",
    "one-short": TEXT[:-1],
    "one-more": TEXT + "A",
    "a-group-missing": TEXT[:-5],
    "a-group-more": TEXT + " AAAA",
    "letter-O-as-zero": TEXT.replace(TEXT[0], "0", 1),
    "digit-1": TEXT[:-1] + "1",
    "digit-8": TEXT[:-1] + "8",
    "digit-9": TEXT[:-1] + "9",
    "padding": TEXT[:-1] + "=",
    "punctuation": TEXT[:-1] + "!",
    "accented": TEXT[:-1] + "É",
    "check-wrong": one_changed(TEXT),
    "two-swapped": TEXT[:5] + TEXT[6] + TEXT[5] + TEXT[7:] if TEXT[5] != TEXT[6] else "",
    "other-keys-check": TEXT[:-5] + text_of(bytes(32))[-4:],
}


def test_digits_typed_for_the_letters_they_look_like_read_back() -> None:
    """0, 1 and 8 are not in the alphabet: they are read as O, I and B."""
    secret = next(
        s for s in (bytes([n]) * 32 for n in range(256)) if {"O", "I", "B"} <= set(text_of(s))
    )
    text = text_of(secret)
    assert (
        backup.parse_recovery_key(text.replace("O", "0").replace("I", "1").replace("B", "8"))
        == secret
    )


@pytest.mark.parametrize("typed", TYPOS.values(), ids=TYPOS.keys())
def test_a_typo_is_refused(typed: str) -> None:
    with pytest.raises(RecoveryKeyTypo) as caught:
        backup.parse_recovery_key(typed)
    assert str(caught.value) == str(RecoveryKeyTypo())
    assert isinstance(caught.value, ValueError)


def test_the_typo_message_says_what_to_do_and_not_what_was_typed() -> None:
    message = str(RecoveryKeyTypo())
    assert "check it for a typo" in message
    with pytest.raises(RecoveryKeyTypo) as caught:
        backup.parse_recovery_key(one_changed(TEXT))
    assert TEXT[:4] not in str(caught.value)


def test_the_check_is_sha256_of_the_label_and_key() -> None:
    raw = base64.b32decode(TEXT.replace(" ", ""))
    assert raw[:32] == SECRET
    assert raw[32:] == hashlib.sha256(b"chat.recovery_key.v1" + SECRET).digest()[:3]


@pytest.mark.parametrize("secret", [b"", bytes(31), bytes(33)])
def test_only_32_bytes_make_a_recovery_key(secret: bytes) -> None:
    with pytest.raises(ValueError):
        backup.format_recovery_key(secret)


# --- the backup key ------------------------------------------------------------------------


def hkdf(info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(SECRET)


def test_the_backup_key_is_hkdf_of_the_recovery_key() -> None:
    assert KEY.private_key == hkdf(b"chat.backup.v1|private")
    assert KEY.mac_key == hkdf(b"chat.backup.v1|mac")
    assert KEY.private_key != KEY.mac_key


def test_the_public_key_is_the_private_keys_x25519_half() -> None:
    public = X25519PrivateKey.from_private_bytes(KEY.private_key).public_key().public_bytes_raw()
    assert unpadded_b64.decode(KEY.public_key) == public
    assert KEY.public_key != OTHER.public_key


@pytest.mark.parametrize(("private", "mac"), [(bytes(31), bytes(32)), (bytes(32), bytes(33))])
def test_a_backup_key_is_two_32_byte_keys(private: bytes, mac: bytes) -> None:
    with pytest.raises(ValueError):
        BackupKey(private, mac)


def test_a_backup_key_shows_no_key_material() -> None:
    shown = repr(KEY) + str(KEY) + f"{KEY}"
    for secret in (KEY.private_key, KEY.mac_key, SECRET):
        assert secret.hex() not in shown
        assert unpadded_b64.encode(secret) not in shown
        assert repr(secret) not in shown
    assert KEY.public_key in shown


# --- sharing the backup key ----------------------------------------------------------------


def test_a_share_round_trips() -> None:
    share = KEY.share(3)
    assert set(share) == {"version", "private_key", "mac_key"}
    assert json.loads(json.dumps(share)) == share  # plain JSON, as it travels over Olm
    assert BackupKey.from_share(share) == (3, KEY)


GOOD_SHARE = KEY.share(1)
BAD_SHARES: dict[str, Any] = {
    "no-version": {k: v for k, v in GOOD_SHARE.items() if k != "version"},
    "version-0": {**GOOD_SHARE, "version": 0},
    "version-negative": {**GOOD_SHARE, "version": -1},
    "version-bool": {**GOOD_SHARE, "version": True},
    "version-text": {**GOOD_SHARE, "version": "1"},
    "version-float": {**GOOD_SHARE, "version": 1.0},
    "no-private": {k: v for k, v in GOOD_SHARE.items() if k != "private_key"},
    "no-mac": {k: v for k, v in GOOD_SHARE.items() if k != "mac_key"},
    "private-short": {**GOOD_SHARE, "private_key": unpadded_b64.encode(bytes(31))},
    "mac-long": {**GOOD_SHARE, "mac_key": unpadded_b64.encode(bytes(33))},
    "private-padded": {**GOOD_SHARE, "private_key": GOOD_SHARE["private_key"] + "="},
    "mac-not-base64": {**GOOD_SHARE, "mac_key": "not base64!"},
    "private-not-text": {**GOOD_SHARE, "private_key": list(KEY.private_key)},
    "mac-null": {**GOOD_SHARE, "mac_key": None},
    "empty": {},
    "not-an-object": "share",
    "a-list": [GOOD_SHARE],
    "null": None,
}


@pytest.mark.parametrize("share", BAD_SHARES.values(), ids=BAD_SHARES.keys())
def test_a_malformed_share_is_refused_without_detail(share: Any) -> None:
    with pytest.raises(ValueError) as caught:
        BackupKey.from_share(share)
    assert GOOD_SHARE["private_key"] not in str(caught.value)
    assert GOOD_SHARE["mac_key"] not in str(caught.value)


# --- blobs ---------------------------------------------------------------------------------


def seal(key: BackupKey = KEY, user: str = "alice", version: int = 1, slot: str = SLOT) -> Any:
    return backup.seal_blob(key, user, version, slot, PLAINTEXT)


def open_(
    blob: Any, key: BackupKey = KEY, user: str = "alice", version: int = 1, slot: str = SLOT
) -> Any:
    return backup.open_blob(key, user, version, slot, blob)


def refused(blob: Any, **where: Any) -> str:
    with pytest.raises(BlobRejected) as caught:
        open_(blob, **where)
    return str(caught.value)


def server_seal(plaintext: bytes, public_key: str, info: bytes) -> bytes:
    """What anyone who knows the backup's public key can do: HPKE to it."""
    return crypto_utils.hpke_seal(unpadded_b64.decode(public_key), plaintext, info)


def with_mac(ciphertext: bytes, mac_key: bytes, info: bytes) -> dict[str, str]:
    mac = crypto_utils.hmac_sha256(mac_key, info + b"\n" + ciphertext)
    return {"ciphertext": unpadded_b64.encode(ciphertext), "mac": unpadded_b64.encode(mac)}


INFO = backup.blob_info("alice", 1, SLOT)


def test_a_blob_round_trips() -> None:
    blob = seal()
    assert set(blob) == {"ciphertext", "mac"}
    assert len(unpadded_b64.decode(blob["mac"])) == 32
    assert open_(blob) == PLAINTEXT


def test_an_identity_blob_round_trips() -> None:
    identity = backup.identity_plaintext(unpadded_b64.encode(USER_SECRET), 2)
    blob = backup.seal_blob(KEY, "alice", 1, backup.IDENTITY_SLOT, identity)
    assert backup.open_blob(KEY, "alice", 1, "identity", blob) == identity
    assert identity == {
        "type": "identity",
        "user_key": unpadded_b64.encode(USER_SECRET),
        "version": 2,
    }


def test_sealing_twice_gives_two_blobs() -> None:
    """HPKE's ephemeral key is fresh each time: equal plaintexts do not show."""
    assert seal() != seal()


def test_a_shared_key_opens_what_the_recovery_key_sealed() -> None:
    _, shared = BackupKey.from_share(KEY.share(1))
    assert open_(seal(), key=shared) == PLAINTEXT


def test_info_names_user_version_and_slot() -> None:
    assert backup.blob_info("alice", 7, "identity") == b"chat.backup.v1|alice|7|identity"
    assert backup.session_slot("abc") == "session:abc"


def flip(text: str, at: int) -> str:
    raw = bytearray(unpadded_b64.decode(text))
    raw[at] ^= 1
    return unpadded_b64.encode(bytes(raw))


def test_an_altered_ciphertext_is_refused() -> None:
    blob = seal()
    refused({**blob, "ciphertext": flip(blob["ciphertext"], 0)})  # the encapsulated key
    refused({**blob, "ciphertext": flip(blob["ciphertext"], 40)})  # the AEAD output
    refused({**blob, "ciphertext": blob["ciphertext"][:-4]})


def test_an_altered_mac_is_refused() -> None:
    blob = seal()
    refused({**blob, "mac": flip(blob["mac"], 31)})
    refused({**blob, "mac": unpadded_b64.encode(unpadded_b64.decode(blob["mac"])[:16])})


@pytest.mark.parametrize(
    "where",
    [
        {"slot": backup.session_slot(unpadded_b64.encode(bytes(32)))},
        {"slot": "identity"},
        {"version": 2},
        {"user": "bob"},
        {"user": "alicE"},
        {"key": OTHER},
    ],
    ids=["other-session", "identity-slot", "other-version", "other-user", "user-case", "wrong-key"],
)
def test_a_blob_opens_only_where_it_was_sealed(where: dict[str, Any]) -> None:
    refused(seal(), **where)


def test_a_blob_sealed_by_the_server_does_not_open() -> None:
    """The server knows the public key, so it can seal; without mac_key its MAC fails."""
    ciphertext = server_seal(json.dumps(PLAINTEXT).encode(), KEY.public_key, INFO)
    refused(with_mac(ciphertext, os.urandom(32), INFO))
    refused(with_mac(ciphertext, KEY.private_key, INFO))  # nor with the key it does not have
    refused({"ciphertext": unpadded_b64.encode(ciphertext), "mac": unpadded_b64.encode(bytes(32))})


def test_the_mac_is_checked_before_decryption() -> None:
    """A good MAC over a ciphertext that is not HPKE's output: still the one refusal."""
    for ciphertext in (b"", bytes(10), bytes(32), bytes(48), os.urandom(200)):
        refused(with_mac(ciphertext, KEY.mac_key, INFO))


def test_hpke_info_binds_the_slot_even_with_a_matching_mac() -> None:
    """Defence in depth: a blob moved to another slot with its MAC remade (which needs the
    MAC key) still fails, because HPKE was sealed with the first slot's info."""
    moved_info = backup.blob_info("alice", 1, "identity")
    ciphertext = unpadded_b64.decode(seal()["ciphertext"])
    refused(with_mac(ciphertext, KEY.mac_key, moved_info), slot="identity")


@pytest.mark.parametrize(
    "plaintext",
    [b"\xff\xfe", b"not json", b"[]", b'"text"', b"1", b"", b"[" * 3000, b'{"a":' * 3000],
    ids=["not-utf8", "not-json", "list", "string", "number", "empty", "deep-list", "deep-object"],
)
def test_a_blob_that_opens_to_no_object_is_refused(plaintext: bytes) -> None:
    """Only a holder of the backup key can make these; still one opaque refusal, never
    another exception (the deep ones overflow the JSON parser's recursion limit)."""
    ciphertext = server_seal(plaintext, KEY.public_key, INFO)
    refused(with_mac(ciphertext, KEY.mac_key, INFO))


@pytest.mark.parametrize(
    "blob",
    [
        {},
        {"ciphertext": "AAAA"},
        {"mac": "AAAA"},
        {"ciphertext": None, "mac": None},
        {"ciphertext": 1, "mac": 2},
        {"ciphertext": "AAAA=", "mac": "AAAA"},
        {"ciphertext": "!!!!", "mac": "AAAA"},
        None,
        [],
        "blob",
    ],
)
def test_a_malformed_blob_is_refused(blob: Any) -> None:
    refused(blob)


def test_every_refusal_says_the_same_thing_and_nothing_of_the_keys() -> None:
    blob = seal()
    ciphertext = server_seal(b"[]", KEY.public_key, INFO)
    messages = {
        refused({**blob, "ciphertext": flip(blob["ciphertext"], 40)}),
        refused({**blob, "mac": flip(blob["mac"], 0)}),
        refused(blob, slot="identity"),
        refused(blob, version=2),
        refused(blob, user="bob"),
        refused(blob, key=OTHER),
        refused(with_mac(ciphertext, os.urandom(32), INFO)),
        refused(with_mac(ciphertext, KEY.mac_key, INFO)),
        refused({}),
    }
    assert messages == {str(BlobRejected())}
    for secret in (KEY.private_key, KEY.mac_key):
        assert unpadded_b64.encode(secret) not in str(BlobRejected())


# --- the backup object ---------------------------------------------------------------------


def unsigned(version: int = 1) -> dict[str, Any]:
    identity = backup.seal_blob(
        KEY,
        "alice",
        version,
        "identity",
        backup.identity_plaintext(unpadded_b64.encode(USER_SECRET), 1),
    )
    return backup.backup_object(user="alice", version=version, key=KEY, identity_blob=identity)


UNSIGNED = unsigned()
SIGNED = backup.sign_backup(UNSIGNED, USER_SECRET)


def test_a_backup_object_has_the_specs_fields() -> None:
    assert set(UNSIGNED) == {"user", "version", "algorithm", "public_key", "identity"}
    assert UNSIGNED["algorithm"] == "chat.backup.v1"
    assert UNSIGNED["public_key"] == KEY.public_key
    assert set(SIGNED) == set(UNSIGNED) | {"signatures"}
    assert set(SIGNED["signatures"]) == {"user"}


def test_the_payload_excludes_signatures_and_sets_the_purpose() -> None:
    payload = backup.backup_payload(SIGNED)
    assert payload == backup.backup_payload(UNSIGNED)
    assert b"signatures" not in payload
    by_hand = {**UNSIGNED, "purpose": "chat.backup.v1"}
    assert payload == json.dumps(by_hand, sort_keys=True, separators=(",", ":")).encode()
    assert backup.backup_payload({**UNSIGNED, "purpose": "chat.user_key.v1"}) == payload


def test_a_signed_backup_verifies_for_its_user_key_only() -> None:
    assert backup.backup_signature_valid(SIGNED, USER_ED25519)
    other = crypto_utils.ed25519_public(bytes(32))
    assert not backup.backup_signature_valid(SIGNED, other)


def test_the_signature_is_ed25519_over_the_payload() -> None:
    private = Ed25519PrivateKey.from_private_bytes(USER_SECRET)
    expected = private.sign(backup.backup_payload(UNSIGNED))
    assert unpadded_b64.decode(SIGNED["signatures"]["user"]) == expected


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(version=2),
        lambda b: b.update(user="bob"),
        lambda b: b.update(public_key=OTHER.public_key),
        lambda b: b.update(identity=unsigned()["identity"]),
        lambda b: b.update(algorithm="chat.backup.v2"),
        lambda b: b.update(extra=1),
        lambda b: b.pop("identity"),
        lambda b: b.update(signatures={}),
        lambda b: b.update(signatures={"user": None}),
        lambda b: b.update(signatures={"device": b["signatures"]["user"]}),
        lambda b: b.update(signatures="sig"),
        lambda b: b.pop("signatures"),
        lambda b: b.update(signatures={"user": "not a signature"}),
        lambda b: b.update(signatures={"user": flip(b["signatures"]["user"], 0)}),
    ],
)
def test_a_changed_or_missing_signature_is_invalid(change: Callable[[dict[str, Any]], Any]) -> None:
    changed = copy.deepcopy(SIGNED)
    change(changed)
    assert not backup.backup_signature_valid(changed, USER_ED25519)


def test_a_signature_for_another_purpose_does_not_verify() -> None:
    """The same object signed as a user key object (4.2) is not a backup signature."""
    from chatproto import e2e

    as_user_key = crypto_utils.ed25519_sign(USER_SECRET, e2e.user_key_payload(UNSIGNED))
    assert not backup.backup_signature_valid(
        {**UNSIGNED, "signatures": {"user": as_user_key}}, USER_ED25519
    )


def test_sign_backup_replaces_old_signatures() -> None:
    resigned = backup.sign_backup({**SIGNED, "signatures": {"user": "old", "x": "y"}}, USER_SECRET)
    assert resigned == SIGNED
    assert UNSIGNED.keys() == unsigned().keys() and "signatures" not in UNSIGNED


def test_a_blob_whose_plaintext_holds_nan_is_rejected_like_any_other():
    key = backup.BackupKey.from_recovery_key(bytes(range(32)))
    sealed = backup.seal_blob(key, "alice", 1, "identity", {"x": 1})
    info = backup.blob_info("alice", 1, "identity")
    ciphertext = crypto_utils.hpke_seal(unpadded_b64.decode(key.public_key), b'{"x":NaN}', info)
    mac = crypto_utils.hmac_sha256(key.mac_key, info + b"\n" + ciphertext)
    forged = {"ciphertext": unpadded_b64.encode(ciphertext), "mac": unpadded_b64.encode(mac)}
    assert backup.open_blob(key, "alice", 1, "identity", sealed) == {"x": 1}
    with pytest.raises(backup.BlobRejected):
        backup.open_blob(key, "alice", 1, "identity", forged)
