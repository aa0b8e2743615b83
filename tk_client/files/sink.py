"""The receiving side: the file being written (:class:`FileSink`) and its end (:class:`Download`).

No tkinter, no network. What the recipient leaves on disk: nothing but the
verified file. Chunks go to a hidden temporary file (mode 0600) beside the
destination, written as they come and hashed as they are written
(:class:`chatproto.transfer.IntegrityCheck`); it is renamed into place only
after the size and the SHA-256 match, and removed on every other ending
(declined, cancelled, failed, mismatch, the program exiting; after a crash,
:mod:`tk_client.partials` removes it at the next start).

Not thread-safe: one thread drives a :class:`Download` (the threading rule is
in :mod:`tk_client.files.manager`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from chatproto.e2e_files import NOT_VERIFIED, ChunkCipher, ChunkRejected, FileFacts
from chatproto.framing import FileChunk
from chatproto.transfer import (
    CancelReason,
    ChunkData,
    ClientEvent,
    Ended,
    IncomingTransfer,
    IntegrityCheck,
    TransferIntegrityError,
)

from ..partials import PartialFiles
from . import words
from .progress import Progress
from .words import format_size


def _discard(file: BinaryIO, path: str, journal: PartialFiles | None = None) -> None:
    """Close and remove a temporary file; used by abort() and by the finalizer at exit."""
    with contextlib.suppress(OSError):
        file.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    if journal is not None:
        journal.forget(Path(path))


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FileSink:
    """Where a received file is written: a temporary file beside ``destination``.

    The temporary file is created with mode 0600 and a unique hidden name
    (``.<name>.<random>.part``) in the destination's folder, so the final
    rename never crosses file systems. :meth:`commit` puts it in place only
    after exactly ``size`` bytes with the announced SHA-256 were written, and
    after an fsync; every other ending (:meth:`abort`, an exception in a
    ``with`` block, garbage collection, interpreter exit) removes it. An
    existing destination is refused unless ``overwrite`` (the user agreed to
    replace it), both now and, atomically, at the rename.
    """

    def __init__(
        self,
        destination: str | os.PathLike[str],
        *,
        size: int,
        sha256: str,
        overwrite: bool = False,
        journal: PartialFiles | None = None,
    ) -> None:
        self.destination = Path(destination)
        self.overwrite = overwrite
        folder = self.destination.parent
        if not folder.is_dir():
            raise FileNotFoundError(
                errno.ENOENT, f"the folder {folder} does not exist; choose another place"
            )
        if not overwrite and os.path.lexists(self.destination):
            raise FileExistsError(
                errno.EEXIST,
                f"{self.destination} already exists; choose another name or agree to replace it",
            )
        free = shutil.disk_usage(folder).free
        if size > free:
            raise OSError(
                errno.ENOSPC,
                f"not enough free space in {folder}: the file needs {format_size(size)}, "
                f"{format_size(free)} is free",
            )
        prefix = "." + self.destination.name[:40] + "."
        fd, temp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".part")  # mode 0600
        self.temp_path = Path(temp)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._journal = journal
        if journal is not None:  # so that the next start removes it if this process is killed
            journal.add(self.temp_path, fd)
        self._check = IntegrityCheck(size, sha256)
        self._finalizer = weakref.finalize(self, _discard, self._file, temp, journal)
        self.committed = False

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.committed:
            self.abort()

    @property
    def open(self) -> bool:
        """True until the file is committed or aborted."""
        return self._finalizer.alive

    @property
    def bytes_written(self) -> int:
        return self._check.count

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``: TransferIntegrityError past the offered size, OSError from the disk."""
        if not self.open:
            raise ValueError("the file is already committed or discarded")
        self._check.update(data)
        self._file.write(data)

    def flush(self) -> None:
        """Hand what was written to the operating system (no fsync), so other processes see it."""
        if self.open:
            self._file.flush()

    def commit(self) -> Path:
        """Put the verified file in place and return its path.

        TransferIntegrityError when the size or the SHA-256 do not match,
        FileExistsError when the destination appeared meanwhile (and
        ``overwrite`` is false), OSError from the disk; in every such case the
        temporary file is gone and the destination untouched.
        """
        if not self.open:
            raise ValueError("the file is already committed or discarded")
        try:
            if not self._check.matches():
                raise TransferIntegrityError(
                    CancelReason.SIZE_EXCEEDED,
                    "the received file does not match the offer's size and SHA-256",
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._place()
        except BaseException:
            self.abort()
            raise
        self._finalizer.detach()
        self.committed = True
        if self._journal is not None:
            self._journal.forget(self.temp_path)
        _fsync_directory(self.destination.parent)
        return self.destination

    def _place(self) -> None:
        temp, destination = str(self.temp_path), str(self.destination)
        if self.overwrite:
            os.replace(temp, destination)
            return
        try:
            os.link(temp, destination)  # fails if the destination exists: no overwrite race
        except FileExistsError:
            raise FileExistsError(
                errno.EEXIST, f"{self.destination} appeared meanwhile; it was left untouched"
            ) from None
        except OSError:
            # No hard links here (FAT, some network shares): rename without replacing.
            if os.name == "nt":
                os.rename(temp, destination)  # Windows: fails if the destination exists
                return
            if os.path.lexists(destination):
                raise FileExistsError(
                    errno.EEXIST, f"{self.destination} appeared meanwhile; it was left untouched"
                ) from None
            os.replace(temp, destination)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)

    def abort(self) -> None:
        """Remove the temporary file. Safe to call more than once, and after a commit."""
        self._finalizer()


class Download:
    """Receiving one file: :class:`IncomingTransfer` + :class:`FileSink` + :class:`Progress`.

    Create it once the user chose ``destination`` (creating the sink fails early
    if the file exists or the disk is too small: say so and reject), then send
    the events of :meth:`accept`. Feed chunks to :meth:`handle_chunk` and the
    transfer's messages to :meth:`handle`. :attr:`path` is the saved file once
    :class:`~chatproto.transfer.Finished` says ``ok``; otherwise nothing is left.
    Not thread-safe, like :class:`~tk_client.files.source.Upload`.

    End to end (4.12), ``facts`` are what the verified offer said (the file's size and
    SHA-256, its key): each chunk is decrypted at its place before anything of it is
    written, and one that does not decrypt (altered, swapped, replayed, out of place,
    past the last) ends the transfer with ``not_verified``.
    """

    def __init__(
        self,
        incoming: IncomingTransfer,
        destination: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        clock: Callable[[], float] = time.monotonic,
        journal: PartialFiles | None = None,
        facts: FileFacts | None = None,
    ) -> None:
        self.incoming = incoming
        size, sha256 = (
            (incoming.size, incoming.sha256) if facts is None else (facts.size, facts.sha256)
        )
        self.cipher = None if facts is None else ChunkCipher(facts.key, incoming.transfer, size)
        self.sink = FileSink(
            destination, size=size, sha256=sha256, overwrite=overwrite, journal=journal
        )
        self.progress = Progress(size)
        self.path: Path | None = None
        self._clock = clock
        self.progress.update(0, clock())

    @property
    def transfer(self) -> str:
        return self.incoming.transfer

    @property
    def over(self) -> bool:
        return self.incoming.over

    def accept(self) -> list[ClientEvent]:
        """The ``file_accept`` to send; nothing (and no file) if the offer ended meanwhile."""
        return self._closing(self.incoming.accept())

    def handle_chunk(self, chunk: FileChunk) -> list[ClientEvent]:
        """Write a chunk and acknowledge it; a cancel if it breaks the rules or the disk fails."""
        incoming, cipher = self.incoming, self.cipher
        misplaced = (  # end to end: out of place, or past the last piece
            cipher is not None
            and not incoming.over
            and chunk.transfer == incoming.transfer_bytes
            and (chunk.index != incoming.next_index or chunk.index >= cipher.pieces)
        )
        if misplaced:
            return self._closing(incoming.cancel(NOT_VERIFIED))
        events: list[ClientEvent] = []
        for event in incoming.receive_chunk(chunk):
            if not isinstance(event, ChunkData):
                events.append(event)
                continue
            try:
                piece = event.data if cipher is None else cipher.decrypt(event.index, event.data)
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

    def handle(self, message: Mapping[str, Any]) -> list[ClientEvent]:
        """``file_end`` (verify, rename, answer ``file_done``) or ``file_cancel``."""
        events: list[ClientEvent] = []
        for event in self.incoming.receive(message):
            if isinstance(event, Ended):
                events += self._finish(event)
            else:
                events.append(event)
        return self._closing(events)

    def _finish(self, ended: Ended) -> list[ClientEvent]:
        detail = ""
        kept = False
        if not ended.size_ok:
            detail = words.SIZE_MISMATCH
        else:
            try:
                self.path = self.sink.commit()
                kept = True
            except TransferIntegrityError:
                detail = words.HASH_MISMATCH
            except OSError as exc:
                detail = words.save_failed(exc)
        events = self.incoming.finish(kept, detail)
        return events

    def reject(self) -> list[ClientEvent]:
        """Decline after all (e.g. the user closed the save dialog)."""
        return self._closing(self.incoming.reject())

    def cancel(self, reason: str = CancelReason.CANCELLED) -> list[ClientEvent]:
        return self._closing(self.incoming.cancel(reason))

    def connection_lost(self) -> list[ClientEvent]:
        """The connection dropped: over, the partial file removed, nothing to send."""
        return self._closing(self.incoming.connection_lost())

    def _closing(self, events: list[ClientEvent]) -> list[ClientEvent]:
        if self.incoming.over and not self.sink.committed:
            self.sink.abort()
        return events
