"""The record layer (PROTOCOL.md section 2): one direction's keys and sequence number.

::

    record = 0x01 || u64(seq) || iv || ct || tag
    tag    = HMAC-SHA256(mac key, 0x01 || u64(seq) || iv || ct)

A :class:`RecordSealer` writes one direction, a :class:`RecordOpener` reads the
other. The opener checks, in the order the spec gives: length, version byte,
tag (constant time, before any decryption), sequence number, then padding.
Every failure is the same :class:`RecordError`; only a message over 1 MiB is
distinguished (close 1009), and it is refused before anything else is read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from . import crypto_utils
from .errors import (
    CryptoError,
    LocalProtocolError,
    RecordError,
    RecordTooLarge,
    SequenceExhausted,
)
from .limits import (
    AES_BLOCK_SIZE,
    IV_SIZE,
    MAX_PLAINTEXT_SIZE,
    MAX_RECORD_SIZE,
    MAX_RECORDS_PER_DIRECTION,
    MIN_RECORD_SIZE,
    RECORD_HEADER_SIZE,
    TAG_SIZE,
)

RECORD_VERSION = 1
_HEADER = struct.Struct(">BQ")
_OVERHEAD = RECORD_HEADER_SIZE + IV_SIZE + TAG_SIZE  # 57


class RecordSealer:
    """Seals plaintexts into records for one direction.

    The keys are set up once (:class:`~chatproto.crypto_utils.CbcHmacKeys`); each
    record gets a fresh IV from ``iv_source``, which exists for the known-answer
    tests; leave it alone elsewhere.
    """

    def __init__(
        self, enc_key: bytes, mac_key: bytes, *, iv_source: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._keys = crypto_utils.CbcHmacKeys(enc_key, mac_key)
        self._iv_source = iv_source
        self.seq = 0

    def seal(self, plaintext: bytes | memoryview) -> bytes:
        """The record carrying ``plaintext``; raises LocalProtocolError if it cannot fit."""
        if len(plaintext) > MAX_PLAINTEXT_SIZE:
            raise LocalProtocolError(
                f"plaintext of {len(plaintext)} bytes exceeds the {MAX_PLAINTEXT_SIZE}-byte limit"
            )
        if self.seq >= MAX_RECORDS_PER_DIRECTION:
            raise SequenceExhausted("2**32 records sent in this direction; reconnect")
        record = self._keys.seal(
            _HEADER.pack(RECORD_VERSION, self.seq), self._iv_source(IV_SIZE), plaintext
        )
        self.seq += 1
        return record


class RecordOpener:
    """Opens records of one direction, enforcing order and integrity."""

    def __init__(self, enc_key: bytes, mac_key: bytes) -> None:
        self._keys = crypto_utils.CbcHmacKeys(enc_key, mac_key)
        self.seq = 0

    def open(self, record: bytes) -> bytes:
        """The plaintext of the next record; RecordError (4002) or RecordTooLarge (1009)."""
        return bytes(self.open_view(record))

    def open_view(self, record: bytes) -> memoryview:
        """As :meth:`open`, the plaintext as a read-only view, without copying it.

        For a relay: the server seals a chunk's plaintext again as it was opened
        (:meth:`chatproto.connection.ServerConnection.forward_chunk`).
        """
        size = len(record)
        if size > MAX_RECORD_SIZE:
            raise RecordTooLarge()
        if size < MIN_RECORD_SIZE or (size - _OVERHEAD) % AES_BLOCK_SIZE:
            raise RecordError()
        version, seq = _HEADER.unpack_from(record)
        if version != RECORD_VERSION:
            raise RecordError()
        if not self._keys.verify(record):  # the tag, in constant time, before anything else
            raise RecordError()
        if seq != self.seq or seq >= MAX_RECORDS_PER_DIRECTION:
            raise RecordError()
        iv = record[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + IV_SIZE]
        try:
            with memoryview(record) as view:
                plaintext = self._keys.decrypt(
                    iv, view[RECORD_HEADER_SIZE + IV_SIZE : size - TAG_SIZE]
                )
        except CryptoError:
            raise RecordError() from None
        self.seq += 1
        return plaintext
