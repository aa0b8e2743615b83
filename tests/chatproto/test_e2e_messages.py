"""Section 4's requests in the validation table: shapes, base64, sizes, list bounds."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatproto import crypto_utils
from chatproto.codes import ErrorCode
from chatproto.e2e import (
    MAX_E2E_BYTES,
    MAX_KEYS_QUERY_USERS,
    MAX_ONE_TIME_KEYS,
    MAX_TO_DEVICE_BODY_BYTES,
)
from chatproto.errors import MessageError
from chatproto.messages import validate_request
from chatproto.unpadded_b64 import encode as encode_b64
from tests.chatproto.helpers import KEY_B64, SIGNATURE_B64

DEVICE_KEYS = {
    "user": "alice",
    "device": "d1",
    "curve25519": KEY_B64,
    "ed25519": KEY_B64,
    "signatures": {"device": SIGNATURE_B64},
}
ONE_TIME_KEY = {"key_id": "AAAAAQ", "key": KEY_B64, "signature": SIGNATURE_B64}
E2E = {
    "algorithm": "megolm.v1",
    "sender_key": KEY_B64,
    "device": "d1",
    "session_id": KEY_B64,
    "ciphertext": "AwgA",
}


def refusal(message: dict[str, Any]) -> ErrorCode:
    with pytest.raises(MessageError) as info:
        validate_request({"id": "r1", **message})
    assert info.value.ref == "r1"
    return info.value.code


def test_device_keys_are_kept_exactly_as_sent():
    keys = {**DEVICE_KEYS, "signatures": {"device": SIGNATURE_B64, "user": SIGNATURE_B64}}
    request: Any = validate_request({"type": "keys_upload", "device_keys": keys})
    assert request.device_keys == keys


@pytest.mark.parametrize(
    "change",
    [
        {"curve25519": KEY_B64 + "="},  # padded
        {"curve25519": "A" * 42},  # 31 bytes and a half
        {"ed25519": "A" * 44},  # 33 bytes
        {"ed25519": "B" * 43},  # stray bits in the last character: not canonical
        {"user": "not a name"},
        {"device": ""},
        {"signatures": {}},
        {"signatures": {"device": SIGNATURE_B64, "user": KEY_B64}},
        {"signatures": "x"},
    ],
    ids=repr,
)
def test_malformed_device_keys_are_bad_request(change):
    assert refusal({"type": "keys_upload", "device_keys": {**DEVICE_KEYS, **change}}) == (
        ErrorCode.BAD_REQUEST
    )


def test_one_time_keys_are_bounded_per_upload():
    keys = [ONE_TIME_KEY] * MAX_ONE_TIME_KEYS
    request: Any = validate_request({"type": "keys_upload", "one_time_keys": keys})
    assert len(request.one_time_keys) == MAX_ONE_TIME_KEYS
    assert refusal({"type": "keys_upload", "one_time_keys": [*keys, ONE_TIME_KEY]}) == (
        ErrorCode.BAD_REQUEST
    )
    assert refusal({"type": "keys_upload", "fallback_key": {**ONE_TIME_KEY, "key_id": ""}}) == (
        ErrorCode.BAD_REQUEST
    )


def test_keys_query_takes_1_to_the_limit_of_usernames():
    assert refusal({"type": "keys_query", "users": []}) == ErrorCode.BAD_REQUEST
    names = [f"u{i}" for i in range(MAX_KEYS_QUERY_USERS + 1)]
    assert refusal({"type": "keys_query", "users": names}) == ErrorCode.BAD_REQUEST
    assert refusal({"type": "keys_query", "users": ["ok", 3]}) == ErrorCode.BAD_REQUEST


def test_a_to_device_body_over_its_limit_is_too_large():
    body = {"ciphertext": "A" * MAX_TO_DEVICE_BODY_BYTES}
    message = {"user": "bob", "device": "d1", "body": body}
    assert refusal({"type": "to_device", "messages": [message]}) == ErrorCode.TOO_LARGE
    assert refusal({"type": "to_device", "messages": [{**message, "body": "x"}]}) == (
        ErrorCode.BAD_REQUEST
    )


def test_send_carries_e2e_instead_of_text():
    request: Any = validate_request({"type": "send", "room": "team", "e2e": E2E})
    assert (request.text, request.e2e) == (None, E2E)
    request = validate_request({"type": "pm", "to": "bob", "e2e": E2E})
    assert request.e2e == E2E


@pytest.mark.parametrize("kind", ["send", "pm"])
def test_send_needs_exactly_one_of_text_and_e2e(kind):
    target = {"room": "team"} if kind == "send" else {"to": "bob"}
    assert refusal({"type": kind, **target}) == ErrorCode.BAD_REQUEST
    assert refusal({"type": kind, **target, "text": "hi", "e2e": E2E}) == ErrorCode.BAD_REQUEST


def test_an_e2e_object_over_max_e2e_bytes_is_too_large():
    big = {**E2E, "ciphertext": "A" * MAX_E2E_BYTES}
    assert refusal({"type": "send", "room": "team", "e2e": big}) == ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    "change", [{"algorithm": "olm.v1"}, {"sender_key": "x"}, {"ciphertext": ""}, {"device": 1}]
)
def test_a_malformed_e2e_object_is_bad_request(change):
    e2e = {**E2E, **change}
    assert refusal({"type": "send", "room": "team", "e2e": e2e}) == ErrorCode.BAD_REQUEST


def test_verify_ed25519_accepts_only_the_signers_signature_of_those_bytes():
    key = Ed25519PrivateKey.generate()
    public = encode_b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    signature = encode_b64(key.sign(b"payload"))
    assert crypto_utils.verify_ed25519(public, signature, b"payload")
    assert not crypto_utils.verify_ed25519(public, signature, b"payloae")
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert not crypto_utils.verify_ed25519(encode_b64(other), signature, b"payload")
    assert not crypto_utils.verify_ed25519(public, signature + "=", b"payload")
    assert not crypto_utils.verify_ed25519("A" * 10, signature, b"payload")
