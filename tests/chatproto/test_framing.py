"""Plaintext framing: strict I-JSON in, compact I-JSON out, and file chunks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatproto import framing
from chatproto.codes import ErrorCode
from chatproto.errors import LocalProtocolError, MessageError
from chatproto.framing import FileChunk, encode_json, encode_json_value, encode_json_with_lists
from chatproto.limits import MAX_CHUNK_SIZE, MAX_PLAINTEXT_SIZE

TRANSFER = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def json_plaintext(text: str | bytes) -> bytes:
    return b"\x01" + (text.encode("utf-8") if isinstance(text, str) else text)


def assert_bad_request(plaintext: bytes) -> MessageError:
    with pytest.raises(MessageError) as info:
        framing.decode_plaintext(plaintext)
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.ref is None
    return info.value


REJECTED_JSON = {
    "duplicate name": '{"type": "ping", "type": "ping"}',
    "duplicate name by escape": '{"type": "ping", "\\u0074ype": "pong"}',
    "duplicate name nested": '{"type": "ping", "x": {"a": 1, "a": 2}}',
    "lone high surrogate": '{"type": "send", "text": "\\ud800"}',
    "lone low surrogate": '{"type": "send", "text": "a\\udc00b"}',
    "lone surrogate in a key": '{"type": "ping", "\\ud83d": 1}',
    "lone surrogate in a nested key": '{"type": "ping", "x": [{"\\udfff": 1}]}',
    "lone surrogate in a list": '{"type": "ping", "x": ["ok", "\\ud800"]}',
    "NaN": '{"type": "ping", "x": NaN}',
    "Infinity": '{"type": "ping", "x": Infinity}',
    "-Infinity": '{"type": "ping", "x": -Infinity}',
    "number overflowing to infinity": '{"type": "ping", "x": 1e400}',
    "negative number overflowing": '{"type": "ping", "x": -1.5e999}',
    "integer of 5000 digits": '{"type": "ping", "x": ' + "9" * 5000 + "}",
    "array": '[{"type": "ping"}]',
    "string": '"ping"',
    "number": "1",
    "null": "null",
    "not JSON": "{type: ping}",
    "trailing comma": '{"type": "ping",}',
    "two values": '{"type": "ping"} {}',
    "empty JSON": "",
    "BOM": '\ufeff{"type": "ping"}',
    "missing type": '{"id": "1"}',
    "type null": '{"type": null}',
    "type number": '{"type": 1}',
    "type list": '{"type": ["ping"]}',
    "unescaped control character": '{"type": "pi\nng"}',
    "deep nesting": '{"type": "ping", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
}


@pytest.mark.parametrize("text", REJECTED_JSON.values(), ids=REJECTED_JSON.keys())
def test_json_breaking_i_json_rules_is_bad_request(text):
    assert_bad_request(json_plaintext(text))


INVALID_UTF8 = {
    "lone continuation byte": b'{"type": "\x80"}',
    "overlong encoding": b'{"type": "\xc0\xaf"}',
    "utf-8 encoded surrogate": b'{"type": "\xed\xa0\x80"}',
    "truncated sequence": b'{"type": "\xe2\x82"}',
    "latin-1": b'{"type": "caf\xe9"}',
}


@pytest.mark.parametrize("raw", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_is_bad_request(raw):
    assert_bad_request(json_plaintext(raw))


def test_empty_plaintext_is_bad_request():
    assert_bad_request(b"")


@pytest.mark.parametrize("kind", [0x00, 0x03, 0x7B, 0xFF])
def test_unknown_kind_byte_is_bad_request(kind):
    assert_bad_request(bytes([kind]) + b'{"type": "ping"}')


def test_rejections_never_quote_the_message():
    error = assert_bad_request(json_plaintext('{"type": "ping", "password": "hunter2", "x": NaN}'))
    assert "hunter2" not in error.message and "hunter2" not in str(error)


def test_valid_json_is_decoded_with_unicode_and_pairs_intact():
    text = '{"type": "send", "text": "h\\u00e9llo \\ud83d\\ude00 \u4e16", "n": 1.5, "z": null}'
    message = framing.decode_plaintext(json_plaintext(text))
    assert message == {"type": "send", "text": "héllo 😀 世", "n": 1.5, "z": None}


def test_unknown_type_string_is_left_to_validation():
    assert framing.decode_plaintext(json_plaintext('{"type": "no_such"}')) == {"type": "no_such"}


# --- encoding ----------------------------------------------------------------------------


def test_encode_json_is_compact_utf8_after_kind_byte():
    assert framing.encode_json({"type": "send", "text": "é 😀"}) == (
        b'\x01{"type":"send","text":"\xc3\xa9 \xf0\x9f\x98\x80"}'
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
messages = st.dictionaries(st.text(max_size=8), json_values, max_size=5).map(
    lambda d: {**d, "type": "x"}
)


@settings(max_examples=100, deadline=None)
@given(messages)
def test_encoded_json_decodes_back_and_encoded_size_is_exact(message):
    plaintext = framing.encode_json(message)
    assert framing.encoded_size(message) == len(plaintext)
    assert framing.decode_plaintext(plaintext) == json.loads(json.dumps(message))


@pytest.mark.parametrize(
    "message",
    [
        {"type": "x", "n": float("nan")},
        {"type": "x", "n": float("inf")},
        {"type": "x", "text": "\ud800"},
        {"type": "x", "data": b"bytes"},
    ],
    ids=["nan", "inf", "lone surrogate", "bytes"],
)
def test_encode_json_refuses_what_is_not_i_json(message):
    with pytest.raises(LocalProtocolError) as info:
        framing.encode_json(message)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(LocalProtocolError):
        framing.encoded_size(message)


def test_encode_json_refuses_a_message_over_the_plaintext_limit():
    # 1 kind byte + 20 bytes of JSON around the text
    overhead = len(framing.encode_json({"type": "x", "t": ""}))
    fits = {"type": "x", "t": "a" * (MAX_PLAINTEXT_SIZE - overhead)}
    assert len(framing.encode_json(fits)) == MAX_PLAINTEXT_SIZE
    too_big = {"type": "x", "t": "a" * (MAX_PLAINTEXT_SIZE - overhead + 1)}
    with pytest.raises(LocalProtocolError):
        framing.encode_json(too_big)
    assert framing.encoded_size(too_big) == MAX_PLAINTEXT_SIZE + 1


# --- file chunks -------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.binary(min_size=16, max_size=16),
    st.integers(0, 2**32 - 1),
    st.one_of(st.binary(min_size=1, max_size=100), st.sampled_from([bytes(MAX_CHUNK_SIZE)])),
)
def test_chunk_round_trips(transfer, index, data):
    plaintext = framing.encode_chunk(transfer, index, data)
    assert plaintext[:1] == b"\x02" and len(plaintext) == 21 + len(data)
    assert framing.decode_plaintext(plaintext) == FileChunk(transfer, index, data)


def test_chunk_layout_and_transfer_hex():
    plaintext = framing.encode_chunk(TRANSFER, 258, b"abc")
    assert plaintext == b"\x02" + TRANSFER + b"\x00\x00\x01\x02abc"
    chunk = framing.decode_plaintext(plaintext)
    assert chunk.transfer_hex == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.mark.parametrize("size", [1, 5, 17, 21], ids=lambda n: f"{n}-bytes")
def test_chunk_without_data_is_bad_request(size):
    assert_bad_request((b"\x02" + TRANSFER + bytes(4))[:size])


@pytest.mark.parametrize("transfer", [b"", bytes(15), bytes(17)])
def test_encode_chunk_refuses_a_transfer_id_that_is_not_16_bytes(transfer):
    with pytest.raises(LocalProtocolError):
        framing.encode_chunk(transfer, 0, b"x")


@pytest.mark.parametrize(
    ("index", "data"),
    [(-1, b"x"), (2**32, b"x"), (0, b""), (0, bytes(MAX_CHUNK_SIZE + 1))],
    ids=["negative index", "index over u32", "empty data", "data over 64 KiB"],
)
def test_encode_chunk_refuses_what_a_receiver_would_reject(index, data):
    with pytest.raises(LocalProtocolError):
        framing.encode_chunk(TRANSFER, index, data)


def test_a_decoded_chunk_gives_back_its_own_plaintext_and_a_made_one_is_encoded():
    plaintext = memoryview(framing.encode_chunk(TRANSFER, 9, b"relayed as it came"))
    chunk = framing.decode_plaintext(plaintext)
    assert framing.chunk_plaintext(chunk) is plaintext  # the relay seals it again, uncopied
    made = FileChunk(TRANSFER, 9, b"relayed as it came")
    assert framing.chunk_plaintext(made) == plaintext


@pytest.mark.parametrize(
    "wrong",
    [
        FileChunk(TRANSFER, 10, b"abc"),  # another index
        FileChunk(bytes(16), 9, b"abc"),  # another transfer
        FileChunk(TRANSFER, 9, b"abcd"),  # another length
    ],
    ids=["index", "transfer", "length"],
)
def test_a_chunk_whose_fields_do_not_match_its_plaintext_is_refused(wrong):
    plaintext = framing.encode_chunk(TRANSFER, 9, b"abc")
    forged = FileChunk(wrong.transfer, wrong.index, wrong.data, plaintext)
    with pytest.raises(LocalProtocolError):
        framing.chunk_plaintext(forged)


def test_decode_leaves_oversized_chunks_to_the_transfer_logic():
    # chunk_too_large is a file-transfer violation (cancel), not a bad_request.
    plaintext = b"\x02" + TRANSFER + bytes(4) + bytes(MAX_CHUNK_SIZE + 1)
    assert len(framing.decode_plaintext(plaintext).data) == MAX_CHUNK_SIZE + 1


@pytest.mark.parametrize(
    ("message", "lists"),
    [
        (
            {"type": "users", "ref": "r1", "presence_interval": 3},
            {"online": ["b", "zoë"], "all": ["a", "b", "zoë"]},
        ),
        ({"type": "users"}, {"online": [], "all": []}),
        ({}, {"x": ["1"], "y": []}),
        ({}, {}),
    ],
)
def test_a_message_with_encoded_lists_is_the_same_bytes_as_encoding_it_whole(message, lists):
    encoded = {key: [encode_json_value(item) for item in items] for key, items in lists.items()}
    assert encode_json_with_lists(message, encoded) == encode_json({**message, **lists})


def test_encoded_lists_cannot_repeat_a_field_or_pass_the_size_limit():
    with pytest.raises(LocalProtocolError):
        encode_json_with_lists({"all": []}, {"all": []})
    name = encode_json_value("x" * 1000)
    with pytest.raises(LocalProtocolError):
        encode_json_with_lists({}, {"all": [name] * 1100})
