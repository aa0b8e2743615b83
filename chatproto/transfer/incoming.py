"""The recipient's end of a transfer (PROTOCOL.md 3.3), without I/O."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from ..codes import ErrorCode
from ..errors import LocalProtocolError, MessageError
from ..framing import FileChunk
from ..limits import MAX_CHUNK_SIZE, TRANSFER_WINDOW
from ..messages import USERNAME_RE
from .client_side import TransferState, _check_offer_fields, _ClientSide
from .events import ChunkData, ClientEvent, Ended, Finished, Send
from .filenames import sanitize_filename
from .wire import CancelReason


class IncomingTransfer(_ClientSide):
    """The recipient's end: the offer, chunks in order, an ack after each write, the verdict.

    The caller writes (and hashes, see :class:`IntegrityCheck`) the data of each
    :class:`ChunkData`, then calls :meth:`written` for the ack. On :class:`Ended`
    it keeps the file only if the size and SHA-256 match and reports with
    :meth:`finish`. The name to save under is :attr:`safe_name`, never :attr:`name`.
    """

    def __init__(
        self,
        *,
        transfer: str,
        sender: str,
        name: str,
        size: int,
        sha256: str,
        window: int = TRANSFER_WINDOW,
    ) -> None:
        _check_offer_fields(transfer, name, size, sha256)
        self.transfer = transfer
        self.transfer_bytes = bytes.fromhex(transfer)
        self.sender = sender
        self.name = name
        self.safe_name = sanitize_filename(name)
        self.size = size
        self.sha256 = sha256
        self.window = window
        self.state = TransferState.OFFERED
        self.reason = None
        self.next_index = 0  # the index the next chunk must carry
        self.next_ack = 0  # the next chunk to acknowledge
        self.bytes_received = 0
        self.bytes_written = 0
        self._lengths: deque[int] = deque()  # received, not yet written

    def __repr__(self) -> str:
        return (
            f"<IncomingTransfer {self.transfer[:8]} {self.state.value} "
            f"{self.bytes_written}/{self.size}>"
        )

    @classmethod
    def from_offer(cls, message: Mapping[str, Any]) -> IncomingTransfer:
        """The transfer a relayed ``file_offer`` proposes; MessageError if it is malformed."""
        sender = message.get("from")
        try:
            if not isinstance(sender, str) or not USERNAME_RE.fullmatch(sender):
                raise ValueError("the offer has no valid 'from'")
            return cls(
                transfer=message.get("transfer"),  # type: ignore[arg-type]
                sender=sender,
                name=message.get("name"),  # type: ignore[arg-type]
                size=message.get("size"),  # type: ignore[arg-type]
                sha256=message.get("sha256"),  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise MessageError(ErrorCode.BAD_REQUEST, f"malformed file offer: {exc}") from None

    def accept(self) -> list[ClientEvent]:
        """Say yes (after choosing where to save): the ``file_accept`` to send.

        Nothing if the offer ended meanwhile (expired, cancelled, answered in
        another session: a :class:`Cancelled` event already said so).
        """
        if self.over:
            return []
        if self.state is not TransferState.OFFERED:
            raise LocalProtocolError(f"cannot accept a transfer that is {self.state.value}")
        self.state = TransferState.RUNNING
        return [Send({"type": "file_accept", "transfer": self.transfer})]

    def reject(self) -> list[ClientEvent]:
        """Say no: the ``file_reject`` to send (nothing if the offer is already gone)."""
        if self.state is not TransferState.OFFERED:
            return []
        self.state = TransferState.FAILED
        self.reason = "rejected"
        return [Send({"type": "file_reject", "transfer": self.transfer})]

    def receive_chunk(self, chunk: FileChunk) -> list[ClientEvent]:
        """A chunk record of this transfer: its data to write, or a cancel on a violation."""
        if self.over or chunk.transfer != self.transfer_bytes:
            return []  # a straggler after the end: nothing to do
        size = len(chunk.data)
        if self.state is not TransferState.RUNNING or chunk.index != self.next_index:
            return self.cancel(CancelReason.CHUNK_OUT_OF_ORDER)
        if not 1 <= size <= MAX_CHUNK_SIZE:
            return self.cancel(CancelReason.CHUNK_TOO_LARGE)
        if self.next_index - self.next_ack >= self.window:
            return self.cancel(CancelReason.WINDOW_EXCEEDED)
        if self.bytes_received + size > self.size:
            return self.cancel(CancelReason.SIZE_EXCEEDED)
        self.next_index += 1
        self.bytes_received += size
        self._lengths.append(size)
        return [ChunkData(chunk.index, chunk.data)]

    def written(self, index: int) -> list[ClientEvent]:
        """Chunk ``index`` is written: the ``file_ack`` to send (acks go in order)."""
        if index != self.next_ack or not self._lengths:
            raise LocalProtocolError(f"chunk {index} is not the next one to acknowledge")
        self.next_ack += 1
        self.bytes_written += self._lengths.popleft()
        if self.over:
            return []
        return [Send({"type": "file_ack", "transfer": self.transfer, "index": index})]

    def receive(self, message: Mapping[str, Any]) -> list[ClientEvent]:
        """A server message about this transfer: ``file_end`` or ``file_cancel``."""
        if not self._mine(message):
            return []
        kind = message.get("type")
        if kind == "file_end" and self.state is TransferState.RUNNING:
            self.state = TransferState.ENDED
            return [Ended(size_ok=self.bytes_received == self.size)]
        if kind == "file_cancel":
            return self._peer_cancelled(message)
        return []

    def finish(self, kept: bool, detail: str = "") -> list[ClientEvent]:
        """After :class:`Ended`: ``kept`` if the verified file is in place. The ``file_done``."""
        if self.state is not TransferState.ENDED:
            raise LocalProtocolError("finish() answers file_end")
        kept = kept and self.bytes_received == self.size
        self.state = TransferState.FINISHED if kept else TransferState.FAILED
        self.reason = None if kept else "not_kept"
        done = {"type": "file_done", "transfer": self.transfer, "ok": kept}
        return [Send(done), Finished(kept, detail)]
