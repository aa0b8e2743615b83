"""What both clients' ends share: the state, cancelling, the offer's checks, fresh ids."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from typing import Any

from ..limits import (
    MAX_CANCEL_REASON_LENGTH,
    MAX_FILE_NAME_LENGTH,
    MAX_JSON_INTEGER,
    TRANSFER_ID_SIZE,
)
from ..messages import SHA256_RE, TRANSFER_RE
from .events import Cancelled, ClientEvent, Send
from .wire import CancelReason, file_cancel


class TransferState(enum.Enum):
    OFFERED = "offered"  # offer sent (or received); no answer yet
    RUNNING = "running"  # accepted: chunks flow
    ENDED = "ended"  # file_end sent (or received); waiting for file_done (or verifying)
    FINISHED = "finished"  # file_done with ok true: an exact copy was kept
    FAILED = "failed"  # rejected, refused, cancelled, or file_done with ok false

    @property
    def over(self) -> bool:
        return self in (TransferState.FINISHED, TransferState.FAILED)


class _ClientSide:
    """What both ends share: the id, the offer's facts, the state and how it ended."""

    transfer: str
    transfer_bytes: bytes
    size: int
    sha256: str
    state: TransferState
    reason: str | None  # why it failed (a CancelReason value, "rejected", an error code)

    @property
    def over(self) -> bool:
        return self.state.over

    def cancel(self, reason: str = CancelReason.CANCELLED) -> list[ClientEvent]:
        """Stop the transfer (the user pressed Cancel, a file failed): the file_cancel to send.

        Nothing when it is already over.
        """
        if self.over:
            return []
        self.state = TransferState.FAILED
        self.reason = str(reason)
        return [Send(file_cancel(self.transfer, reason)), Cancelled(str(reason), local=True)]

    def connection_lost(self) -> list[ClientEvent]:
        """The connection to the server dropped: the transfer is over, with nothing to send.

        The server tells the other side (``disconnected``); a new connection
        cannot resume a transfer.
        """
        if self.over:
            return []
        self.state = TransferState.FAILED
        self.reason = CancelReason.DISCONNECTED.value
        return [Cancelled(self.reason, local=True)]

    def _peer_cancelled(self, message: Mapping[str, Any]) -> list[ClientEvent]:
        reason = message.get("reason")
        if not isinstance(reason, str) or not reason:
            reason = CancelReason.CANCELLED.value
        reason = reason[:MAX_CANCEL_REASON_LENGTH]
        self.state = TransferState.FAILED
        self.reason = reason
        return [Cancelled(reason, local=False)]

    def _mine(self, message: Mapping[str, Any]) -> bool:
        return message.get("transfer") == self.transfer and not self.over


def _check_offer_fields(transfer: str, name: str, size: int, sha256: str) -> None:
    if not isinstance(transfer, str) or not TRANSFER_RE.fullmatch(transfer):
        raise ValueError("a transfer id is 32 lowercase hex digits")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_FILE_NAME_LENGTH:
        raise ValueError(f"a file name is 1 to {MAX_FILE_NAME_LENGTH} characters")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_JSON_INTEGER:
        raise ValueError("a file size is a whole number of bytes")
    if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
        raise ValueError("a SHA-256 is 64 lowercase hex digits")


def new_transfer_id() -> str:
    """A fresh transfer id: 16 random bytes from the operating system, in hex."""
    return secrets.token_hex(TRANSFER_ID_SIZE)
