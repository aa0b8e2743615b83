"""Checking a file stream against its offer: the byte count and the SHA-256."""

from __future__ import annotations

from ..crypto_utils import Sha256
from ..errors import ChatProtoError
from .wire import CancelReason


class TransferIntegrityError(ChatProtoError):
    """A stream does not match its offer (too many bytes, too few, another SHA-256).

    ``reason`` is the :class:`CancelReason` to cancel with; the message says what
    happened in words for the user, without any of the file's content.
    """

    def __init__(self, reason: CancelReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class IntegrityCheck:
    """Counts and hashes a stream against the size and SHA-256 that an offer announced.

    One piece for every place that hashes: the sender's reading pass, the
    recipient's writes. :meth:`update` refuses the byte past ``size`` at once;
    :meth:`matches` is the verdict once the stream ended.
    """

    def __init__(self, size: int, sha256: str) -> None:
        self.size = size
        self.sha256 = sha256
        self.count = 0
        self._hash = Sha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        length = len(data)
        if self.count + length > self.size:
            raise TransferIntegrityError(
                CancelReason.SIZE_EXCEEDED, f"more than the {self.size} bytes announced"
            )
        self._hash.update(data)
        self.count += length

    @property
    def remaining(self) -> int:
        return self.size - self.count

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def matches(self) -> bool:
        """True if exactly ``size`` bytes with the announced SHA-256 went through."""
        return self.count == self.size and self.hexdigest() == self.sha256
