"""The sender's end of a transfer (PROTOCOL.md 3.3), without I/O."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from ..errors import LocalProtocolError
from ..framing import FileChunk
from ..limits import MAX_CHUNK_SIZE, TRANSFER_WINDOW
from .client_side import TransferState, _check_offer_fields, _ClientSide, new_transfer_id
from .events import (
    Accepted,
    Acknowledged,
    ClientEvent,
    Finished,
    Refused,
    Rejected,
    Send,
    SendChunk,
)
from .wire import CancelReason


class OutgoingTransfer(_ClientSide):
    """The sender's end: the offer, chunks within the window of 16, ``file_end``, the outcome.

    The caller reads the file; this object says how much to read next
    (:meth:`next_chunk_size`), numbers what was read (:meth:`chunk`) and says
    when to end (:attr:`ready_to_end`, :meth:`end`). Route every server message
    whose ``transfer`` is :attr:`transfer` to :meth:`receive`.
    """

    def __init__(
        self,
        *,
        to: str,
        name: str,
        size: int,
        sha256: str,
        transfer: str | None = None,
        window: int = TRANSFER_WINDOW,
    ) -> None:
        transfer = new_transfer_id() if transfer is None else transfer
        try:
            _check_offer_fields(transfer, name, size, sha256)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.transfer = transfer
        self.transfer_bytes = bytes.fromhex(transfer)
        self.to = to
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.window = window
        self.state = TransferState.OFFERED
        self.reason = None
        self.next_index = 0
        self.bytes_sent = 0
        self.bytes_acked = 0
        self._in_flight: deque[int] = deque()  # lengths of sent, unacknowledged chunks

    def __repr__(self) -> str:
        return (
            f"<OutgoingTransfer {self.transfer[:8]} {self.state.value} "
            f"{self.bytes_acked}/{self.size}>"
        )

    def offer(self, id: str | None = None) -> dict[str, Any]:
        """The ``file_offer`` request (give it an ``id`` to match the server's answer)."""
        message: dict[str, Any] = {
            "type": "file_offer",
            "transfer": self.transfer,
            "to": self.to,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
        }
        if id is not None:
            message["id"] = id
        return message

    def offer_refused(self, code: str, message: str = "") -> list[ClientEvent]:
        """The server answered the offer with ``error``: the transfer never started."""
        if self.state is not TransferState.OFFERED:
            return []
        self.state = TransferState.FAILED
        self.reason = str(code)
        return [Refused(str(code), message)]

    @property
    def unacked(self) -> int:
        return len(self._in_flight)

    def next_chunk_size(self) -> int:
        """How many bytes the next chunk may hold now: 0 while the window is full or all is sent."""
        if self.state is not TransferState.RUNNING or len(self._in_flight) >= self.window:
            return 0
        return min(MAX_CHUNK_SIZE, self.size - self.bytes_sent)

    def chunk(self, data: bytes) -> list[ClientEvent]:
        """The chunk record for the next ``data`` (1 to :meth:`next_chunk_size` bytes)."""
        allowed = self.next_chunk_size()
        if not 1 <= len(data) <= allowed:
            raise LocalProtocolError(f"a chunk now holds 1 to {allowed} bytes, not {len(data)}")
        chunk = FileChunk(self.transfer_bytes, self.next_index, bytes(data))
        self.next_index += 1
        self.bytes_sent += len(data)
        self._in_flight.append(len(data))
        return [SendChunk(chunk)]

    @property
    def ready_to_end(self) -> bool:
        """Every byte is sent: ``file_end`` may go (acks need not have come back)."""
        return self.state is TransferState.RUNNING and self.bytes_sent == self.size

    def end(self) -> list[ClientEvent]:
        """The ``file_end`` message, once :attr:`ready_to_end`."""
        if not self.ready_to_end:
            raise LocalProtocolError("file_end goes after the last byte, while running")
        self.state = TransferState.ENDED
        return [Send({"type": "file_end", "transfer": self.transfer})]

    def receive(self, message: Mapping[str, Any]) -> list[ClientEvent]:
        """A server message about this transfer. Stale or unknown ones change nothing."""
        if not self._mine(message):
            return []
        kind = message.get("type")
        if kind == "file_accept" and self.state is TransferState.OFFERED:
            self.state = TransferState.RUNNING
            return [Accepted()]
        if kind == "file_reject" and self.state is TransferState.OFFERED:
            self.state = TransferState.FAILED
            self.reason = "rejected"
            return [Rejected()]
        if kind == "file_ack":
            return self._on_ack(message.get("index"))
        if kind == "file_done":
            kept = message.get("ok") is True and self.state is TransferState.ENDED
            self.state = TransferState.FINISHED if kept else TransferState.FAILED
            self.reason = None if kept else "not_kept"
            return [Finished(kept)]
        if kind == "file_cancel":
            return self._peer_cancelled(message)
        return []

    def _on_ack(self, index: Any) -> list[ClientEvent]:
        expected = self.next_index - len(self._in_flight)
        if isinstance(index, bool) or index != expected or not self._in_flight:
            # The server checks acks; one out of order means something is broken: stop.
            return self.cancel(CancelReason.CHUNK_OUT_OF_ORDER)
        self.bytes_acked += self._in_flight.popleft()
        return [Acknowledged(index, self.bytes_acked)]
