"""File transfers in the clients: the session, the files and the user, without tkinter.

:class:`TransferManager` owns every :class:`~tk_client.transfers.Upload` and
:class:`~tk_client.transfers.Download` of one session. Both clients use it the
same way: the controller hands it ``/file`` (:meth:`TransferManager.offer`),
the user interface answers offers (:meth:`~TransferManager.accept`,
:meth:`~TransferManager.decline`) and presses Cancel
(:meth:`~TransferManager.cancel`); what happens comes back on the session's
event queue as :class:`FileOffered` and :class:`TransferChanged`, carrying a
frozen :class:`TransferInfo` (stage, bytes, rate, time left, words for the user).

Threads, and why:

- **The network thread** runs :meth:`TransferManager.hook` (a session hook: it
  sees every event first). It only routes: chunks, ``file_*`` messages and the
  answer to an offer go to the transfer's inbox; it never touches a file, so a
  slow disk cannot stall the chat or the keepalive.
- **One worker thread per transfer** does everything else, in order: hashes the
  file to offer it (seconds for gigabytes), reads the chunks that the window of
  16 allows after each ack, writes and acknowledges received chunks, fsyncs and
  renames. Being the only thread that drives its transfer's state machine, it
  needs no ordering rules beyond its inbox.
- **The user interface's thread** calls the public methods: they check what can
  be checked at once (no such file, the server's size limit, the file exists)
  and raise :class:`TransferError` with words for the user, then post to the
  worker's inbox.

Memory stays constant: at most the window of chunks waits in an inbox or on the
wire, and :mod:`tk_client.transfers` streams both files. A dropped connection
ends every transfer (the server tells the other side ``disconnected``); the
partial file is removed, as after a decline, a cancel or a failed check.
"""

from __future__ import annotations

import contextlib
import enum
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chatproto.codes import ErrorCode
from chatproto.errors import MessageError
from chatproto.transfer import (
    Cancelled,
    CancelReason,
    ClientEvent,
    Finished,
    IncomingTransfer,
    Refused,
    Send,
    SendChunk,
    TransferState,
    file_cancel,
    new_transfer_id,
)

from .events import (
    ChunkArrived,
    NotConnected,
    Phase,
    PhaseChanged,
    Received,
    RequestState,
    RequestStatus,
    RequestUpdate,
    SessionEvent,
)
from .files.progress import Progress
from .partials import PartialFiles
from .transfers import (
    Download,
    FileSource,
    Upload,
    describe_progress,
    describe_reason,
    format_size,
    incoming_destination,
    safe_name,
)

REPORT_INTERVAL = 0.25  # seconds between two progress reports of one transfer to the UI queue
JOIN_SECONDS = 5.0  # how long close() waits for each worker to cancel and clean up


class Stage(enum.Enum):
    PREPARING = "preparing"  # the sender reads the file once to compute its SHA-256
    OFFERED = "offered"  # the offer is out, no answer yet (recipient: waiting for the user)
    RUNNING = "running"  # chunks flow
    CHECKING = "checking"  # every byte is across; the recipient checks size and SHA-256
    DONE = "done"  # the recipient kept an exact copy
    FAILED = "failed"  # declined, refused, cancelled, disconnected, or the check failed

    @property
    def over(self) -> bool:
        return self in (Stage.DONE, Stage.FAILED)


_STAGES = {
    TransferState.OFFERED: Stage.OFFERED,
    TransferState.RUNNING: Stage.RUNNING,
    TransferState.ENDED: Stage.CHECKING,
    TransferState.FINISHED: Stage.DONE,
    TransferState.FAILED: Stage.FAILED,
}


@dataclass(frozen=True)
class TransferInfo:
    """A snapshot of one transfer, for the user interface (safe to pass between threads)."""

    transfer: str
    outgoing: bool
    peer: str  # the recipient (outgoing) or the sender (incoming)
    name: str  # the file's name; for an incoming file the sanitized one it is saved under
    size: int
    stage: Stage
    done: int  # bytes hashed (PREPARING), acknowledged (sender) or written (recipient)
    fraction: float  # 0.0 to 1.0 of ``done``
    rate: float | None  # bytes per second, None until known
    remaining: float | None  # seconds left, None until known
    progress: str  # "12.3 MiB of 40.0 MiB (30%), 5.1 MiB/s, 5 s left"
    message: str  # what is happening, or how it ended, in words
    reason: str | None = None  # why it FAILED: a CancelReason value, "rejected", an error code
    local: bool = False  # FAILED by this side (Cancel pressed, our connection lost...)
    path: str | None = None  # the file sent, or where the received file was saved

    @property
    def over(self) -> bool:
        return self.stage.over


@dataclass(frozen=True)
class FileOffered:
    """Someone offers a file: ask the user, then :meth:`TransferManager.accept` or ``decline``."""

    info: TransferInfo


@dataclass(frozen=True)
class TransferChanged:
    """A transfer moved on (stage, progress); exactly one such event has ``info.over``."""

    info: TransferInfo


TransferEvent = FileOffered | TransferChanged


class TransferError(Exception):
    """What the user asked cannot be done; the message says why and what to do instead."""


class SessionAPI(Protocol):
    """What the manager needs of :class:`tk_client.session.ChatSession`."""

    events: queue.Queue[Any]
    greeting: dict[str, Any] | None

    @property
    def phase(self) -> Phase: ...
    def add_hook(self, hook: Callable[[SessionEvent], bool]) -> None: ...
    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus: ...
    def send_message(self, message: dict[str, Any]) -> None: ...
    def send_chunk(self, transfer: bytes, index: int, data: bytes) -> None: ...


class _Abandoned(Exception):
    """Raised from the hashing pass's progress callback: cancelled or disconnected meanwhile."""


# --- one transfer --------------------------------------------------------------------------------


class _Transfer:
    """One transfer and its worker thread. Only the worker changes its state machine."""

    def __init__(
        self,
        manager: TransferManager,
        transfer: str,
        *,
        outgoing: bool,
        peer: str,
        name: str,
        size: int,
        stage: Stage,
        path: str | None = None,
        incoming: IncomingTransfer | None = None,
    ) -> None:
        self.manager = manager
        self.transfer = transfer
        self.outgoing = outgoing
        self.peer = peer
        self.name = name
        self.size = size
        self.stage = stage
        self.path = path
        self.incoming = incoming
        self.upload: Upload | None = None
        self.download: Download | None = None
        self.hashing = Progress(size) if outgoing else None
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        # Set from any thread to stop the hashing pass, which does not read the inbox.
        self.abandon: str | None = None
        self.accepting = False  # the user chose where to save; the accept is on its way
        self.over = False  # set by the worker when it ends (under ``lock``)
        self.lock = threading.Lock()  # an accept is queued only while not over
        self.reason: str | None = None
        self.local = False
        self.detail = ""  # words from the server or the recipient about how it ended
        self._reported: tuple[Stage, float] | None = None
        self.last_info: TransferInfo | None = None  # what the UI was last told
        self.thread = threading.Thread(
            target=self._run, name=f"chat-file-{transfer[:8]}", daemon=True
        )

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self.over:
                self._process(self.inbox.get())
        except Exception as exc:  # a bug must not leave a partial file or a silent transfer
            self.detail = f"an unexpected error ({type(exc).__name__})"
            with contextlib.suppress(Exception):
                self._apply(self._cancel(CancelReason.CANCELLED))
            self._fail(CancelReason.CANCELLED, local=True)
            raise

    def _process(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "prepare":
            self._prepare(item[1])
        elif kind == "offer_answer":
            status: RequestStatus = item[1]
            if status.state is RequestState.FAILED and self.upload is not None:
                if status.code is None and status.uncertain:  # the connection dropped
                    self._apply(self.upload.connection_lost())
                else:
                    code = status.code or "failed"
                    self._apply(self.upload.offer_refused(code, status.error or ""))
        elif kind == "message":
            message = item[1]
            if self.upload is not None:
                self._apply(self.upload.handle(message))
            elif self.download is not None:
                self._apply(self.download.handle(message))
            elif self.incoming is not None:
                self._apply(self.incoming.receive(message))
        elif kind == "chunk":
            if self.download is not None:
                self._apply(self.download.handle_chunk(item[1]))
        elif kind == "accept":
            self._accept(item[1])
        elif kind == "decline":
            if self.incoming is not None and self.download is None:
                self._apply(self.incoming.reject())
        elif kind == "cancel":
            self._apply(self._cancel(CancelReason.CANCELLED))
        elif kind == "lost":
            self._apply(self._connection_lost())
        self._settle()

    def _prepare(self, path: str) -> None:
        self._report(force=True)
        try:
            source = FileSource(path, on_progress=self._hashed)
        except _Abandoned:
            self._fail(self.abandon or CancelReason.CANCELLED, local=True)
            return
        except OSError as exc:
            self.detail = f"cannot read {path}: {exc.strerror or exc}"
            self._fail(CancelReason.READ_FAILED, local=True)
            return
        if self.abandon is not None:
            source.close()
            self._fail(self.abandon, local=True)
            return
        self.upload = Upload(source, self.peer, transfer=self.transfer)
        self.size = source.size
        self.stage = Stage.OFFERED
        self._report(force=True)
        fields = {k: v for k, v in self.upload.offer().items() if k != "type"}
        try:
            self.manager.session.request("file_offer", durable=False, **fields)
        except NotConnected:
            self._apply(self.upload.connection_lost())

    def _hashed(self, count: int) -> None:
        if self.abandon is not None:
            raise _Abandoned
        assert self.hashing is not None
        self.hashing.update(count, time.monotonic())
        self._report()

    def _accept(self, download: Download) -> None:
        self.accepting = False
        if self.incoming is None or self.incoming.over or self.download is not None:
            download.sink.abort()  # the offer ended while the user chose where to save
            return
        self.path = str(download.sink.destination)
        self.download = download
        self.stage = Stage.RUNNING
        self._apply(download.accept())

    def _cancel(self, reason: str) -> list[ClientEvent]:
        if self.upload is not None:
            return self.upload.cancel(reason)
        if self.download is not None:
            return self.download.cancel(reason)
        if self.incoming is not None:
            return self.incoming.reject()  # cancelling an unanswered offer declines it
        return []

    def _connection_lost(self) -> list[ClientEvent]:
        if self.upload is not None:
            return self.upload.connection_lost()
        if self.download is not None:
            return self.download.connection_lost()
        if self.incoming is not None:
            return self.incoming.connection_lost()
        return []

    def _apply(self, events: list[ClientEvent]) -> None:
        """Put what the state machine says on the wire, and remember how it ended."""
        pending = list(events)
        while pending:
            event = pending.pop(0)
            try:
                if isinstance(event, Send):
                    self.manager.session.send_message(event.message)
                elif isinstance(event, SendChunk):
                    chunk = event.chunk
                    self.manager.session.send_chunk(chunk.transfer, chunk.index, chunk.data)
            except NotConnected:
                pending += self._connection_lost()  # nothing more can be sent
                continue
            if isinstance(event, Cancelled):
                self.local = event.local
            elif isinstance(event, Refused):
                self.detail = event.message
            elif isinstance(event, Finished) and event.detail:
                self.detail = event.detail

    def _machine(self) -> Any:
        if self.upload is not None:
            return self.upload.outgoing
        return self.incoming

    def _settle(self) -> None:
        """Follow the state machine's stage and report it; once over, report the end once."""
        machine = self._machine()
        if machine is not None:
            stage = _STAGES[machine.state]
            if stage is Stage.FAILED:
                if machine.reason == "rejected" and not self.outgoing:
                    self.local = True  # we declined
                self._fail(machine.reason or CancelReason.CANCELLED, local=self.local)
                return
            if stage is Stage.DONE:
                self.stage = Stage.DONE
                if self.download is not None and self.download.path is not None:
                    self.path = str(self.download.path)
                self._finish()
                return
            self.stage = stage
        self._report()

    def _fail(self, reason: str, *, local: bool) -> None:
        self.stage = Stage.FAILED
        self.reason = str(reason)
        self.local = local
        self._finish()

    def _finish(self) -> None:
        if self.over:
            return
        with self.lock:
            self.over = True
        if self.upload is not None:
            self.upload.close()
        if self.download is not None and not self.download.sink.committed:
            self.download.sink.abort()
        while True:  # what is left will not be processed; an accept came too late
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item[0] == "accept":
                item[1].sink.abort()
        self.manager._ended(self)
        self._report(force=True)

    # -- reports ---------------------------------------------------------------------------

    def _progress(self) -> Progress | None:
        if self.stage is Stage.PREPARING:
            return self.hashing
        if self.upload is not None:
            return self.upload.progress
        if self.download is not None:
            return self.download.progress
        return None

    def _report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self._reported is not None:
            stage, when = self._reported
            if stage is self.stage and now - when < REPORT_INTERVAL:
                return
        self._reported = (self.stage, now)
        self.last_info = self.info()
        self.manager._post(TransferChanged(self.last_info))

    def info(self) -> TransferInfo:
        progress = self._progress()
        done = progress.done if progress is not None else 0
        if progress is not None:
            fraction, rate, left = progress.fraction, progress.rate, progress.remaining_seconds
            text = describe_progress(progress)
        else:
            fraction, rate, left, text = 0.0, None, None, format_size(self.size)
        if self.stage is Stage.DONE:
            done, fraction, left = self.size, 1.0, 0.0
        return TransferInfo(
            transfer=self.transfer,
            outgoing=self.outgoing,
            peer=self.peer,
            name=self.name,
            size=self.size,
            stage=self.stage,
            done=done,
            fraction=fraction,
            rate=rate,
            remaining=left,
            progress=text,
            message=self._words(),
            reason=self.reason,
            local=self.local,
            path=self.path,
        )

    def _words(self) -> str:
        name, peer, size = self.name, self.peer, format_size(self.size)
        stage = self.stage
        if self.outgoing:
            return {
                Stage.PREPARING: f"Preparing {name} for {peer} (computing its checksum)",
                Stage.OFFERED: f"Waiting for {peer} to accept {name} ({size})",
                Stage.RUNNING: f"Sending {name} to {peer}",
                Stage.CHECKING: f"{peer} is checking {name}",
                Stage.DONE: f"{peer} received {name} ({size}) intact.",
            }.get(stage) or f"{name} was not sent to {peer}: {self._why()}."
        if stage is Stage.FAILED and self.reason == "rejected":
            return f"You declined {name} from {peer}."
        return {
            Stage.OFFERED: f"{peer} offers you {name} ({size})",
            Stage.RUNNING: f"Receiving {name} from {peer}",
            Stage.CHECKING: f"Checking {name} from {peer}",
            Stage.DONE: f"Received {name} ({size}) from {peer}, saved as {self.path}.",
        }.get(stage) or f"{name} from {peer} was not received: {self._why()}."

    def _why(self) -> str:
        reason, peer = self.reason or "", self.peer
        if reason == CancelReason.CANCELLED:
            return "you cancelled it" if self.local else f"{peer} cancelled it"
        if reason == "rejected":
            return f"{peer} declined it"
        if reason == CancelReason.DISCONNECTED:
            return "the connection to the server was lost" if self.local else f"{peer} went offline"
        if self.detail:
            return self.detail
        return describe_reason(reason)


# --- the manager ---------------------------------------------------------------------------------


class TransferManager:
    """Every file transfer of one session. Create it before the session starts.

    ``events`` is where :class:`FileOffered` and :class:`TransferChanged` go (the
    session's own queue by default, so they arrive in order with the rest).
    """

    def __init__(
        self,
        session: SessionAPI,
        events: queue.Queue[Any] | None = None,
        *,
        partials: PartialFiles | None = None,
    ) -> None:
        self.session = session
        self.events = events if events is not None else session.events
        # Where downloads record their temporary files, for the cleanup after a crash.
        self.partials = partials
        self._lock = threading.Lock()  # guards the two tables; never held while calling out
        self._open: dict[str, _Transfer] = {}
        self._closed = False
        session.add_hook(self.hook)

    # -- the user interface's side ------------------------------------------------------------

    def offer(self, user: str, path: str) -> None:
        """Start sending ``path`` to ``user``: hash it in the background, then offer it.

        TransferError at once when it cannot work: not connected, not a readable
        file, larger than the server accepts.
        """
        if self._closed:
            raise TransferError("This session has ended.")
        if self.session.phase is not Phase.ONLINE:
            raise TransferError("Not connected to the server; send the file once you are back.")
        file = Path(os.path.expanduser(path))
        try:
            stat = file.stat()
        except FileNotFoundError:
            raise TransferError(f"There is no file {path}.") from None
        except OSError as exc:
            raise TransferError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        if file.is_dir():
            raise TransferError(f"{path} is a folder; choose a file to send.")
        if not os.access(file, os.R_OK):
            raise TransferError(f"Cannot read {path}: permission denied.")
        limit = self._max_file_size()
        if limit is not None and stat.st_size > limit:
            raise TransferError(
                f"{file.name} is {format_size(stat.st_size)}; this server accepts files up to "
                f"{format_size(limit)}."
            )
        record = _Transfer(
            self,
            new_transfer_id(),
            outgoing=True,
            peer=user,
            name=file.name or str(file),
            size=stat.st_size,
            stage=Stage.PREPARING,
            path=str(file),
        )
        with self._lock:
            self._open[record.transfer] = record
        record.inbox.put(("prepare", str(file)))
        record.thread.start()

    def accept(
        self, transfer: str, destination: str | os.PathLike[str], *, overwrite: bool = False
    ) -> Path:
        """Accept an offer, saving to ``destination``; TransferError if it cannot be saved there.

        The file is written beside ``destination`` under a hidden temporary name
        and renamed into place only after the size and SHA-256 match.
        ``overwrite``: the user agreed to replace an existing file.
        """
        record = self._offered(transfer)
        assert record.incoming is not None
        if Path(destination).is_dir():
            return self.accept_into(transfer, destination)
        try:
            download = Download(
                record.incoming, destination, overwrite=overwrite, journal=self.partials
            )
        except FileExistsError:
            raise TransferError(
                f"{destination} already exists; choose another name or agree to replace it."
            ) from None
        except OSError as exc:
            raise TransferError(f"Cannot save to {destination}: {exc.strerror or exc}.") from None
        with record.lock:
            if record.over:
                download.sink.abort()
                raise TransferError("This offer is no longer open.")
            record.accepting = True
            record.inbox.put(("accept", download))
        return Path(destination)

    def accept_into(self, transfer: str, folder: str | os.PathLike[str]) -> Path:
        """Accept an offer into ``folder`` under its sanitized name (``name (1).ext`` if taken)."""
        record = self._offered(transfer)
        assert record.incoming is not None
        if not Path(folder).is_dir():
            raise TransferError(f"{folder} is not a folder.")
        try:
            destination = incoming_destination(folder, record.incoming.name)
        except (OSError, ValueError) as exc:
            raise TransferError(f"Cannot save in {folder}: {exc}.") from None
        return self.accept(transfer, destination)

    def decline(self, transfer: str) -> None:
        """Say no to an offer (nothing happens if it already ended)."""
        record = self._find(transfer)
        if record is not None and not record.outgoing:
            record.inbox.put(("decline",))

    def cancel(self, transfer: str) -> None:
        """Stop a transfer in either direction; the other side is told, no partial file stays."""
        record = self._find(transfer)
        if record is not None:
            record.abandon = CancelReason.CANCELLED
            record.inbox.put(("cancel",))

    def answerable(self, transfer: str) -> bool:
        """True while an incoming offer waits for an answer (accept or decline)."""
        try:
            self._offered(transfer)
        except TransferError:
            return False
        return True

    def default_name(self, transfer: str) -> str:
        """The name to suggest in a save dialog: the sanitized offered name."""
        record = self._find(transfer)
        if record is None or record.incoming is None:
            raise TransferError("This offer is no longer open.")
        return safe_name(record.incoming.name)

    def transfers(self) -> list[TransferInfo]:
        """The open transfers, oldest first."""
        with self._lock:
            records = list(self._open.values())
        return [record.last_info for record in records if record.last_info is not None]

    def busy(self) -> bool:
        """True while any transfer is open (offered, running or being checked)."""
        with self._lock:
            return bool(self._open)

    def handle(self, message: dict[str, Any]) -> bool:
        """A ``file_*`` message that reached the controller: the hook already took them all."""
        kind = message.get("type")
        return isinstance(kind, str) and kind.startswith("file_")

    def close(self) -> None:
        """Cancel every open transfer and wait (briefly) until their files are cleaned up."""
        self._closed = True
        with self._lock:
            records = list(self._open.values())
        for record in records:
            record.abandon = CancelReason.CANCELLED
            record.inbox.put(("cancel",))
        for record in records:
            if record.thread.is_alive() and record.thread is not threading.current_thread():
                record.thread.join(JOIN_SECONDS)

    # -- the network thread's side ------------------------------------------------------------

    def hook(self, event: SessionEvent) -> bool:
        """Session hook: route what concerns transfers to their workers; True if taken."""
        if isinstance(event, ChunkArrived):
            record = self._find(event.chunk.transfer_hex)
            if record is not None:
                record.inbox.put(("chunk", event.chunk))
            return True
        if isinstance(event, Received):
            return self._on_message(event.message)
        if isinstance(event, RequestUpdate) and event.request.type == "file_offer":
            return self._on_offer_answer(event.request)
        if isinstance(event, PhaseChanged) and event.phase is not Phase.ONLINE:
            self._connection_lost()
        return False

    def _on_message(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind == "ok" and "ref" not in message:
            return True  # the answer to a step sent without an id: nothing to learn
        if kind == "error" and "ref" not in message:
            # A chunk or step of a transfer that just ended (races are normal): harmless.
            return message.get("code") == ErrorCode.UNKNOWN_TRANSFER
        if not isinstance(kind, str) or not kind.startswith("file_"):
            return False
        transfer = message.get("transfer")
        if kind == "file_offer":
            self._on_offer(message)
            return True
        record = self._find(transfer) if isinstance(transfer, str) else None
        if record is not None:
            record.inbox.put(("message", message))
        elif kind == "file_accept" and isinstance(transfer, str):
            # Accepted after we gave up on it (e.g. an offer re-sent after a reconnect): stop it.
            self._send_quietly(file_cancel(transfer, CancelReason.CANCELLED))
        return True

    def _on_offer(self, message: dict[str, Any]) -> None:
        try:
            incoming = IncomingTransfer.from_offer(message)
        except MessageError:
            return  # malformed: the server validates offers, so this is not worth a word
        if self._closed or self._find(incoming.transfer) is not None:
            return
        record = _Transfer(
            self,
            incoming.transfer,
            outgoing=False,
            peer=incoming.sender,
            name=safe_name(incoming.name),
            size=incoming.size,
            stage=Stage.OFFERED,
            incoming=incoming,
        )
        record.last_info = record.info()
        with self._lock:
            self._open[record.transfer] = record
        self._post(FileOffered(record.last_info))
        record.thread.start()

    def _on_offer_answer(self, status: RequestStatus) -> bool:
        transfer = status.message.get("transfer")
        record = self._find(transfer) if isinstance(transfer, str) else None
        if record is None:
            if status.state is RequestState.DONE and isinstance(transfer, str):
                # An offer we no longer stand behind (given up while its answer was underway).
                self._send_quietly(file_cancel(transfer, CancelReason.CANCELLED))
            return isinstance(transfer, str)
        if status.state in (RequestState.DONE, RequestState.FAILED):
            record.inbox.put(("offer_answer", status))
        return True

    def _connection_lost(self) -> None:
        with self._lock:
            records = list(self._open.values())
        for record in records:
            if record.stage is Stage.PREPARING:
                record.abandon = CancelReason.DISCONNECTED
            record.inbox.put(("lost",))

    # -- helpers --------------------------------------------------------------------------------

    def _find(self, transfer: str) -> _Transfer | None:
        with self._lock:
            return self._open.get(transfer)

    def _offered(self, transfer: str) -> _Transfer:
        record = self._find(transfer)
        if record is None or record.outgoing or record.over or record.incoming is None:
            raise TransferError("This offer is no longer open.")
        if record.accepting or record.download is not None or record.incoming.over:
            raise TransferError("This offer is already answered.")
        return record

    def _ended(self, record: _Transfer) -> None:
        with self._lock:
            self._open.pop(record.transfer, None)

    def _post(self, event: TransferEvent) -> None:
        self.events.put(event)

    def _max_file_size(self) -> int | None:
        greeting = self.session.greeting or {}
        limits = greeting.get("limits")
        limit = limits.get("max_file_size") if isinstance(limits, dict) else None
        return limit if type(limit) is int and limit >= 0 else None

    def _send_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(NotConnected):
            self.session.send_message(message)
