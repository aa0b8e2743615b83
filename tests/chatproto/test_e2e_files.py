"""chatproto.e2e_files: a relay that alters, swaps, drops or forges chunks is caught.

docs/protocol.md 4.12: every chunk is AES-256-GCM under the file's own key, bound to its
transfer, its index and whether it is the last; the receiver knows which chunk is last
from the size, never from the sender. Every failure is the same ChunkRejected.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from chatproto import e2e_files, unpadded_b64
from chatproto.e2e_files import PIECE_SIZE, ChunkCipher, ChunkRejected
from chatproto.limits import MAX_CHUNK_SIZE

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
TRANSFER = "00112233445566778899aabbccddeeff"
OTHER_TRANSFER = "ffeeddccbbaa99887766554433221100"


def content(size: int) -> bytes:
    return bytes(i % 253 for i in range(size))


def pieces(data: bytes) -> list[bytes]:
    return [data[i : i + PIECE_SIZE] for i in range(0, len(data), PIECE_SIZE)]


def sealed(data: bytes, key: bytes = KEY, transfer: str = TRANSFER) -> list[bytes]:
    cipher = ChunkCipher(key, transfer, len(data))
    return [cipher.encrypt(index, piece) for index, piece in enumerate(pieces(data))]


THREE = content(2 * PIECE_SIZE + 100)  # two whole pieces and a short last one
THREE_CHUNKS = sealed(THREE)


def receiver(size: int = len(THREE)) -> ChunkCipher:
    return ChunkCipher(KEY, TRANSFER, size)


def rejected(cipher: ChunkCipher, index: int, chunk: bytes) -> str:
    with pytest.raises(ChunkRejected) as caught:
        cipher.decrypt(index, chunk)
    return str(caught.value)


# --- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, 0),
        (1, 17),
        (65_520, 65_536),
        (65_521, 65_553),
        (2**30, 2**30 + 16 * 16_389),  # 2^30 / 65,520 = 16,388.1...: 16,389 pieces
    ],
)
def test_encrypted_size(size: int, expected: int) -> None:
    assert e2e_files.encrypted_size(size) == expected


@pytest.mark.parametrize("size", [0, 1, 65_519, 65_520, 65_521, 131_040, 131_041, 2**30 + 7])
def test_the_server_learns_the_files_exact_size_from_the_offer(size: int) -> None:
    """What docs/protocol.md 4.12 and docs/security.md must say: the chunks are not
    padded, so the offer's encrypted size gives the file's size exactly."""
    offered = e2e_files.encrypted_size(size)
    pieces = -(-offered // MAX_CHUNK_SIZE)
    assert offered - e2e_files.TAG_SIZE * pieces == size


def test_a_whole_piece_sealed_fills_one_chunk_of_3_3_exactly() -> None:
    assert PIECE_SIZE + e2e_files.TAG_SIZE == MAX_CHUNK_SIZE == 65_536
    assert len(ChunkCipher(KEY, TRANSFER, PIECE_SIZE).encrypt(0, bytes(PIECE_SIZE))) == 65_536


@pytest.mark.parametrize(
    ("size", "count"), [(0, 0), (1, 1), (65_520, 1), (65_521, 2), (131_040, 2), (131_041, 3)]
)
def test_piece_count(size: int, count: int) -> None:
    assert e2e_files.piece_count(size) == count


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError):
        e2e_files.piece_count(-1)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 10, PIECE_SIZE - 1, PIECE_SIZE, PIECE_SIZE + 1, len(THREE)])
def test_round_trip(size: int) -> None:
    data = content(size)
    chunks = sealed(data)
    assert sum(map(len, chunks)) == e2e_files.encrypted_size(size)
    opener = receiver(size)
    assert b"".join(opener.decrypt(index, chunk) for index, chunk in enumerate(chunks)) == data


def test_an_empty_file_has_no_chunks_and_refuses_any() -> None:
    cipher = ChunkCipher(KEY, TRANSFER, 0)
    assert cipher.pieces == 0
    with pytest.raises(ValueError):
        cipher.encrypt(0, b"")
    rejected(cipher, 0, THREE_CHUNKS[0])


def test_chunks_decrypt_in_any_order_the_caller_asks() -> None:
    opener = receiver()
    assert opener.decrypt(2, THREE_CHUNKS[2]) == pieces(THREE)[2]
    assert opener.decrypt(0, THREE_CHUNKS[0]) == pieces(THREE)[0]


def test_a_memoryview_is_accepted_both_ways() -> None:
    cipher = receiver()
    chunk = cipher.encrypt(2, memoryview(pieces(THREE)[2]))
    assert chunk == THREE_CHUNKS[2]
    assert cipher.decrypt(2, memoryview(chunk)) == pieces(THREE)[2]


def test_the_same_piece_in_two_files_seals_differently() -> None:
    """A fresh key per file: the nonce may repeat across files, the key never."""
    one = ChunkCipher(e2e_files.new_file_key(), TRANSFER, 10).encrypt(0, bytes(10))
    two = ChunkCipher(e2e_files.new_file_key(), TRANSFER, 10).encrypt(0, bytes(10))
    assert one != two


def test_new_file_key_is_32_fresh_bytes() -> None:
    keys = {e2e_files.new_file_key() for _ in range(4)}
    assert len(keys) == 4 and all(len(key) == 32 for key in keys)


# --- what a relay might do -----------------------------------------------------------------


def test_a_chunk_swapped_with_another_index_is_rejected() -> None:
    rejected(receiver(), 1, THREE_CHUNKS[0])
    rejected(receiver(), 0, THREE_CHUNKS[1])


def test_a_chunk_replayed_at_the_next_index_is_rejected() -> None:
    opener = receiver()
    assert opener.decrypt(0, THREE_CHUNKS[0]) == pieces(THREE)[0]
    rejected(opener, 1, THREE_CHUNKS[0])


def test_a_chunk_of_another_files_key_is_rejected() -> None:
    other = sealed(THREE, key=OTHER_KEY)
    rejected(receiver(), 0, other[0])
    rejected(receiver(), 2, other[2])


def test_a_chunk_of_another_transfer_under_the_same_key_is_rejected() -> None:
    other = sealed(THREE, transfer=OTHER_TRANSFER)
    rejected(receiver(), 0, other[0])
    rejected(receiver(), 2, other[2])


def test_a_non_last_chunk_presented_as_the_last_is_rejected() -> None:
    """A relay ends the file early: the first two pieces of THREE as a file of their size.

    Chunk 1 was sealed as "not last", and the receiver, told a size that makes it last,
    opens it with last = 1: the tag fails.
    """
    truncated = receiver(2 * PIECE_SIZE)
    assert truncated.decrypt(0, THREE_CHUNKS[0]) == pieces(THREE)[0]
    rejected(truncated, 1, THREE_CHUNKS[1])


def test_a_last_chunk_presented_as_not_last_is_rejected() -> None:
    """A relay extends the file: the last piece of a short file then more."""
    short = content(PIECE_SIZE + 5)
    chunks = sealed(short)
    longer = receiver(2 * PIECE_SIZE + 5)  # chunk 1 is not the last of this size
    rejected(longer, 1, chunks[1] + bytes(PIECE_SIZE - 5))
    rejected(ChunkCipher(KEY, TRANSFER, 3 * PIECE_SIZE), 1, chunks[1])


@pytest.mark.parametrize(
    "change",
    [
        lambda chunk: chunk[:-1],  # truncated tag
        lambda chunk: chunk[:-17],  # truncated piece and tag
        lambda chunk: chunk + b"\x00",  # extended
        lambda chunk: bytes([chunk[0] ^ 1]) + chunk[1:],  # a bit of the piece
        lambda chunk: chunk[:-1] + bytes([chunk[-1] ^ 0x80]),  # a bit of the tag
        lambda chunk: b"",
        lambda chunk: chunk[:15],  # shorter than a tag
    ],
    ids=["short-tag", "short", "extended", "bit-flip", "tag-flip", "empty", "under-16"],
)
def test_altered_chunk_bytes_are_rejected(change: Any) -> None:
    rejected(receiver(), 2, change(THREE_CHUNKS[2]))


@pytest.mark.parametrize("index", [3, 4, 2**40, -1])
def test_an_index_past_the_end_or_before_the_start_is_rejected(index: int) -> None:
    rejected(receiver(), index, THREE_CHUNKS[2])


def test_every_rejection_says_the_same_thing() -> None:
    messages = {
        rejected(receiver(), 1, THREE_CHUNKS[0]),
        rejected(receiver(), 0, sealed(THREE, key=OTHER_KEY)[0]),
        rejected(receiver(), 0, sealed(THREE, transfer=OTHER_TRANSFER)[0]),
        rejected(receiver(2 * PIECE_SIZE), 1, THREE_CHUNKS[1]),
        rejected(receiver(), 2, THREE_CHUNKS[2][:-1]),
        rejected(receiver(), 3, THREE_CHUNKS[2]),
    }
    assert messages == {str(ChunkRejected())}
    assert "key" not in str(ChunkRejected()).lower()


# --- what the sender may not do ------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "length"),
    [(0, PIECE_SIZE - 1), (0, PIECE_SIZE + 1), (1, 0), (2, 99), (2, 101), (2, PIECE_SIZE)],
)
def test_a_piece_of_the_wrong_length_for_its_place_is_refused(index: int, length: int) -> None:
    with pytest.raises(ValueError):
        receiver().encrypt(index, bytes(length))


@pytest.mark.parametrize("index", [3, -1])
def test_a_piece_past_the_end_is_refused(index: int) -> None:
    with pytest.raises(ValueError):
        receiver().encrypt(index, bytes(100))


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33)])
def test_a_cipher_needs_a_32_byte_key(key: bytes) -> None:
    with pytest.raises(ValueError):
        ChunkCipher(key, TRANSFER, 10)


@pytest.mark.parametrize("transfer", ["", "00112233", TRANSFER + "00", "zz" * 16])
def test_a_cipher_needs_a_16_byte_transfer(transfer: str) -> None:
    with pytest.raises(ValueError):
        ChunkCipher(KEY, transfer, 10)


# --- the offer's plaintext -----------------------------------------------------------------

DATA = content(1000)
SHA256 = hashlib.sha256(DATA).hexdigest()


def plaintext(**changes: Any) -> dict[str, Any]:
    made = e2e_files.file_plaintext(
        conversation="pm:alice:bob",
        sender="alice",
        sender_device="D7K2QX9A",
        transfer=TRANSFER,
        name="notes.txt",
        size=len(DATA),
        sha256=SHA256,
        key=KEY,
    )
    made.update(changes)
    return made


def parse(payload: dict[str, Any], offered: int | None = None) -> e2e_files.FileFacts:
    size = e2e_files.encrypted_size(len(DATA)) if offered is None else offered
    return e2e_files.parse_file_plaintext(payload, transfer=TRANSFER, offered_size=size)


def test_a_good_plaintext_gives_the_files_facts() -> None:
    facts = parse(plaintext())
    assert facts == e2e_files.FileFacts("notes.txt", 1000, SHA256, KEY)


def test_an_empty_file_parses() -> None:
    empty = plaintext(size=0, sha256=hashlib.sha256(b"").hexdigest())
    assert parse(empty, offered=0).size == 0


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(plaintext(type="text"), id="wrong-type"),
        pytest.param(plaintext(type=None), id="no-type"),
        pytest.param(plaintext(transfer=OTHER_TRANSFER), id="other-transfer"),
        pytest.param(plaintext(transfer=TRANSFER.upper()), id="transfer-spelled-otherwise"),
        pytest.param(plaintext(name=""), id="empty-name"),
        pytest.param(plaintext(name="x" * 256), id="name-too-long"),
        pytest.param(plaintext(name=7), id="name-not-text"),
        pytest.param(plaintext(sha256=SHA256.upper()), id="sha256-upper"),
        pytest.param(plaintext(sha256=SHA256[:-1]), id="sha256-short"),
        pytest.param(plaintext(sha256="g" * 64), id="sha256-not-hex"),
        pytest.param(plaintext(size=-1), id="size-negative"),
        pytest.param(plaintext(size=True), id="size-bool"),
        pytest.param(plaintext(size="1000"), id="size-text"),
        pytest.param(plaintext(size=999), id="size-not-the-offers"),
        pytest.param(plaintext(size=1001), id="size-one-more"),
        pytest.param(plaintext(key=unpadded_b64.encode(bytes(31))), id="key-31-bytes"),
        pytest.param(plaintext(key=unpadded_b64.encode(bytes(33))), id="key-33-bytes"),
        pytest.param(plaintext(key=unpadded_b64.encode(KEY) + "="), id="key-padded"),
        pytest.param(plaintext(key="not base64!"), id="key-not-base64"),
        pytest.param(plaintext(key=list(KEY)), id="key-not-text"),
    ],
)
def test_a_bad_plaintext_is_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        parse(payload)
    assert SHA256 not in str(caught.value) and "notes" not in str(caught.value)


@pytest.mark.parametrize(
    "field",
    [
        "type",
        "conversation",
        "sender",
        "sender_device",
        "transfer",
        "name",
        "size",
        "sha256",
        "key",
    ],
)
def test_a_plaintext_missing_a_field_is_refused(field: str) -> None:
    payload = plaintext()
    del payload[field]
    with pytest.raises(ValueError):
        parse(payload)


def test_the_offered_size_must_be_the_encrypted_size_not_the_files() -> None:
    with pytest.raises(ValueError):
        parse(plaintext(), offered=len(DATA))
    with pytest.raises(ValueError):
        parse(plaintext(), offered=e2e_files.encrypted_size(len(DATA)) + 1)


def test_file_facts_repr_shows_no_key() -> None:
    facts = parse(plaintext())
    shown = repr(facts) + str(facts)
    assert KEY.hex() not in shown and repr(KEY) not in shown
    assert unpadded_b64.encode(KEY) not in shown and "key" not in shown
    assert "notes.txt" in shown
