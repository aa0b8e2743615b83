"""End-to-end files (protocol.md 4.12): each chunk encrypted as it is read, decrypted before it
is written. No tkinter, no network.

:class:`SealedUpload` and :class:`SealedDownload` are :class:`~.source.Upload` and
:class:`~.sink.Download` whose chunks carry ``ChunkCipher`` pieces: the wire machines
(:class:`~chatproto.transfer.OutgoingTransfer`, :class:`~chatproto.transfer.IncomingTransfer`)
count the encrypted stream (``encrypted_size``), the file and its
:class:`~chatproto.transfer.IntegrityCheck` the file's own bytes. A piece is 16 bytes shorter
than its chunk, so the chunk size that the window allows next, less the tag, is exactly the
next piece. Memory stays constant: one piece at a time. Progress counts the file's bytes.

Not thread-safe, like the classes they extend (see :mod:`tk_client.files.manager`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from chatproto.e2e_files import (
    NOT_VERIFIED,
    TAG_SIZE,
    ChunkCipher,
    ChunkRejected,
    FileFacts,
    encrypted_size,
)
from chatproto.framing import FileChunk
from chatproto.transfer import (
    CancelReason,
    ChunkData,
    ClientEvent,
    IncomingTransfer,
    OutgoingTransfer,
    TransferIntegrityError,
)

from ..partials import PartialFiles
from .progress import Progress
from .sink import Download, FileSink
from .source import FileSource, Upload


class SealedUpload(Upload):
    """Sending one file end to end under ``key`` (the file key, fresh for this file)."""

    def __init__(
        self,
        source: FileSource,
        to: str,
        *,
        transfer: str,
        key: bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        try:
            self.outgoing = OutgoingTransfer(
                to=to,
                name=source.name,
                size=encrypted_size(source.size),
                sha256=source.sha256,
                transfer=transfer,
            )
            self.cipher = ChunkCipher(key, transfer, source.size)
        except BaseException:
            source.close()
            raise
        self.progress = Progress(source.size)
        self._clock = clock
        self.progress.update(0, clock())

    def offer(self, id: str | None = None, *, e2e: dict[str, Any] | None = None) -> dict[str, Any]:
        """The 4.12 ``file_offer``: the encrypted stream's ``size`` and ``e2e`` (the sealed
        ``file`` plaintext), without ``name`` and ``sha256``."""
        if e2e is None:
            raise ValueError("an end-to-end offer carries its sealed e2e")
        message = self.outgoing.offer(id)
        del message["name"], message["sha256"]
        message["e2e"] = e2e
        return message

    def handle(self, message: Any) -> list[ClientEvent]:
        events = self.outgoing.receive(message)
        # Each acknowledged chunk carried TAG_SIZE bytes more than its piece of the file.
        plain = self.outgoing.bytes_acked - TAG_SIZE * self.outgoing.chunks.next_ack
        self.progress.update(plain, self._clock())
        return self._closing(events + self.pump())

    def pump(self) -> list[ClientEvent]:
        """The encrypted chunks the window allows now, then ``file_end``."""
        events: list[ClientEvent] = []
        try:
            while size := self.outgoing.next_chunk_size():
                index = self.outgoing.next_index
                piece = self.source.read_chunk(size - TAG_SIZE)
                events += self.outgoing.chunk(self.cipher.encrypt(index, piece))
            if self.outgoing.ready_to_end:
                self.source.verify()
                events += self.outgoing.end()
        except TransferIntegrityError as exc:
            events += self.outgoing.cancel(exc.reason)
        except OSError:
            events += self.outgoing.cancel(CancelReason.READ_FAILED)
        return self._closing(events)


class SealedDownload(Download):
    """Receiving one end-to-end file whose verified offer said ``facts`` (name, the file's
    size and SHA-256, the file key). A chunk that does not decrypt at its place (altered,
    swapped, replayed, out of place, past the last) ends the transfer with ``not_verified``
    before anything of it is written; the partial file goes, as after any failure."""

    def __init__(
        self,
        incoming: IncomingTransfer,
        facts: FileFacts,
        destination: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        clock: Callable[[], float] = time.monotonic,
        journal: PartialFiles | None = None,
    ) -> None:
        self.incoming = incoming
        self.cipher = ChunkCipher(facts.key, incoming.transfer, facts.size)
        self.sink = FileSink(
            destination,
            size=facts.size,
            sha256=facts.sha256,
            overwrite=overwrite,
            journal=journal,
        )
        self.progress = Progress(facts.size)
        self.path = None
        self._clock = clock
        self.progress.update(0, clock())

    def handle_chunk(self, chunk: FileChunk) -> list[ClientEvent]:
        incoming = self.incoming
        mine = not incoming.over and chunk.transfer == incoming.transfer_bytes
        if mine and (chunk.index != incoming.next_index or chunk.index >= self.cipher.pieces):
            return self._closing(incoming.cancel(NOT_VERIFIED))  # out of place, or past the last
        events: list[ClientEvent] = []
        for event in incoming.receive_chunk(chunk):
            if not isinstance(event, ChunkData):
                events.append(event)
                continue
            try:
                piece = self.cipher.decrypt(event.index, event.data)
            except ChunkRejected:
                events += incoming.cancel(NOT_VERIFIED)
                break
            try:
                self.sink.write(piece)
            except (OSError, TransferIntegrityError):
                events += incoming.cancel(CancelReason.WRITE_FAILED)
                break
            events += incoming.written(event.index)
            self.progress.update(self.sink.bytes_written, self._clock())
        return self._closing(events)
