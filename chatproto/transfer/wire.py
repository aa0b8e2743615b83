"""What both ends of a transfer say: the step types, the cancel reasons, two messages."""

from __future__ import annotations

import enum
from typing import Any

# The requests that belong to a transfer; file_offer goes to TransferRegistry.offer.
TRANSFER_TYPES = frozenset(
    {"file_accept", "file_reject", "file_ack", "file_end", "file_done", "file_cancel"}
)


class CancelReason(enum.StrEnum):
    """The ``reason`` of a ``file_cancel``. The first seven are the server's (PROTOCOL.md 3.3)."""

    CHUNK_OUT_OF_ORDER = "chunk_out_of_order"
    CHUNK_TOO_LARGE = "chunk_too_large"
    WINDOW_EXCEEDED = "window_exceeded"
    SIZE_EXCEEDED = "size_exceeded"
    DISCONNECTED = "disconnected"
    EXPIRED = "expired"
    ANSWERED_ELSEWHERE = "answered_elsewhere"
    # Reasons of our clients (the protocol lets a client give any reason).
    CANCELLED = "cancelled"  # the user pressed Cancel (also relayed for an empty reason)
    FILE_CHANGED = "file_changed"  # the sender's file changed while it was being sent
    READ_FAILED = "read_failed"  # the sender could not read its file
    WRITE_FAILED = "write_failed"  # the recipient could not write (disk full, removed...)


def ok(ref: str | None) -> dict[str, Any]:
    """The direct answer to a transfer step that was taken (``ref`` only if it had an id)."""
    return {"type": "ok"} if ref is None else {"type": "ok", "ref": ref}


def file_cancel(transfer: str, reason: str) -> dict[str, Any]:
    return {"type": "file_cancel", "transfer": transfer, "reason": str(reason)}
