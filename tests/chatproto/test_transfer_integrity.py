"""IntegrityCheck: a stream's byte count and SHA-256 against its offer."""

from __future__ import annotations

import hashlib
import os

import pytest

from chatproto.transfer import (
    CancelReason,
    IntegrityCheck,
    TransferIntegrityError,
)


def test_integrity_check_counts_hashes_and_refuses_bytes_beyond_the_size():
    data = os.urandom(1000)
    check = IntegrityCheck(1000, hashlib.sha256(data).hexdigest())
    check.update(data[:400])
    assert not check.matches() and check.remaining == 600
    check.update(memoryview(data)[400:])
    assert check.matches()
    with pytest.raises(TransferIntegrityError) as info:
        check.update(b"x")
    assert info.value.reason == CancelReason.SIZE_EXCEEDED


def test_integrity_check_tells_a_different_content_of_the_same_size():
    check = IntegrityCheck(3, hashlib.sha256(b"abc").hexdigest())
    check.update(b"abd")
    assert not check.matches()
