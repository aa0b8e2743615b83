"""What both ends of a transfer say, and the rules that the relay and the recipient both check.

- :class:`TransferState`: the one state enum of a transfer, on the server (the
  relay's view) and in both clients (the sender's and the recipient's views).
- :data:`TRANSFER_TYPES`, :class:`CancelReason`, :func:`ok`, :func:`file_cancel`:
  the wire vocabulary of PROTOCOL.md 3.3.
- :class:`ChunkWindow`: the chunk-window rule (order, size, window of 16,
  offered size, acks in order), written once; the relay enforces it for the
  server, the recipient for itself, and the sender keeps to it.
- :func:`sanitize_filename`: the name to save an offered file under.
- :func:`new_transfer_id`: a fresh random id for an offer.

The offer's field rules are in the one validation table of
:mod:`chatproto.messages` (:func:`chatproto.messages.check_offer_facts`).
"""

from __future__ import annotations

import enum
import secrets
import unicodedata
from typing import Any

from ..limits import MAX_CHUNK_SIZE, TRANSFER_ID_SIZE

# The requests that belong to a transfer; file_offer goes to TransferRegistry.offer.
TRANSFER_TYPES = frozenset(
    {"file_accept", "file_reject", "file_ack", "file_end", "file_done", "file_cancel"}
)


class TransferState(enum.Enum):
    """Where one transfer stands; the same enum for the relay and for both clients' ends."""

    PREPARING = "preparing"  # clients only: the sender still hashes the file for the offer
    OFFERED = "offered"  # offer sent (or relayed, or received); no answer yet
    RUNNING = "running"  # accepted: chunks flow
    ENDED = "ended"  # file_end sent (or relayed, or received); the recipient verifies
    FINISHED = "finished"  # file_done with ok true: the recipient kept an exact copy
    FAILED = "failed"  # rejected, refused, cancelled, expired, or file_done with ok false

    @property
    def over(self) -> bool:
        """True once nothing more can happen: FINISHED or FAILED."""
        return self in (TransferState.FINISHED, TransferState.FAILED)


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
    """The ``file_cancel`` message; ``reason`` is sent as its string value."""
    return {"type": "file_cancel", "transfer": transfer, "reason": str(reason)}


class ChunkWindow:
    """The chunk-window rule of PROTOCOL.md 3.3, written once: order, size, window, offered size.

    The relay keeps one per transfer for the server, the recipient one for
    itself; both judge a chunk with :meth:`violation` and the same counters, so
    they name the same reason for the same chunk. The sender counts with one
    too, so it never sends what the others would refuse. Counters only, no data.
    """

    def __init__(self, size: int, window: int) -> None:
        self.size = size  # the offered size in bytes
        self.window = window  # chunks that may be passed on and not yet acknowledged
        self.next_index = 0  # the index the next chunk must carry
        self.next_ack = 0  # the index the next acknowledgement must carry
        self.received = 0  # bytes of the chunks passed on

    @property
    def unacked(self) -> int:
        """Chunks passed on and not yet acknowledged (at most the window)."""
        return self.next_index - self.next_ack

    def violation(self, index: int, length: int, *, running: bool) -> CancelReason | None:
        """Why chunk ``index`` of ``length`` bytes breaks the rules, or None if it may pass.

        ``running``: the transfer is accepted and ``file_end`` not yet sent. The
        checks run in the order the protocol lists them.
        """
        if not running or index != self.next_index:
            return CancelReason.CHUNK_OUT_OF_ORDER
        if not 1 <= length <= MAX_CHUNK_SIZE:
            return CancelReason.CHUNK_TOO_LARGE
        if self.unacked >= self.window:
            return CancelReason.WINDOW_EXCEEDED
        if self.received + length > self.size:
            return CancelReason.SIZE_EXCEEDED
        return None

    def passed(self, length: int) -> None:
        """A chunk of ``length`` bytes that :meth:`violation` let through was passed on."""
        self.next_index += 1
        self.received += length

    def acknowledge(self, index: object) -> bool:
        """Count the ack of chunk ``index``: True if it names the oldest unacknowledged chunk.

        False, and nothing counted, for any other index (a later one, one
        already acknowledged, one never passed on, a non-integer).
        """
        if isinstance(index, bool) or index != self.next_ack or self.unacked == 0:
            return False
        self.next_ack += 1
        return True


def new_transfer_id() -> str:
    """A fresh transfer id: 16 random bytes from the operating system, in hex."""
    return secrets.token_hex(TRANSFER_ID_SIZE)


RESERVED_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in range(1, 10)}
    | {f"LPT{n}" for n in range(1, 10)}
)
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf"})  # controls; format characters such as U+202E


def is_reserved_name(name: str) -> bool:
    """A Windows device name, with any extension: ``con``, ``CON.txt``, ``Com1.tar.gz``."""
    stem = name.split(".", 1)[0]
    return stem.isascii() and stem.upper() in RESERVED_DEVICE_NAMES


def sanitize_filename(name: str) -> str:
    """The name to save an offered file under (PROTOCOL.md 3.3), never empty, never a path.

    Removes ``/``, ``\\`` and every character of Unicode categories Cc and Cf;
    strips leading dots and trailing dots and spaces; an empty result or a
    reserved device name on Windows becomes ``file``. Idempotent.
    """
    kept = "".join(
        char
        for char in name
        if char not in "/\\" and unicodedata.category(char) not in _DROPPED_CATEGORIES
    )
    kept = kept.lstrip(".").rstrip(". ")
    if not kept or is_reserved_name(kept):
        return "file"
    return kept
