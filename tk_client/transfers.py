"""Files on disk for :mod:`chatproto.transfer`: stream, hash, write beside, rename when verified.

No tkinter and no network. The session's network thread drives :class:`Upload`
and :class:`Download` (each wraps a ``chatproto`` state machine and a file) and
puts their events for the user interface on its queue; the views show
:func:`describe_progress` and :func:`describe_reason`.

Memory stays constant whatever the file's size: the sender hashes in a first
pass with one reusable 1 MiB buffer and reads 64 KiB chunks in a second pass
(at most the window of 16 in flight); the recipient writes each chunk as it
comes. Both hash as they go (:class:`chatproto.transfer.IntegrityCheck`), so
each byte is hashed once per pass.

What the recipient leaves on disk: nothing but the verified file. Chunks go to
a hidden temporary file (mode 0600) beside the destination, which is renamed
into place only after the size and the SHA-256 match, and removed on every
other ending (declined, cancelled, failed, mismatch, the program exiting).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from chatproto.crypto_utils import Sha256
from chatproto.framing import FileChunk
from chatproto.limits import MAX_CHUNK_SIZE, MAX_FILE_NAME_LENGTH
from chatproto.transfer import (
    OFFER_TIMEOUT_SECONDS,
    CancelReason,
    ChunkData,
    ClientEvent,
    Ended,
    IncomingTransfer,
    IntegrityCheck,
    OutgoingTransfer,
    TransferIntegrityError,
    sanitize_filename,
)

from .files.progress import Progress
from .partials import PartialFiles

HASH_BUFFER_SIZE = 1 << 20  # the hashing pass reads 1 MiB at a time into one reused buffer
NAME_BUDGET = 240  # bytes of UTF-8 for a saved name: 255 on every common file system, less " (n)"
MAX_EXTENSION = 32  # bytes; a longer "extension" is not one and may be cut like the rest
WINDOWS_FORBIDDEN = '<>:"|?*'  # not allowed in Windows file names (":" would name a stream)


# --- the sender's file -----------------------------------------------------------------------


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
    while count := file.readinto(buffer):  # type: ignore[attr-defined]
        digest.update(view[:count])
        total += count
        if on_progress is not None:
            on_progress(total)
    return total, digest.hexdigest()


# --- the recipient's file --------------------------------------------------------------------


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

    def write(self, data: bytes) -> None:
        """Append ``data``: TransferIntegrityError past the offered size, OSError from the disk."""
        if not self.open:
            raise ValueError("the file is already committed or discarded")
        self._check.update(data)
        self._file.write(data)

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


# --- names -----------------------------------------------------------------------------------


def _split_extension(name: str) -> tuple[str, str]:
    """("report", ".pdf"), ("archive", ".tar.gz"), ("README", "")."""
    dot = name.rfind(".")
    if dot <= 0 or len(name[dot:].encode("utf-8")) > MAX_EXTENSION:
        return name, ""
    stem, extension = name[:dot], name[dot:]
    if stem.lower().endswith(".tar") and len(stem) > 4:
        stem, extension = stem[:-4], stem[-4:] + extension
    return stem, extension


def _fit(name: str, budget: int) -> str:
    """``name`` cut to ``budget`` bytes of UTF-8, keeping its extension."""
    if len(name.encode("utf-8")) <= budget:
        return name
    stem, extension = _split_extension(name)
    room = budget - len(extension.encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore")  # never half a character
    return sanitize_filename(stem + extension)


def safe_name(offered: str, *, windows: bool | None = None) -> str:
    """The local file name for an offered ``name``; also the save dialog's initial name.

    Sanitized as PROTOCOL.md 3.3 says, cut to fit every common file system (255
    bytes, with room left for " (n)"), and on Windows (``windows``; by default
    when running there) without the characters Windows refuses in names.
    """
    if windows is None:
        windows = os.name == "nt"
    name = sanitize_filename(offered)
    if windows:
        name = sanitize_filename("".join("_" if c in WINDOWS_FORBIDDEN else c for c in name))
    return _fit(name, NAME_BUDGET)


def incoming_destination(
    folder: str | os.PathLike[str], offered: str, *, windows: bool | None = None
) -> Path:
    """A free path in ``folder`` for an offered file name: ``name``, else ``name (1).ext``...

    For saving without a dialog (``--accept-files DIR``). Taken names include
    dangling symbolic links. The name is free when chosen; :class:`FileSink`
    still refuses, at the rename, a file that appears meanwhile.
    """
    folder = Path(folder)
    name = safe_name(offered, windows=windows)
    stem, extension = _split_extension(name)
    candidate = folder / name
    number = 1
    while os.path.lexists(candidate):
        if number > 9999:
            raise FileExistsError(
                errno.EEXIST, f"too many files named like {name} in {folder}; tidy it up"
            )
        candidate = folder / f"{stem} ({number}){extension}"
        number += 1
    if candidate.parent != folder:  # defence in depth: a name is never a path
        raise ValueError("a sanitized name left its folder")
    return candidate


# --- the two ends, with their files ----------------------------------------------------------

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _locked(method: _Method) -> _Method:
    """Serialise a method: the network thread feeds messages while the user may press Cancel."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Upload:
    """Sending one file: :class:`OutgoingTransfer` + :class:`FileSource` + :class:`Progress`.

    Every method returns client events: put :class:`~chatproto.transfer.Send` and
    :class:`~chatproto.transfer.SendChunk` on the wire in order, show the rest.
    After an accept or an ack, :meth:`handle` also returns the chunks the
    window now allows and, after the last one, ``file_end`` (or a cancel with
    ``file_changed`` if the file changed since it was hashed).

    Route to :meth:`handle` every server message whose ``transfer`` is
    :attr:`transfer`; an ``error`` answering the offer goes to :meth:`offer_refused`.
    Methods are serialised by a lock, so the user interface may call
    :meth:`cancel` while the network thread calls :meth:`handle`.
    """

    def __init__(
        self,
        source: FileSource,
        to: str,
        *,
        transfer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        try:
            self.outgoing = OutgoingTransfer(
                to=to, name=source.name, size=source.size, sha256=source.sha256, transfer=transfer
            )
        except BaseException:
            source.close()
            raise
        self._lock = threading.RLock()
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

    def offer(self, id: str | None = None) -> dict[str, Any]:
        """The ``file_offer`` request; the offer expires if unanswered for 5 minutes."""
        return self.outgoing.offer(id)

    @_locked
    def offer_refused(self, code: str, message: str = "") -> list[ClientEvent]:
        return self._closing(self.outgoing.offer_refused(code, message))

    @_locked
    def handle(self, message: Mapping[str, Any]) -> list[ClientEvent]:
        """A server message about this transfer: its events, then what may be sent now."""
        events = self.outgoing.receive(message)
        self.progress.update(self.outgoing.bytes_acked, self._clock())
        return self._closing(events + self.pump())

    @_locked
    def pump(self) -> list[ClientEvent]:
        """The chunks the window allows now, then ``file_end`` once everything is read."""
        events: list[ClientEvent] = []
        try:
            while size := self.outgoing.next_chunk_size():
                events += self.outgoing.chunk(self.source.read_chunk(size))
            if self.outgoing.ready_to_end:
                self.source.verify()
                events += self.outgoing.end()
        except TransferIntegrityError as exc:
            events += self.outgoing.cancel(exc.reason)
        except OSError:
            events += self.outgoing.cancel(CancelReason.READ_FAILED)
        return self._closing(events)

    @_locked
    def cancel(self, reason: str = CancelReason.CANCELLED) -> list[ClientEvent]:
        return self._closing(self.outgoing.cancel(reason))

    @_locked
    def connection_lost(self) -> list[ClientEvent]:
        """The connection dropped: over, nothing to send (the server tells the recipient)."""
        return self._closing(self.outgoing.connection_lost())

    def close(self) -> None:
        self.source.close()

    def _closing(self, events: list[ClientEvent]) -> list[ClientEvent]:
        if self.outgoing.over:
            self.source.close()
        return events


class Download:
    """Receiving one file: :class:`IncomingTransfer` + :class:`FileSink` + :class:`Progress`.

    Create it once the user chose ``destination`` (creating the sink fails early
    if the file exists or the disk is too small: say so and reject), then send
    the events of :meth:`accept`. Feed chunks to :meth:`handle_chunk` and the
    transfer's messages to :meth:`handle`. :attr:`path` is the saved file once
    :class:`~chatproto.transfer.Finished` says ``ok``; otherwise nothing is left.
    Methods are serialised by a lock, like :class:`Upload`'s.
    """

    def __init__(
        self,
        incoming: IncomingTransfer,
        destination: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        clock: Callable[[], float] = time.monotonic,
        journal: PartialFiles | None = None,
    ) -> None:
        self.incoming = incoming
        self.sink = FileSink(
            destination,
            size=incoming.size,
            sha256=incoming.sha256,
            overwrite=overwrite,
            journal=journal,
        )
        self._lock = threading.RLock()
        self.progress = Progress(incoming.size)
        self.path: Path | None = None
        self._clock = clock
        self.progress.update(0, clock())

    @property
    def transfer(self) -> str:
        return self.incoming.transfer

    @property
    def over(self) -> bool:
        return self.incoming.over

    @_locked
    def accept(self) -> list[ClientEvent]:
        """The ``file_accept`` to send; nothing (and no file) if the offer ended meanwhile."""
        return self._closing(self.incoming.accept())

    @_locked
    def handle_chunk(self, chunk: FileChunk) -> list[ClientEvent]:
        """Write a chunk and acknowledge it; a cancel if it breaks the rules or the disk fails."""
        events: list[ClientEvent] = []
        for event in self.incoming.receive_chunk(chunk):
            if not isinstance(event, ChunkData):
                events.append(event)
                continue
            try:
                self.sink.write(event.data)
            except (OSError, TransferIntegrityError):
                events += self.incoming.cancel(CancelReason.WRITE_FAILED)
                break
            events += self.incoming.written(event.index)
            self.progress.update(self.incoming.bytes_written, self._clock())
        return self._closing(events)

    @_locked
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
            detail = "the sender sent a different number of bytes than it offered"
        else:
            try:
                self.path = self.sink.commit()
                kept = True
            except TransferIntegrityError:
                detail = "the received file does not match the sender's SHA-256; it was discarded"
            except OSError as exc:
                detail = f"the file could not be saved: {exc.strerror or exc}"
        events = self.incoming.finish(kept, detail)
        return events

    @_locked
    def reject(self) -> list[ClientEvent]:
        """Decline after all (e.g. the user closed the save dialog)."""
        return self._closing(self.incoming.reject())

    @_locked
    def cancel(self, reason: str = CancelReason.CANCELLED) -> list[ClientEvent]:
        return self._closing(self.incoming.cancel(reason))

    @_locked
    def connection_lost(self) -> list[ClientEvent]:
        """The connection dropped: over, the partial file removed, nothing to send."""
        return self._closing(self.incoming.connection_lost())

    def _closing(self, events: list[ClientEvent]) -> list[ClientEvent]:
        if self.incoming.over and not self.sink.committed:
            self.sink.abort()
        return events


# --- words for the user ----------------------------------------------------------------------


def format_size(size: float) -> str:
    """1023 B, 1.5 KiB, 12.3 MiB, 4.0 GiB."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """8 s, 2 min 05 s, 1 h 20 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def describe_progress(progress: Progress) -> str:
    """ "12.3 MiB of 40.0 MiB (30%), 5.1 MiB/s, 5 s left" for a progress bar's label."""
    text = (
        f"{format_size(progress.done)} of {format_size(progress.total)} "
        f"({int(progress.fraction * 100)}%)"
    )
    rate = progress.rate
    if rate is not None:
        text += f", {format_size(rate)}/s"
    left = progress.remaining_seconds
    if left is not None and progress.done < progress.total:
        text += f", {format_duration(left)} left"
    return text


_REASONS = {
    CancelReason.CHUNK_OUT_OF_ORDER: "the transfer broke the protocol (chunks out of order)",
    CancelReason.CHUNK_TOO_LARGE: "the transfer broke the protocol (a chunk too large)",
    CancelReason.WINDOW_EXCEEDED: "the transfer broke the protocol (too many chunks at once)",
    CancelReason.SIZE_EXCEEDED: "the file's size did not match the offer",
    CancelReason.DISCONNECTED: "the other side disconnected",
    CancelReason.EXPIRED: (
        f"the offer was not answered within {int(OFFER_TIMEOUT_SECONDS // 60)} minutes"
    ),
    CancelReason.ANSWERED_ELSEWHERE: "answered in another of your sessions",
    CancelReason.CANCELLED: "cancelled",
    CancelReason.FILE_CHANGED: "the file changed while it was being sent; send it again",
    CancelReason.READ_FAILED: "the sender could not read the file",
    CancelReason.WRITE_FAILED: "the file could not be written (is the disk full?)",
    "rejected": "declined",
    "not_kept": "the recipient did not keep the file (it did not match)",
    "too_large": "the file is larger than the server allows",
    "offline": "the user is not online",
    "unknown_user": "there is no such user",
    "rate_limited": "too many transfers open; wait until one ends",
}


def describe_reason(reason: str) -> str:
    """Words for a cancel reason, a refusal code or a failure; unknown ones as they came."""
    return _REASONS.get(reason, reason)
