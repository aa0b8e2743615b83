"""One file transfer and the worker thread that drives it (see :mod:`tk_client.files.manager`).

The worker does everything slow or stateful of its transfer, in order: hashes
the file to offer it, reads the chunks that the window of 16 allows after each
ack, writes and acknowledges received chunks, fsyncs and renames. What comes
from other threads waits in its inbox, so it needs no ordering rule beyond it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chatproto.e2e_files import FileFacts, new_file_key
from chatproto.transfer import (
    Cancelled,
    CancelReason,
    ClientEvent,
    Finished,
    IncomingTransfer,
    OutgoingTransfer,
    Refused,
    Send,
    SendChunk,
    TransferState,
)

from ..events import NotConnected, RequestState, RequestStatus
from . import words
from .e2e_cipher import SealedUpload
from .events import OfferToSeal, TransferChanged, TransferEvent, TransferInfo
from .progress import Progress
from .sink import Download
from .source import FileSource, Upload
from .words import describe_progress, describe_transfer, format_size

if TYPE_CHECKING:
    from .manager import SessionAPI

UNKNOWN_TRANSFER = "unknown_transfer"  # the reason of a transfer the server no longer knows
NOT_SEALED = "not_sealed"  # the reason of an end-to-end offer the link could not seal (4.12)
REPORT_INTERVAL = 0.25  # seconds between two progress reports of one transfer to the UI queue


class _Abandoned(Exception):
    """Raised from the hashing pass's progress callback: cancelled or disconnected meanwhile."""


class TransferWorker:
    """One transfer and its worker thread, the only thread that drives its state machine.

    Other threads post to :attr:`inbox` (``prepare``, ``message``, ``chunk``,
    ``offer_answer``, ``accept``, ``decline``, ``cancel``, ``lost``), set
    :attr:`abandon` to stop the hashing pass, and read :attr:`last_info` and
    the flags guarded by :attr:`lock`; see the rule in :mod:`tk_client.files.manager`.
    """

    def __init__(
        self,
        session: SessionAPI,
        transfer: str,
        *,
        outgoing: bool,
        peer: str,
        name: str,
        size: int,
        state: TransferState,
        path: str | None = None,
        incoming: IncomingTransfer | None = None,
        facts: FileFacts | None = None,
        end_to_end: bool = False,
        post: Callable[[TransferEvent], None],
        ended: Callable[[TransferWorker], None],
    ) -> None:
        self.session = session
        self.post = post  # puts an event on the user interface's queue
        self.ended = ended  # tells the manager to forget this transfer
        self.transfer = transfer
        self.outgoing = outgoing
        self.peer = peer
        self.name = name
        self.size = size
        self.state = state  # the machine's state, or PREPARING before there is one
        self.path = path
        self.incoming = incoming
        self.facts = facts  # an end-to-end offer's verified facts, with the file key (4.12)
        self.end_to_end = end_to_end or facts is not None
        self.offer_sent = False
        self.upload: Upload | None = None
        self.download: Download | None = None
        self.hashing = Progress(size) if outgoing else None
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        # Set from any thread to stop the hashing pass, which does not read the inbox.
        self.abandon: str | None = None
        self.accepting = False  # the user chose where to save; the accept is on its way
        self.spoke = False  # a step or chunk was sent (what an unknown_transfer may be about)
        self.over = False  # set by the worker when it ends (under ``lock``)
        self.lock = threading.Lock()  # an accept is queued only while not over
        self.reason: str | None = None
        self.local = False
        self.detail = ""  # words from the server or the recipient about how it ended
        self._reported: tuple[TransferState, float] | None = None
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
            self.detail = words.unexpected_error(exc)
            with contextlib.suppress(Exception):
                self._apply(self._cancel(CancelReason.CANCELLED))
            self._fail(CancelReason.CANCELLED, local=True)
            raise

    def _process(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "prepare":
            self._prepare(item[1])
        elif kind == "sealed":
            self._send_offer(item[1])
        elif kind == "not_sealed":
            if not self.offer_sent and not self.over:
                self.detail = item[1]
                self._fail(NOT_SEALED, local=True)
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
            if self.upload is not None and not self.offer_sent:
                self._fail(CancelReason.CANCELLED, local=True)  # nothing went to the server
            else:
                self._apply(self._cancel(CancelReason.CANCELLED))
        elif kind == "unknown_transfer":
            self._unknown_to_server(named=item[1])
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
            self.detail = words.read_failed(path, exc)
            self._fail(CancelReason.READ_FAILED, local=True)
            return
        if self.abandon is not None:
            source.close()
            self._fail(self.abandon, local=True)
            return
        self.size = source.size
        if self.end_to_end:
            key = new_file_key()
            self.upload = SealedUpload(source, self.peer, transfer=self.transfer, key=key)
            self.state = TransferState.OFFERED
            self._report(force=True)
            # The offer leaves once the link sealed it (the room keys go first): "sealed".
            self.post(
                OfferToSeal(self.transfer, self.peer, source.name, source.size, source.sha256, key)
            )
            return
        self.upload = Upload(source, self.peer, transfer=self.transfer)
        self.state = TransferState.OFFERED
        self._report(force=True)
        self._send_offer(None)

    def _send_offer(self, e2e: dict[str, Any] | None) -> None:
        """Send the ``file_offer`` (end to end: with the sealed ``e2e``), once."""
        sealed = isinstance(self.upload, SealedUpload)
        if self.upload is None or self.offer_sent or self.over or sealed is (e2e is None):
            return
        self.offer_sent = True
        offer = self.upload.offer(e2e=e2e)
        fields = {k: v for k, v in offer.items() if k != "type"}
        try:
            self.session.request("file_offer", durable=False, **fields)
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
        self.state = TransferState.RUNNING
        self._apply(download.accept())

    def _unknown_to_server(self, *, named: bool) -> None:
        """The server says it cannot relay our step (``unknown_transfer``): the transfer is over.

        Unless the error named this transfer, only a transfer that has sent a step
        can be meant. Nothing is sent: the server no longer has it to relay to.
        """
        if self.over or not (named or self.spoke):
            return
        self.detail = words.UNKNOWN_TO_SERVER
        self._fail(UNKNOWN_TRANSFER, local=False)

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
                    self.spoke = True
                    self.session.send_message(event.message)  # a step: no id, no answer
                elif isinstance(event, SendChunk):
                    self.spoke = True
                    chunk = event.chunk
                    self.session.send_chunk(chunk.transfer, chunk.index, chunk.data)
            except NotConnected:
                pending += self._connection_lost()  # nothing more can be sent
                continue
            if isinstance(event, Cancelled):
                self.local = event.local
            elif isinstance(event, Refused):
                self.detail = event.message
            elif isinstance(event, Finished) and event.detail:
                self.detail = event.detail

    def _machine(self) -> OutgoingTransfer | IncomingTransfer | None:
        if self.upload is not None:
            return self.upload.outgoing
        return self.incoming

    def _settle(self) -> None:
        """Follow the state machine's state and report it; once over, report the end once."""
        if self.over:
            return  # ended here (before any offer, say): reported already
        machine = self._machine()
        if machine is not None:
            state = machine.state
            if state is TransferState.FAILED:
                if machine.reason == "rejected" and not self.outgoing:
                    self.local = True  # we declined
                self._fail(machine.reason or CancelReason.CANCELLED, local=self.local)
                return
            if state is TransferState.FINISHED:
                self.state = TransferState.FINISHED
                if self.download is not None and self.download.path is not None:
                    self.path = str(self.download.path)
                self._finish()
                return
            self.state = state
        self._report()

    def _fail(self, reason: str, *, local: bool) -> None:
        self.state = TransferState.FAILED
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
        self.ended(self)
        self._report(force=True)

    # -- reports ---------------------------------------------------------------------------

    def _progress(self) -> Progress | None:
        if self.state is TransferState.PREPARING:
            return self.hashing
        if self.upload is not None:
            return self.upload.progress
        if self.download is not None:
            return self.download.progress
        return None

    def _report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self._reported is not None:
            state, when = self._reported
            if state is self.state and now - when < REPORT_INTERVAL:
                return
        self._reported = (self.state, now)
        self.last_info = self.info()
        self.post(TransferChanged(self.last_info))

    def info(self) -> TransferInfo:
        progress = self._progress()
        done = progress.done if progress is not None else 0
        if progress is not None:
            fraction, rate, left = progress.fraction, progress.rate, progress.remaining_seconds
            text = describe_progress(progress)
        else:
            fraction, rate, left, text = 0.0, None, None, format_size(self.size)
        if self.state is TransferState.FINISHED:
            done, fraction, left = self.size, 1.0, 0.0
        info = TransferInfo(
            transfer=self.transfer,
            outgoing=self.outgoing,
            peer=self.peer,
            name=self.name,
            size=self.size,
            stage=self.state,
            done=done,
            fraction=fraction,
            rate=rate,
            remaining=left,
            progress=text,
            message="",
            reason=self.reason,
            local=self.local,
            path=self.path,
            detail=self.detail,
            end_to_end=self.end_to_end,
        )
        return replace(info, message=describe_transfer(info))
