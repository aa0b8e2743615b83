"""End-to-end files (docs/protocol.md 4.12): the chunks' encryption and the offer's plaintext.

The server relays a file's chunks as in 3.3 and must learn nothing of the file: the
name, size and SHA-256 travel inside a Megolm message, with a key made for this one
file, and every chunk is sealed with that key under its own index. AES-GCM binds a
chunk to its file (the key, and the transfer id in the associated data), to its
place (the index in the nonce and the associated data) and to being last or not, so
a relay that swaps, drops, replays or reorders chunks is caught at the first chunk
it touches, before anything of it is written.

A nonce is ``0x00000000 || u64(index)``: the key is fresh for every file, so no
nonce is ever used twice under one key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import crypto_utils, unpadded_b64
from .errors import CryptoError, MessageError
from .limits import MAX_CHUNK_SIZE
from .messages import check_offer_facts

TAG_SIZE = 16
PIECE_SIZE = MAX_CHUNK_SIZE - TAG_SIZE  # 65,520: a sealed piece fills one 3.3 chunk exactly
FILE_KEY_SIZE = 32
MEGOLM_FILE = "file"  # the "type" of an end-to-end offer's Megolm plaintext
NOT_VERIFIED = "not_verified"  # the file_cancel reason for an offer or chunk that fails
AAD_LABEL = b"chat.file.v1"
TRANSFER_BYTES = 16

_FILE_FIELDS = (
    "type",
    "conversation",
    "sender",
    "sender_device",
    "transfer",
    "name",
    "size",
    "sha256",
    "key",
)


class ChunkRejected(Exception):
    """A chunk failed its check. One message whatever the cause: altered, swapped with
    another file's or another place's, or past the file's end."""

    def __init__(self) -> None:
        super().__init__("a chunk of the file could not be verified")


def new_file_key() -> bytes:
    """A fresh file key from the operating system's CSPRNG."""
    return os.urandom(FILE_KEY_SIZE)


def piece_count(size: int) -> int:
    """How many chunks a file of ``size`` bytes travels in (none for an empty file)."""
    if size < 0:
        raise ValueError("a size is never negative")
    return -(-size // PIECE_SIZE)


def encrypted_size(size: int) -> int:
    """The length of the encrypted stream: what the offer's ``size`` says to the server."""
    return size + TAG_SIZE * piece_count(size)


def nonce(index: int) -> bytes:
    """The 12-byte nonce of chunk ``index``."""
    return b"\x00\x00\x00\x00" + index.to_bytes(8, "big")


def chunk_aad(transfer: bytes, index: int, last: bool) -> bytes:
    """The associated data of chunk ``index`` of ``transfer`` (its 16 bytes)."""
    return AAD_LABEL + transfer + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


class ChunkCipher:
    """Seals or opens the chunks of one file, in any order the caller asks.

    One AES-GCM key object serves the whole transfer (its key schedule is made once).
    Whether a chunk is the last is known from the file's size, never from the sender.
    """

    def __init__(self, key: bytes, transfer: str, size: int) -> None:
        if len(key) != FILE_KEY_SIZE:
            raise ValueError("a file key is 32 bytes")
        self._transfer = bytes.fromhex(transfer)
        if len(self._transfer) != TRANSFER_BYTES:
            raise ValueError("a transfer id is 32 hex digits")
        self._aead = crypto_utils.AesGcmKey(key)
        self.size = size
        self.pieces = piece_count(size)

    def _aad(self, index: int) -> bytes:
        return chunk_aad(self._transfer, index, index == self.pieces - 1)

    def encrypt(self, index: int, piece: bytes | memoryview) -> bytes:
        """Chunk ``index``: ``piece`` sealed, 16 bytes longer."""
        if not 0 <= index < self.pieces:
            raise ValueError("the file has no piece at this index")
        expected = PIECE_SIZE if index < self.pieces - 1 else self.size - PIECE_SIZE * index
        if len(piece) != expected:
            raise ValueError("a piece has the wrong length for its place in the file")
        return self._aead.seal(nonce(index), piece, self._aad(index))

    def decrypt(self, index: int, chunk: bytes | memoryview) -> bytes:
        """The piece that chunk ``index`` carries; :class:`ChunkRejected` if it is not the
        sender's chunk for that place in this file."""
        if not 0 <= index < self.pieces:
            raise ChunkRejected()
        try:
            return self._aead.open(nonce(index), chunk, self._aad(index))
        except CryptoError:
            raise ChunkRejected() from None


def file_plaintext(
    *,
    conversation: str,
    sender: str,
    sender_device: str,
    transfer: str,
    name: str,
    size: int,
    sha256: str,
    key: bytes,
) -> dict[str, Any]:
    """The Megolm plaintext of an end-to-end offer (before canonical JSON)."""
    return {
        "type": MEGOLM_FILE,
        "conversation": conversation,
        "sender": sender,
        "sender_device": sender_device,
        "transfer": transfer,
        "name": name,
        "size": size,
        "sha256": sha256,
        "key": unpadded_b64.encode(key),
    }


@dataclass(frozen=True)
class FileFacts:
    """What an end-to-end offer tells its receiver, once its plaintext passed."""

    name: str
    size: int
    sha256: str
    key: bytes = b""

    def __repr__(self) -> str:  # never print the key
        return f"FileFacts(name={self.name!r}, size={self.size}, sha256={self.sha256!r})"


def parse_file_plaintext(
    payload: Mapping[str, Any], *, transfer: str, offered_size: int
) -> FileFacts:
    """The facts of an offer's decrypted plaintext, checked against the offer (4.12).

    ValueError (no detail of the contents) if it is not a ``file`` plaintext for this
    transfer, a field breaks 3.3's rules, or its size does not give the offer's
    encrypted ``size``. The caller has already checked ``conversation``, ``sender`` and
    ``sender_device`` as for any Megolm message (4.5).
    """
    if payload.get("type") != MEGOLM_FILE or payload.get("transfer") != transfer:
        raise ValueError("not this transfer's offer")
    if not set(_FILE_FIELDS) <= payload.keys():
        raise ValueError("an end-to-end offer lacks a field")
    facts = {"transfer": transfer, **{k: payload[k] for k in ("name", "size", "sha256")}}
    try:
        check_offer_facts(facts)
    except MessageError:
        raise ValueError("an end-to-end offer breaks the offer's rules") from None
    size = payload["size"]
    if encrypted_size(size) != offered_size:
        raise ValueError("the offer's size is not the file's")
    try:
        key = unpadded_b64.decode(payload["key"])
    except ValueError:
        raise ValueError("an end-to-end offer's key is not base64") from None
    if len(key) != FILE_KEY_SIZE:
        raise ValueError("an end-to-end offer's key is not 32 bytes")
    return FileFacts(payload["name"], size, payload["sha256"], key)
