"""The plaintext inside a record (PROTOCOL.md 2.1): a JSON message or a file chunk.

JSON is I-JSON (RFC 7493): objects without duplicate names, no lone
surrogates, no NaN or Infinity. The parser here is strict where Python's
``json`` is lenient, and every rule broken is a :class:`MessageError` with
``bad_request``, which the session answers and survives.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .codes import ErrorCode
from .errors import LocalProtocolError, MessageError
from .limits import MAX_CHUNK_SIZE, MAX_PLAINTEXT_SIZE, TRANSFER_ID_SIZE

KIND_JSON = 0x01
KIND_CHUNK = 0x02
_CHUNK_HEADER = struct.Struct(f">B{TRANSFER_ID_SIZE}sI")


@dataclass(frozen=True)
class FileChunk:
    """One chunk record of a file transfer: 16 transfer bytes, index, 1+ bytes of the file.

    A chunk read from a record (:func:`decode_plaintext`) keeps that record's whole
    ``plaintext``, and its ``data`` is a view into it: the server relays the chunk
    by sealing the same plaintext again (:func:`chunk_plaintext`), without the two
    64 KiB copies of slicing the data out and encoding it back. Only
    :func:`decode_plaintext` sets ``plaintext``; it takes no part in comparisons.
    """

    transfer: bytes
    index: int
    data: bytes | memoryview
    plaintext: bytes | memoryview | None = field(default=None, compare=False, repr=False)

    @property
    def transfer_hex(self) -> str:
        return self.transfer.hex()


def _bad(message: str) -> MessageError:
    return MessageError(ErrorCode.BAD_REQUEST, message)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _bad("duplicate member name in JSON object")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise _bad(f"{name} is not allowed in JSON")


def _finite_float(literal: str) -> float:
    # json reads 1e400 as inf without asking parse_constant; I-JSON has no Infinity.
    value = float(literal)
    if not math.isfinite(value):
        raise _bad("a number is out of range")
    return value


def _check_strings(value: Any) -> None:
    """Reject lone surrogates anywhere (they cannot be encoded as UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _bad("JSON string holds a lone surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json_text(text: str | bytes | memoryview) -> dict[str, Any]:
    """Parse one I-JSON object strictly; MessageError(bad_request) for anything else."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = str(text, "utf-8")
        except UnicodeDecodeError:
            raise _bad("message is not valid UTF-8") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except MessageError:
        raise
    except (ValueError, RecursionError):
        raise _bad("message is not valid JSON") from None
    if not isinstance(value, dict):
        raise _bad("message is not a JSON object")
    _check_strings(value)
    return value


def decode_plaintext(plaintext: bytes | memoryview) -> dict[str, Any] | FileChunk:
    """A record's plaintext as a JSON object (with a string ``type``) or a FileChunk.

    Chunk sizes are not judged here: an oversized chunk is a file-transfer
    violation (``chunk_too_large``), which the transfer's owner decides. A
    chunk's ``data`` is a slice of ``plaintext`` (a view when ``plaintext`` is
    one: :meth:`chatproto.records.RecordOpener.open_view`).
    """
    if not plaintext:
        raise _bad("empty message")
    kind = plaintext[0]
    if kind == KIND_JSON:
        message = parse_json_text(plaintext[1:])
        if not isinstance(message.get("type"), str):
            raise _bad("message has no string 'type'")
        return message
    if kind == KIND_CHUNK:
        if len(plaintext) <= _CHUNK_HEADER.size:
            raise _bad("file chunk without data")
        _, transfer, index = _CHUNK_HEADER.unpack_from(plaintext)
        return FileChunk(transfer, index, plaintext[_CHUNK_HEADER.size :], plaintext)
    raise _bad("unknown plaintext kind")


def _json_body(message: Any) -> bytes:
    try:
        return json.dumps(
            message, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise LocalProtocolError(
            f"message cannot be encoded as I-JSON: {type(exc).__name__}"
        ) from None


def _within_record(plaintext: bytes) -> bytes:
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise LocalProtocolError("message exceeds the record size limit")
    return plaintext


def encode_json(message: Mapping[str, Any]) -> bytes:
    """0x01 || compact UTF-8 JSON. Raises LocalProtocolError if it is not I-JSON or too big."""
    return _within_record(bytes([KIND_JSON]) + _json_body(message))


def encode_json_value(value: Any) -> bytes:
    """One JSON value as :func:`encode_json` writes it inside a message (compact UTF-8), for
    :func:`encode_json_with_lists`. Raises LocalProtocolError if it is not I-JSON."""
    return _json_body(value)


def encode_json_with_lists(
    message: Mapping[str, Any], lists: Mapping[str, Sequence[bytes]]
) -> bytes:
    """:func:`encode_json` of ``message`` with the fields of ``lists`` added, each given as
    its items already encoded (:func:`encode_json_value`): the same bytes, without encoding
    the items again.

    For long lists kept as they change: a server's ``users`` snapshot lists every account,
    and encoding thousands of names at every login was most of a login's cost beyond the
    database once thousands were online.
    """
    if any(key in message for key in lists):
        raise LocalProtocolError("a field is given twice")
    head = _json_body(message)[:-1]  # the object without its "}"
    parts = [bytes([KIND_JSON]), head]
    for key, items in lists.items():
        comma = b"," if len(parts) > 2 or len(head) > 1 else b""
        parts += [comma, _json_body(key), b":[", b",".join(items), b"]"]
    parts.append(b"}")
    return _within_record(b"".join(parts))


def encoded_size(message: Mapping[str, Any]) -> int:
    """How many plaintext bytes :func:`encode_json` makes of ``message`` (for fitting history).

    Unlike :func:`encode_json` it accepts a message over the limit (measuring one is
    its purpose), and like it raises LocalProtocolError for one that is not I-JSON.
    """
    return 1 + len(_json_body(message))


def _check_chunk(transfer: bytes, index: int, size: int) -> None:
    """LocalProtocolError for a chunk the protocol does not allow: a transfer id that
    is not 16 bytes, an index outside u32, or data that is empty or over
    MAX_CHUNK_SIZE (the receiver would cancel the transfer)."""
    if len(transfer) != TRANSFER_ID_SIZE:
        raise LocalProtocolError("a transfer id is 16 bytes")
    if not 0 <= index < 2**32:
        raise LocalProtocolError("a chunk index is a u32")
    if not 1 <= size <= MAX_CHUNK_SIZE:
        raise LocalProtocolError(f"a chunk carries 1 to {MAX_CHUNK_SIZE} bytes")


def encode_chunk(transfer: bytes, index: int, data: bytes | memoryview) -> bytes:
    """0x02 || transfer (16 bytes) || u32(index) || data.

    Raises LocalProtocolError for a chunk the protocol does not allow (see
    :func:`_check_chunk`).
    """
    _check_chunk(transfer, index, len(data))
    return _CHUNK_HEADER.pack(KIND_CHUNK, transfer, index) + data


def chunk_plaintext(chunk: FileChunk) -> bytes | memoryview:
    """The plaintext carrying ``chunk``, as :func:`encode_chunk` would make it.

    A chunk read from a record gives back that record's plaintext as it is (no
    copy: the relay's path, PROTOCOL.md 3.3); any other is encoded. The same
    LocalProtocolError either way for a chunk the protocol does not allow.
    """
    plaintext = chunk.plaintext
    if plaintext is None:
        return encode_chunk(chunk.transfer, chunk.index, chunk.data)
    _check_chunk(chunk.transfer, chunk.index, len(chunk.data))
    if len(plaintext) != _CHUNK_HEADER.size + len(chunk.data) or _CHUNK_HEADER.unpack_from(
        plaintext
    ) != (KIND_CHUNK, chunk.transfer, chunk.index):
        raise LocalProtocolError("a chunk's plaintext does not match its fields")
    return plaintext
