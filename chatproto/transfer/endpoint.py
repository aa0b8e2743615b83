"""The clients' two ends of a transfer (PROTOCOL.md 3.3), without I/O.

:class:`OutgoingTransfer` (the sender) and :class:`IncomingTransfer` (the
recipient) take what arrived (a server message, a chunk record, "this chunk is
written") and return :mod:`~chatproto.transfer.events` client events: messages
to send and things to show. They hold counters, never file data; the caller
reads, writes and hashes the file (:class:`IntegrityCheck`). The sender sends
``file_end`` as soon as every byte is sent, without waiting for the last acks;
the recipient verifies the size and the SHA-256 before it answers
``file_done``.

Neither end is thread-safe: a client drives each one from one thread (the
desktop and terminal clients say which in :mod:`tk_client.files.manager`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from ..codes import ErrorCode
from ..crypto_utils import Sha256
from ..errors import ChatProtoError, LocalProtocolError, MessageError
from ..framing import FileChunk
from ..limits import MAX_CANCEL_REASON_LENGTH, MAX_CHUNK_SIZE, TRANSFER_WINDOW
from ..messages import USERNAME_RE, check_offer_facts
from .events import (
    Accepted,
    Acknowledged,
    Cancelled,
    ChunkData,
    ClientEvent,
    Ended,
    Finished,
    Refused,
    Rejected,
    Send,
    SendChunk,
)
from .wire import (
    CancelReason,
    ChunkWindow,
    TransferState,
    file_cancel,
    new_transfer_id,
    sanitize_filename,
)


class _Endpoint:
    """What both ends share: the id, the offer's facts, the state and how it ended."""

    def __init__(self, transfer: str, name: str, size: int, sha256: str, window: int) -> None:
        check_offer_facts({"transfer": transfer, "name": name, "size": size, "sha256": sha256})
        self.transfer = transfer
        self.transfer_bytes = bytes.fromhex(transfer)
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.window = window
        self.state = TransferState.OFFERED
        # Why it failed: a CancelReason value, "rejected", "not_kept" or an error code.
        self.reason: str | None = None

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


class OutgoingTransfer(_Endpoint):
    """The sender's end: the offer, chunks within the window of 16, ``file_end``, the outcome.

    The caller reads the file; this object says how much to read next
    (:meth:`next_chunk_size`), numbers what was read (:meth:`chunk`) and says
    when to end (:attr:`ready_to_end`, :meth:`end`). Route every server message
    whose ``transfer`` is :attr:`transfer` to :meth:`receive`.
    LocalProtocolError if the offer's facts break the protocol's rules.
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
            super().__init__(transfer, name, size, sha256, window)
        except MessageError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.to = to
        self.chunks = ChunkWindow(size, window)  # the same counters as the relay's
        self.bytes_acked = 0
        self._in_flight: deque[int] = deque()  # lengths of sent, unacknowledged chunks

    @property
    def next_index(self) -> int:
        """The index the next chunk will carry."""
        return self.chunks.next_index

    @property
    def bytes_sent(self) -> int:
        """Bytes of file data put in chunk records so far."""
        return self.chunks.received

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
        """Chunks sent and not yet acknowledged (at most the window)."""
        return self.chunks.unacked

    def next_chunk_size(self) -> int:
        """How many bytes the next chunk may hold now: 0 while the window is full or all is sent."""
        if self.state is not TransferState.RUNNING or self.chunks.unacked >= self.window:
            return 0
        return min(MAX_CHUNK_SIZE, self.size - self.bytes_sent)

    def chunk(self, data: bytes) -> list[ClientEvent]:
        """The chunk record for the next ``data`` (1 to :meth:`next_chunk_size` bytes)."""
        allowed = self.next_chunk_size()
        if not 1 <= len(data) <= allowed:
            raise LocalProtocolError(f"a chunk now holds 1 to {allowed} bytes, not {len(data)}")
        chunk = FileChunk(self.transfer_bytes, self.next_index, bytes(data))
        self.chunks.passed(len(data))
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

    def _on_ack(self, index: object) -> list[ClientEvent]:
        if not self.chunks.acknowledge(index):
            # The server checks acks; one out of order means something is broken: stop.
            return self.cancel(CancelReason.CHUNK_OUT_OF_ORDER)
        self.bytes_acked += self._in_flight.popleft()
        return [Acknowledged(self.chunks.next_ack - 1, self.bytes_acked)]


class IncomingTransfer(_Endpoint):
    """The recipient's end: the offer, chunks in order, an ack after each write, the verdict.

    The caller writes (and hashes, see :class:`IntegrityCheck`) the data of each
    :class:`ChunkData`, then calls :meth:`written` for the ack. On :class:`Ended`
    it keeps the file only if the size and SHA-256 match and reports with
    :meth:`finish`. The name to save under is :attr:`safe_name`, never :attr:`name`.
    MessageError if the offer's facts break the protocol's rules.
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
        super().__init__(transfer, name, size, sha256, window)
        self.sender = sender
        self.safe_name = sanitize_filename(name)
        self.chunks = ChunkWindow(size, window)  # the counters of the chunk-window rule
        self.bytes_written = 0
        self._lengths: deque[int] = deque()  # received, not yet written

    @property
    def next_index(self) -> int:
        """The index the next chunk must carry."""
        return self.chunks.next_index

    @property
    def next_ack(self) -> int:
        """The next chunk to acknowledge (once it is written)."""
        return self.chunks.next_ack

    @property
    def bytes_received(self) -> int:
        """Bytes of the chunks taken so far (written or waiting to be)."""
        return self.chunks.received

    def __repr__(self) -> str:
        return (
            f"<IncomingTransfer {self.transfer[:8]} {self.state.value} "
            f"{self.bytes_written}/{self.size}>"
        )

    @classmethod
    def from_offer(cls, message: Mapping[str, Any]) -> IncomingTransfer:
        """The transfer a relayed ``file_offer`` proposes; MessageError if it is malformed."""
        sender = message.get("from")
        if not isinstance(sender, str) or not USERNAME_RE.fullmatch(sender):
            raise MessageError(ErrorCode.BAD_REQUEST, "malformed file offer: no valid 'from'")
        try:
            return cls(
                transfer=message.get("transfer"),  # type: ignore[arg-type]  # checked by __init__
                sender=sender,
                name=message.get("name"),  # type: ignore[arg-type]  # checked by __init__
                size=message.get("size"),  # type: ignore[arg-type]  # checked by __init__
                sha256=message.get("sha256"),  # type: ignore[arg-type]  # checked by __init__
            )
        except MessageError as exc:
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
        running = self.state is TransferState.RUNNING
        violation = self.chunks.violation(chunk.index, size, running=running)
        if violation is not None:
            return self.cancel(violation)
        self.chunks.passed(size)
        self._lengths.append(size)
        return [ChunkData(chunk.index, chunk.data)]

    def written(self, index: int) -> list[ClientEvent]:
        """Chunk ``index`` is written: the ``file_ack`` to send (acks go in order)."""
        if not self.chunks.acknowledge(index):
            raise LocalProtocolError(f"chunk {index} is not the next one to acknowledge")
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


# --- checking the file's bytes against the offer -----------------------------------------------


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
        """Count and hash ``data``; TransferIntegrityError (size_exceeded) past ``size``."""
        length = len(data)
        if self.count + length > self.size:
            raise TransferIntegrityError(
                CancelReason.SIZE_EXCEEDED, f"more than the {self.size} bytes announced"
            )
        self._hash.update(data)
        self.count += length

    @property
    def remaining(self) -> int:
        """Bytes still to come before the announced size is reached."""
        return self.size - self.count

    def hexdigest(self) -> str:
        """The SHA-256 of what went through so far, in lowercase hex."""
        return self._hash.hexdigest()

    def matches(self) -> bool:
        """True if exactly ``size`` bytes with the announced SHA-256 went through."""
        return self.count == self.size and self.hexdigest() == self.sha256
