"""Bounds of section 4's requests that the validation tests did not check yet (see
docs/e2e-rule-tests.md): key ids, user keys, claim and to-device list sizes, acks."""

from __future__ import annotations

from typing import Any

import pytest

from chatproto.codes import ErrorCode
from chatproto.e2e import MAX_KEY_ID_LENGTH, MAX_KEYS_CLAIM_DEVICES, MAX_TO_DEVICE_MESSAGES
from chatproto.errors import MessageError
from chatproto.messages import validate_request
from tests.chatproto.helpers import KEY_B64, OLM_BODY, SIGNATURE_B64, USER_KEY

ONE_TIME_KEY = {"key_id": "AAAAAQ", "key": KEY_B64, "signature": SIGNATURE_B64}


def refusal(message: dict[str, Any]) -> ErrorCode:
    with pytest.raises(MessageError) as info:
        validate_request({"id": "r1", **message})
    return info.value.code


def test_a_key_id_is_1_to_64_characters():
    longest = {**ONE_TIME_KEY, "key_id": "k" * MAX_KEY_ID_LENGTH}
    request: Any = validate_request({"type": "keys_upload", "one_time_keys": [longest]})
    assert request.one_time_keys[0]["key_id"] == "k" * 64
    for key_id in ("", "k" * (MAX_KEY_ID_LENGTH + 1)):
        key = {**ONE_TIME_KEY, "key_id": key_id}
        assert refusal({"type": "keys_upload", "one_time_keys": [key]}) == ErrorCode.BAD_REQUEST
        assert refusal({"type": "keys_upload", "fallback_key": key}) == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("key", ["A" * 42, "A" * 44, KEY_B64 + "=", ""], ids=repr)
def test_a_one_time_key_is_base64_of_32_bytes(key):
    upload = {"type": "keys_upload", "one_time_keys": [{**ONE_TIME_KEY, "key": key}]}
    assert refusal(upload) == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    "change",
    [
        {"ed25519": "A" * 42},
        {"ed25519": KEY_B64 + "="},
        {"version": 0},
        {"version": "1"},
        {"version": True},
        {"user": 7},
        {"signatures": {}},
    ],
    ids=repr,
)
def test_a_malformed_user_key_is_bad_request(change):
    publish = {"type": "user_key_publish", "user_key": {**USER_KEY, **change}}
    assert refusal(publish) == ErrorCode.BAD_REQUEST


def test_reset_is_a_boolean_false_when_absent():
    request: Any = validate_request({"type": "user_key_publish", "user_key": USER_KEY})
    assert request.reset is False
    publish = {"type": "user_key_publish", "user_key": USER_KEY, "reset": "yes"}
    assert refusal(publish) == ErrorCode.BAD_REQUEST


def test_keys_claim_takes_1_to_1000_devices_each_a_user_and_a_device():
    device = {"user": "alice", "device": "d1"}
    request: Any = validate_request({"type": "keys_claim", "devices": [device]})
    assert request.devices == (("alice", "d1"),)
    most = [{"user": "alice", "device": f"d{i}"} for i in range(MAX_KEYS_CLAIM_DEVICES)]
    assert len(validate_request({"type": "keys_claim", "devices": most}).devices) == 1_000  # type: ignore[attr-defined]
    over = [*most, {"user": "alice", "device": "one-more"}]
    for devices in ([], over, [{"user": "alice"}], [{"device": "d1"}], ["alice"]):
        assert refusal({"type": "keys_claim", "devices": devices}) == ErrorCode.BAD_REQUEST


def test_to_device_takes_1_to_1000_messages():
    one = {"user": "bob", "device": "d1", "body": OLM_BODY}
    request: Any = validate_request({"type": "to_device", "messages": [one] * 1_000})
    assert len(request.messages) == MAX_TO_DEVICE_MESSAGES
    for messages in ([], [one] * (MAX_TO_DEVICE_MESSAGES + 1)):
        assert refusal({"type": "to_device", "messages": messages}) == ErrorCode.BAD_REQUEST


def test_an_empty_to_device_ciphertext_is_bad_request():
    body = {**OLM_BODY, "ciphertext": ""}
    message = {"user": "bob", "device": "d1", "body": body}
    assert refusal({"type": "to_device", "messages": [message]}) == ErrorCode.BAD_REQUEST


def test_a_to_device_ack_upto_is_an_integer_from_0():
    assert validate_request({"type": "to_device_ack", "upto": 0}).upto == 0  # type: ignore[attr-defined]
    for upto in (-1, "3", 1.5, True):
        assert refusal({"type": "to_device_ack", "upto": upto}) == ErrorCode.BAD_REQUEST


def test_device_list_changes_since_is_an_integer_from_0():
    for since in (-1, "0", None):
        assert refusal({"type": "device_list_changes", "since": since}) == ErrorCode.BAD_REQUEST
