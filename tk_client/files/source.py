"""The sending side: the file to send (:class:`FileSource`) and its end (:class:`Upload`).

No tkinter, no network. Memory stays constant whatever the file's size: the
sender hashes in a first pass with one reusable 1 MiB buffer and reads 64 KiB
chunks in a second pass (at most the window of 16 in flight), hashing again as
it reads (:class:`chatproto.transfer.IntegrityCheck`), so a file that changed
between the passes is cancelled (``file_changed``) instead of ended.

Not thread-safe: one thread drives an :class:`Upload` (the threading rule is
in :mod:`tk_client.files.manager`).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from chatproto.crypto_utils import Sha256
from chatproto.e2e_files import TAG_SIZE, ChunkCipher, encrypted_size
from chatproto.limits import MAX_CHUNK_SIZE, MAX_FILE_NAME_LENGTH
from chatproto.transfer import (
    CancelReason,
    ClientEvent,
    IntegrityCheck,
    OutgoingTransfer,
    TransferIntegrityError,
)

from .progress import Progress

HASH_BUFFER_SIZE = 1 << 20  # the hashing pass reads 1 MiB at a time into one reused buffer


def offer_name(path: Path) -> str:
    """The ``name`` to offer for ``path``: its base name, valid UTF-8, 1 to 255 characters."""
    # A POSIX name may hold bytes that are not UTF-8 (surrogate escapes): they cannot be sent.
    name = os.fsencode(path.name).decode("utf-8", "replace")[:MAX_FILE_NAME_LENGTH]
    return name or "file"


class FileSource:
    """A file to send: one pass to hash it for the offer, one pass to read the chunks.

    Opening hashes the whole file (seconds for gigabytes: do it off the user
    interface's and the network's threads; ``on_progress(bytes_hashed)`` is
    called after each MiB and may raise to abort). The second pass hashes again
    as it reads, and :meth:`verify` fails if the file changed in between, so
    the sender can cancel instead of sending ``file_end`` for other content.
    The file stays open between the passes, so a file replaced by rename is
    still read as it was hashed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.path = Path(path)
        mode = os.stat(self.path).st_mode  # before open(): opening a FIFO would block
        if not stat.S_ISREG(mode):
            raise OSError(
                errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                f"{self.path} is not a regular file; choose a file to send",
            )
        self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        try:
            self.size, self.sha256 = _hash_file(self._file, on_progress)
            self._file.seek(0)
        except BaseException:
            self._file.close()
            raise
        self.name = offer_name(self.path)
        self._check = IntegrityCheck(self.size, self.sha256)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def bytes_read(self) -> int:
        return self._check.count

    def read_chunk(self, size: int = MAX_CHUNK_SIZE) -> bytes:
        """The next ``size`` bytes (at most what is left). TransferIntegrityError if it shrank."""
        size = min(size, self._check.remaining)
        data = self._file.read(size)
        if len(data) < size:
            raise TransferIntegrityError(
                CancelReason.FILE_CHANGED, f"{self.path.name} got shorter while it was being sent"
            )
        self._check.update(data)
        return data

    def verify(self) -> None:
        """After the last chunk: TransferIntegrityError unless the file is as it was hashed."""
        if self._check.remaining or self._file.read(1) or not self._check.matches():
            raise TransferIntegrityError(
                CancelReason.FILE_CHANGED, f"{self.path.name} changed while it was being sent"
            )

    def close(self) -> None:
        self._file.close()


def _hash_file(file: BinaryIO, on_progress: Callable[[int], None] | None) -> tuple[int, str]:
    digest = Sha256()
    buffer = bytearray(HASH_BUFFER_SIZE)
    view = memoryview(buffer)
    total = 0
    while count := file.readinto(buffer):  # type: ignore[attr-defined]  # binary files have readinto; typing.BinaryIO lacks it
        digest.update(view[:count])
        total += count
        if on_progress is not None:
            on_progress(total)
    return total, digest.hexdigest()


class Upload:
    """Sending one file: :class:`OutgoingTransfer` + :class:`FileSource` + :class:`Progress`.

    Every method returns client events: put :class:`~chatproto.transfer.Send` and
    :class:`~chatproto.transfer.SendChunk` on the wire in order, show the rest.
    After an accept or an ack, :meth:`handle` also returns the chunks the
    window now allows and, after the last one, ``file_end`` (or a cancel with
    ``file_changed`` if the file changed since it was hashed).

    Route to :meth:`handle` every server message whose ``transfer`` is
    :attr:`transfer`; an ``error`` answering the offer goes to :meth:`offer_refused`.
    With a ``cipher`` (end to end, protocol.md 4.12) each piece is sealed as it is read,
    16 bytes shorter than the chunk the window allows, and the wire counts the encrypted
    stream while progress counts the file's own bytes.
    Not thread-safe: call every method from the one thread that drives this
    transfer (see :mod:`tk_client.files.manager`).
    """

    def __init__(
        self,
        source: FileSource,
        to: str,
        *,
        transfer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        key: bytes | None = None,
    ) -> None:
        self.source = source
        try:
            size = source.size if key is None else encrypted_size(source.size)
            self.outgoing = OutgoingTransfer(
                to=to, name=source.name, size=size, sha256=source.sha256, transfer=transfer
            )
            self.cipher = None if key is None else ChunkCipher(key, self.transfer, source.size)
        except BaseException:
            source.close()
            raise
        self._overhead = 0 if key is None else TAG_SIZE  # what a chunk adds to its piece
        self.progress = Progress(source.size)
        self._clock = clock
        self.progress.update(0, clock())

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        to: str,
        *,
        on_progress: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Upload:
        """Hash ``path`` (blocking: call it off the user interface's thread) and prepare it."""
        return cls(FileSource(path, on_progress=on_progress), to, clock=clock)

    @property
    def transfer(self) -> str:
        return self.outgoing.transfer

    @property
    def over(self) -> bool:
        return self.outgoing.over

    def offer(self, id: str | None = None, *, e2e: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``file_offer`` request; the offer expires if unanswered for 5 minutes.

        End to end (4.12): ``e2e`` is the sealed ``file`` plaintext, which replaces ``name``
        and ``sha256``; ``size`` is the encrypted stream's."""
        message = self.outgoing.offer(id)
        if self.cipher is None:
            return message
        if e2e is None:
            raise ValueError("an end-to-end offer carries its sealed e2e")
        del message["name"], message["sha256"]
        message["e2e"] = e2e
        return message

    def offer_refused(self, code: str, message: str = "") -> list[ClientEvent]:
        return self._closing(self.outgoing.offer_refused(code, message))

    def handle(self, message: Mapping[str, Any]) -> list[ClientEvent]:
        """A server message about this transfer: its events, then what may be sent now."""
        events = self.outgoing.receive(message)
        acked = self.outgoing.bytes_acked - self._overhead * self.outgoing.chunks.next_ack
        self.progress.update(acked, self._clock())
        return self._closing(events + self.pump())

    def pump(self) -> list[ClientEvent]:
        """The chunks the window allows now, then ``file_end`` once everything is read."""
        events: list[ClientEvent] = []
        try:
            while size := self.outgoing.next_chunk_size():
                piece = self.source.read_chunk(size - self._overhead)
                if self.cipher is not None:
                    piece = self.cipher.encrypt(self.outgoing.next_index, piece)
                events += self.outgoing.chunk(piece)
            if self.outgoing.ready_to_end:
                self.source.verify()
                events += self.outgoing.end()
        except TransferIntegrityError as exc:
            events += self.outgoing.cancel(exc.reason)
        except OSError:
            events += self.outgoing.cancel(CancelReason.READ_FAILED)
        return self._closing(events)

    def cancel(self, reason: str = CancelReason.CANCELLED) -> list[ClientEvent]:
        return self._closing(self.outgoing.cancel(reason))

    def connection_lost(self) -> list[ClientEvent]:
        """The connection dropped: over, nothing to send (the server tells the recipient)."""
        return self._closing(self.outgoing.connection_lost())

    def close(self) -> None:
        self.source.close()

    def _closing(self, events: list[ClientEvent]) -> list[ClientEvent]:
        if self.outgoing.over:
            self.source.close()
        return events
