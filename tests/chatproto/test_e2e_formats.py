"""chatproto.e2e against docs/e2e-vectors.json: every value recomputed, every rule it states.

The vectors are the known answers of docs/protocol.md section 4; a client written from
the protocol alone checks its own code against the same file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import vodozemac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chatproto import e2e, unpadded_b64
from chatproto.e2e import canonical_json
from tests.chatproto import make_e2e_vectors

DOCS = Path(__file__).resolve().parents[2] / "docs"
VECTORS: dict[str, Any] = json.loads((DOCS / "e2e-vectors.json").read_text(encoding="utf-8"))
KEYS = VECTORS["keys"]


def sign(secret_hex: str, data: bytes) -> str:
    """An Ed25519 signature made here with cryptography, not through chatproto."""
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret_hex))
    return unpadded_b64.encode(private.sign(data))


def section_4() -> str:
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    start = text.index("\n## 4. End-to-end encryption")
    return text[start : text.index("\n## ", start + 1)]


# --- canonical JSON ------------------------------------------------------------------------


def test_canonical_json_sorts_keys_and_drops_spaces() -> None:
    signed = canonical_json({"b": 1, "a": [1, {"d": 2, "c": "x"}]})
    assert signed == b'{"a":[1,{"c":"x","d":2}],"b":1}'


def test_canonical_json_keeps_text_as_utf8() -> None:
    assert canonical_json({"name": "zoë"}) == '{"name":"zoë"}'.encode()


# --- the signed payloads -------------------------------------------------------------------


def test_device_keys_payload_is_the_vectors_bytes() -> None:
    vector = VECTORS["device_keys"]
    assert e2e.device_keys_payload(vector["object"]).hex() == vector["payload_hex"]


def test_device_keys_signatures_are_the_device_and_user_keys_over_the_payload() -> None:
    vector = VECTORS["device_keys"]
    payload = bytes.fromhex(vector["payload_hex"])
    signatures = vector["object"]["signatures"]
    assert signatures["device"] == sign(KEYS["device_ed25519_secret_hex"], payload)
    assert signatures["user"] == sign(KEYS["user_ed25519_secret_hex"], payload)
    assert e2e.device_signature_valid(vector["object"])
    assert e2e.user_signature_valid(vector["object"], KEYS["user_ed25519"])


def test_the_purpose_is_signed_but_not_sent() -> None:
    device_keys = VECTORS["device_keys"]["object"]
    assert "purpose" not in device_keys
    assert b'"purpose":"chat.device_keys.v1"' in e2e.device_keys_payload(device_keys)
    assert b"signatures" not in e2e.device_keys_payload(device_keys)


def test_a_purpose_in_the_object_does_not_change_what_is_signed() -> None:
    device_keys = dict(VECTORS["device_keys"]["object"], purpose="chat.user_key.v1")
    assert e2e.device_keys_payload(device_keys).hex() == VECTORS["device_keys"]["payload_hex"]


@pytest.mark.parametrize("field", ["curve25519", "device", "user"])
def test_a_changed_field_breaks_both_device_key_signatures(field: str) -> None:
    device_keys = copy.deepcopy(VECTORS["device_keys"]["object"])
    device_keys[field] = "mallory" if field == "user" else VECTORS["user_key"]["object"]["ed25519"]
    assert not e2e.device_signature_valid(device_keys)
    assert not e2e.user_signature_valid(device_keys, KEYS["user_ed25519"])


def test_a_user_signature_counts_only_for_that_user_key() -> None:
    device_keys = VECTORS["device_keys"]["object"]
    assert not e2e.user_signature_valid(device_keys, KEYS["device_ed25519"])
    unsigned = {**device_keys, "signatures": {"device": device_keys["signatures"]["device"]}}
    assert not e2e.user_signature_valid(unsigned, KEYS["user_ed25519"])
    assert e2e.device_signature_valid(unsigned)


def test_user_key_payload_and_signature_are_the_vectors() -> None:
    vector = VECTORS["user_key"]
    payload = e2e.user_key_payload(vector["object"])
    assert payload.hex() == vector["payload_hex"]
    assert vector["object"]["signatures"]["device"] == sign(
        KEYS["device_ed25519_secret_hex"], payload
    )
    assert e2e.user_key_signature_valid(vector["object"], KEYS["device_ed25519"])
    assert not e2e.user_key_signature_valid(
        {**vector["object"], "version": 2}, KEYS["device_ed25519"]
    )


def test_one_time_key_payload_and_signature_are_the_vectors() -> None:
    vector = VECTORS["one_time_key"]
    payload = e2e.one_time_key_payload(vector["user"], vector["device"], vector["object"])
    assert payload.hex() == vector["payload_hex"]
    assert vector["object"]["signature"] == sign(KEYS["device_ed25519_secret_hex"], payload)
    assert e2e.one_time_key_valid(
        vector["user"], vector["device"], vector["object"], KEYS["device_ed25519"]
    )


def test_a_one_time_key_cannot_be_passed_off_as_another_devices() -> None:
    vector = VECTORS["one_time_key"]
    ed25519 = KEYS["device_ed25519"]
    assert not e2e.one_time_key_valid(vector["user"], "P4M8WZ1C", vector["object"], ed25519)
    assert not e2e.one_time_key_valid("bob", vector["device"], vector["object"], ed25519)
    without_signature = {"key_id": vector["object"]["key_id"], "key": vector["object"]["key"]}
    assert not e2e.one_time_key_valid(vector["user"], vector["device"], without_signature, ed25519)


def test_a_signature_for_one_purpose_does_not_verify_for_another() -> None:
    # The user key object signed by the device, replayed as the device's own keys object.
    user_key = VECTORS["user_key"]["object"]
    replayed = {**user_key, "ed25519": KEYS["device_ed25519"]}
    assert not e2e.device_signature_valid(replayed)


def test_a_vodozemac_signature_verifies_through_chatproto() -> None:
    """The clients sign with vodozemac; the server checks with crypto_utils: same bytes."""
    account = vodozemac.Account()
    device_keys = {
        "user": "alice",
        "device": "NEWDEVICE",
        "curve25519": account.curve25519_key.to_base64(),
        "ed25519": account.ed25519_key.to_base64(),
    }
    signature = account.sign(e2e.device_keys_payload(device_keys)).to_base64()
    assert e2e.device_signature_valid({**device_keys, "signatures": {"device": signature}})


# --- conversations -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["conversation_ids"])
def test_conversation_ids_are_the_vectors(vector: dict[str, Any]) -> None:
    if "room" in vector:
        assert e2e.conversation_id(room=vector["room"]) == vector["id"]
    else:
        first, second = vector["pm"]
        assert e2e.conversation_id(pm=(first, second)) == vector["id"]
        assert e2e.conversation_id(pm=(second, first)) == vector["id"]


@pytest.mark.parametrize(
    "arguments",
    [{}, {"room": "a", "pm": ("b", "c")}, {"pm": ("alice", "alice")}],
)
def test_conversation_id_needs_one_room_or_two_users(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        e2e.conversation_id(**arguments)


# --- safety numbers ------------------------------------------------------------------------


def signal_half(user: str, key: bytes) -> str:
    """Section 4's definition again, with hashlib: a second implementation to agree with."""
    digest = (0).to_bytes(2, "big") + key + user.encode()
    for _ in range(5200):
        digest = hashlib.sha512(digest + key).digest()
    return "".join(
        str(int.from_bytes(digest[i : i + 5], "big") % 100000).zfill(5) for i in range(0, 30, 5)
    )


SAFETY = VECTORS["safety_number"]
KEY_A = unpadded_b64.decode(SAFETY["key_a"])
KEY_B = unpadded_b64.decode(SAFETY["key_b"])


def test_safety_number_is_the_vector() -> None:
    number = e2e.safety_number(SAFETY["user_a"], KEY_A, SAFETY["user_b"], KEY_B)
    assert number == SAFETY["safety_number"]
    assert re.fullmatch(r"[0-9]{60}", number)


def test_safety_number_halves_follow_the_definition() -> None:
    assert e2e.safety_number_half(SAFETY["user_a"], KEY_A) == SAFETY["half_a"]
    assert e2e.safety_number_half(SAFETY["user_b"], KEY_B) == SAFETY["half_b"]
    assert signal_half(SAFETY["user_a"], KEY_A) == SAFETY["half_a"]
    assert SAFETY["safety_number"] == min(SAFETY["half_a"], SAFETY["half_b"]) + max(
        SAFETY["half_a"], SAFETY["half_b"]
    )


def test_both_users_see_the_same_safety_number() -> None:
    assert (
        e2e.safety_number(SAFETY["user_b"], KEY_B, SAFETY["user_a"], KEY_A)
        == SAFETY["safety_number"]
    )


def test_a_new_user_key_changes_the_safety_number() -> None:
    new_key = bytes(32)
    assert (
        e2e.safety_number(SAFETY["user_a"], new_key, SAFETY["user_b"], KEY_B)
        != SAFETY["safety_number"]
    )


def test_a_safety_number_needs_32_byte_keys() -> None:
    with pytest.raises(ValueError):
        e2e.safety_number(SAFETY["user_a"], KEY_A[:31], SAFETY["user_b"], KEY_B)


# --- SAS -----------------------------------------------------------------------------------


def test_sas_commitment_is_the_vector_and_covers_the_start() -> None:
    sas = VECTORS["sas"]
    start = sas["start"]
    assert e2e.sas_commitment(sas["public_key"], start) == start["commitment"]
    without = {name: value for name, value in start.items() if name != "commitment"}
    expected = hashlib.sha256(sas["public_key"].encode() + canonical_json(without)).digest()
    assert start["commitment"] == unpadded_b64.encode(expected)
    assert (
        e2e.sas_commitment(sas["public_key"], {**start, "kind": "contact"}) != start["commitment"]
    )


def test_sas_info_strings_are_the_vectors() -> None:
    sas = VECTORS["sas"]
    starter = ("alice", "D7K2QX9A", sas["public_key"])
    responder = ("alice", "P4M8WZ1C", KEYS["device_ed25519"])
    assert e2e.sas_bytes_info(starter, responder, "k3Jq8s") == sas["bytes_info"]
    mac_info = e2e.sas_mac_info(
        ("alice", "D7K2QX9A"), ("alice", "P4M8WZ1C"), "k3Jq8s", "ed25519:D7K2QX9A"
    )
    assert mac_info == sas["mac_info"]


# --- the file and the text -----------------------------------------------------------------


def test_the_generator_still_writes_the_committed_file() -> None:
    assert make_e2e_vectors.render() == (DOCS / "e2e-vectors.json").read_text(encoding="utf-8")


def test_every_vector_section_named_in_section_4_exists() -> None:
    vectors_part = section_4().split("### 4.")[-1]
    assert vectors_part.split("\n", 1)[0].endswith("Vectors")
    named = set(re.findall(r"^\| `([a-z_0-9]+)` \|", vectors_part, flags=re.MULTILINE))
    assert named == set(VECTORS) - {"about"}


def test_section_4_states_each_limit_of_chatproto_e2e() -> None:
    text = " ".join(section_4().split())
    for phrase in (
        f"is at most {e2e.MAX_E2E_BYTES:,} bytes, else `too_large`",
        f"of at most {e2e.MAX_TO_DEVICE_BODY_BYTES:,} bytes as canonical JSON",
        f"`messages`: 1 to {e2e.MAX_TO_DEVICE_MESSAGES:,}",
        f"At most {e2e.MAX_QUEUED_TO_DEVICE:,} messages are queued per device",
        f"`keys_query`: 1 to {e2e.MAX_KEYS_QUERY_USERS} usernames",
        f"`keys_claim`: 1 to {e2e.MAX_KEYS_CLAIM_DEVICES:,} devices",
        f"(at most {e2e.MAX_ONE_TIME_KEYS} per upload)",
        f"More than {e2e.MAX_ONE_TIME_KEYS} unclaimed one-time keys",
        f"At most {e2e.MAX_DEVICE_KEYS_BYTES:,} bytes as canonical JSON",
        f"`key_id` 1 to {e2e.MAX_KEY_ID_LENGTH} characters",
        f"`txn` (1 to {e2e.MAX_SAS_TRANSACTION_LENGTH} characters)",
        f"repeat {e2e.SAFETY_NUMBER_ITERATIONS} times",
        f"the session has encrypted {e2e.MEGOLM_ROTATION_MESSAGES} messages",
        f"the session is {e2e.MEGOLM_ROTATION_SECONDS // 86400} days old",
        f"({e2e.SAS_TIMEOUT_SECONDS // 60} minutes without the next step)",
    ):
        assert phrase in text


def test_section_4_names_every_olm_plaintext_type_and_sas_word() -> None:
    text = section_4()
    for word in (*e2e.OLM_PLAINTEXT_TYPES, *e2e.SAS_KINDS, *e2e.SAS_CANCEL_REASONS):
        assert f"`{word}`" in text
    for word in (
        e2e.PURPOSE_DEVICE_KEYS,
        e2e.PURPOSE_USER_KEY,
        e2e.PURPOSE_ONE_TIME_KEY,
        e2e.ALGORITHM_OLM,
        e2e.ALGORITHM_MEGOLM,
        e2e.SAS_BYTES_PREFIX,
        e2e.SAS_MAC_PREFIX,
    ):
        assert word in text
