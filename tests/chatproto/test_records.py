"""The record layer: round trips, and every kind of damage is the same RecordError."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatproto import crypto_utils
from chatproto.errors import LocalProtocolError, RecordError, RecordTooLarge
from chatproto.limits import (
    MAX_PLAINTEXT_SIZE,
    MAX_RECORD_SIZE,
    MAX_RECORDS_PER_DIRECTION,
    MIN_RECORD_SIZE,
)
from chatproto.records import RecordOpener, RecordSealer, SequenceExhausted

ENC, MAC = bytes(range(32)), bytes(range(32, 64))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pair() -> tuple[RecordSealer, RecordOpener]:
    return RecordSealer(ENC, MAC), RecordOpener(ENC, MAC)


def filler(pattern: bytes, size: int) -> bytes:
    """``size`` bytes made of ``pattern``: large plaintexts without drawing megabytes."""
    return (pattern * (size // len(pattern) + 1))[:size]


# Mostly small sizes, the boundaries always, and some anywhere up to the limit.
BOUNDARY_SIZES = [0, 1, 15, 16, 17, MAX_PLAINTEXT_SIZE - 16, MAX_PLAINTEXT_SIZE - 1]
sizes = st.one_of(
    st.integers(0, 600),
    st.sampled_from(BOUNDARY_SIZES),
    st.integers(0, MAX_PLAINTEXT_SIZE),
)
plaintexts = st.builds(filler, st.binary(min_size=1, max_size=32), sizes)


@pytest.mark.parametrize("size", [0, 1, 15, 16, MAX_PLAINTEXT_SIZE])
def test_boundary_sizes_round_trip(size):
    sealer, opener = pair()
    plaintext = os.urandom(size)
    record = sealer.seal(plaintext)
    assert len(record) <= MAX_RECORD_SIZE
    assert (len(record) - 57) % 16 == 0 and len(record) >= MIN_RECORD_SIZE
    assert opener.open(record) == plaintext


@pytest.mark.parametrize("size", [0, 1, 16, 65557])
def test_open_view_gives_the_plaintext_as_a_read_only_view(size):
    sealer, opener = pair()
    plaintext = os.urandom(size)
    view = opener.open_view(sealer.seal(plaintext))
    assert isinstance(view, memoryview) and view.readonly and view == plaintext
    assert opener.open(sealer.seal(view)) == plaintext  # and a view can be sealed again


def test_largest_plaintext_makes_a_record_within_one_mib():
    record = RecordSealer(ENC, MAC).seal(bytes(MAX_PLAINTEXT_SIZE))
    assert len(record) == 57 + MAX_PLAINTEXT_SIZE + 1 <= MAX_RECORD_SIZE
    assert MAX_PLAINTEXT_SIZE == 1_048_511


def test_seal_refuses_one_byte_over_the_limit():
    sealer = RecordSealer(ENC, MAC)
    with pytest.raises(LocalProtocolError):
        sealer.seal(bytes(MAX_PLAINTEXT_SIZE + 1))
    assert sealer.seq == 0  # nothing was consumed


@SETTINGS
@given(st.lists(plaintexts, min_size=1, max_size=3))
def test_any_plaintexts_round_trip_in_order(messages):
    sealer, opener = pair()
    for seq, plaintext in enumerate(messages):
        record = sealer.seal(plaintext)
        assert struct.unpack(">BQ", record[:9]) == (1, seq)
        assert opener.open(record) == plaintext
    assert sealer.seq == opener.seq == len(messages)


def test_every_record_gets_a_fresh_iv():
    sealer = RecordSealer(ENC, MAC)
    ivs = {sealer.seal(b"same")[9:25] for _ in range(50)}
    assert len(ivs) == 50


small_plaintexts = st.binary(max_size=200)


@SETTINGS
@given(small_plaintexts, st.data())
def test_any_single_flipped_bit_is_rejected(plaintext, data):
    sealer, opener = pair()
    record = bytearray(sealer.seal(plaintext))
    bit = data.draw(st.integers(0, len(record) * 8 - 1), label="bit")
    record[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(RecordError):
        opener.open(bytes(record))


def test_flipped_bit_in_a_large_record_is_rejected():
    sealer, opener = pair()
    record = bytearray(sealer.seal(bytes(MAX_PLAINTEXT_SIZE)))
    record[len(record) // 2] ^= 0x80
    with pytest.raises(RecordError):
        opener.open(bytes(record))


@SETTINGS
@given(small_plaintexts, st.data())
def test_any_truncation_is_rejected(plaintext, data):
    sealer, opener = pair()
    record = sealer.seal(plaintext)
    cut = data.draw(st.integers(0, len(record) - 1), label="kept bytes")
    with pytest.raises(RecordError):
        opener.open(record[:cut])


@SETTINGS
@given(small_plaintexts, st.binary(min_size=1, max_size=64))
def test_any_appended_bytes_are_rejected(plaintext, extra):
    sealer, opener = pair()
    with pytest.raises(RecordError):
        opener.open(sealer.seal(plaintext) + extra)


@SETTINGS
@given(st.lists(small_plaintexts, min_size=1, max_size=4), st.data())
def test_a_replayed_record_is_rejected(messages, data):
    sealer, opener = pair()
    records = [sealer.seal(m) for m in messages]
    for record in records:
        opener.open(record)
    replayed = data.draw(st.sampled_from(records), label="replayed")
    with pytest.raises(RecordError):
        opener.open(replayed)


@SETTINGS
@given(st.integers(1, 5), small_plaintexts)
def test_a_skipped_sequence_number_is_rejected(skipped, plaintext):
    sealer, opener = pair()
    records = [sealer.seal(plaintext) for _ in range(skipped + 1)]
    with pytest.raises(RecordError):
        opener.open(records[-1])
    assert opener.open(records[0]) == plaintext  # the failed record consumed nothing


def test_records_of_the_other_direction_are_rejected():
    sealer = RecordSealer(ENC, MAC)
    with pytest.raises(RecordError):
        RecordOpener(MAC, ENC).open(sealer.seal(b"hello"))


def test_record_over_one_mib_is_too_large():
    opener = RecordOpener(ENC, MAC)
    with pytest.raises(RecordTooLarge) as info:
        opener.open(bytes(MAX_RECORD_SIZE + 1))
    assert info.value.close_code == 1009


def test_record_of_exactly_one_mib_is_judged_by_the_normal_checks():
    # 1 MiB - 57 is not a multiple of 16, so it is a bad record (4002), not too large.
    with pytest.raises(RecordError) as info:
        RecordOpener(ENC, MAC).open(bytes(MAX_RECORD_SIZE))
    assert info.value.close_code == 4002


@pytest.mark.parametrize("size", [0, 1, 72, 74, 88])
def test_malformed_lengths_are_rejected(size):
    with pytest.raises(RecordError):
        RecordOpener(ENC, MAC).open(bytes(size))


def forged(seq: int, plaintext: bytes, *, version: int = 1) -> bytes:
    """A record with a valid tag at any ``seq`` (what a sealer would never produce)."""
    iv = os.urandom(16)
    body = struct.pack(">BQ", version, seq) + iv + crypto_utils.aes_cbc_encrypt(ENC, iv, plaintext)
    return body + crypto_utils.hmac_sha256(MAC, body)


def test_forged_helper_matches_the_sealer():
    assert RecordOpener(ENC, MAC).open(forged(0, b"x")) == b"x"


@pytest.mark.parametrize("seq", [MAX_RECORDS_PER_DIRECTION, 2**64 - 1])
def test_sequence_number_of_two_to_the_32_or_more_is_rejected(seq):
    opener = RecordOpener(ENC, MAC)
    opener.seq = seq  # even when it is the expected one
    with pytest.raises(RecordError):
        opener.open(forged(seq, b"x"))


def test_last_allowed_sequence_number_opens():
    opener = RecordOpener(ENC, MAC)
    opener.seq = MAX_RECORDS_PER_DIRECTION - 1
    assert opener.open(forged(MAX_RECORDS_PER_DIRECTION - 1, b"x")) == b"x"


def test_version_other_than_one_is_rejected_even_with_a_valid_tag():
    with pytest.raises(RecordError):
        RecordOpener(ENC, MAC).open(forged(0, b"x", version=2))


def test_bad_padding_under_a_valid_tag_is_rejected():
    # The first CBC block of 16 zero bytes decrypts to those bytes: padding byte 0 is invalid.
    iv = os.urandom(16)
    block = crypto_utils.aes_cbc_encrypt(ENC, iv, bytes(16))[:16]
    body = struct.pack(">BQ", 1, 0) + iv + block
    with pytest.raises(RecordError):
        RecordOpener(ENC, MAC).open(body + crypto_utils.hmac_sha256(MAC, body))


def test_sealer_at_two_to_the_32_refuses():
    sealer = RecordSealer(ENC, MAC)
    sealer.seq = MAX_RECORDS_PER_DIRECTION - 1
    last = sealer.seal(b"last")
    assert struct.unpack(">Q", last[1:9]) == (MAX_RECORDS_PER_DIRECTION - 1,)
    with pytest.raises(SequenceExhausted):
        sealer.seal(b"one too many")
    assert issubclass(SequenceExhausted, LocalProtocolError)


def test_every_failure_is_the_same_opaque_error():
    sealer, opener = pair()
    good = sealer.seal(b"x")
    bad = [good[:-1], b"\x02" + good[1:], good[:-1] + bytes([good[-1] ^ 1]), bytes(73)]
    seen = set()
    for record in bad:
        with pytest.raises(RecordError) as info:
            opener.open(record)
        seen.add((str(info.value), info.value.__cause__, info.value.__suppress_context__))
    assert len(seen) == 1
