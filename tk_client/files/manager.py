"""File transfers in the clients: the session, the files and the user, without tkinter.

:class:`TransferManager` owns every transfer of one session, each a
:class:`~tk_client.files.worker.TransferWorker` around an
:class:`~tk_client.files.source.Upload` or a
:class:`~tk_client.files.sink.Download`. Both clients, the desktop one
(``gui.py``) and the terminal one (``cli.py``), use it the same way: the
controller hands it ``/file`` (:meth:`TransferManager.offer`), the user
interface answers offers (:meth:`~TransferManager.accept`,
:meth:`~TransferManager.decline`) and presses Cancel
(:meth:`~TransferManager.cancel`); what happens comes back on the session's
event queue as :class:`~tk_client.files.events.FileOffered` and
:class:`~tk_client.files.events.TransferChanged`, carrying a frozen
:class:`~tk_client.files.events.TransferInfo`.

**The threading rule** (the one place it is written; every module of this
package and both clients follow it): *a transfer's state machine (its
:class:`~chatproto.transfer.OutgoingTransfer` or
:class:`~chatproto.transfer.IncomingTransfer`, and the Upload or Download
around it with its file) is driven by its worker thread only.* The other
threads never call it; they post to the worker's inbox and read snapshots
(:attr:`TransferWorker.last_info`). A machine made on another thread (an
incoming offer, on the network thread) is handed over before its worker starts.

- **The network thread** runs :meth:`TransferManager.hook` (a session hook: it
  sees every event first). It only routes: chunks, ``file_*`` messages and the
  answer to an offer go to the transfer's inbox; it never touches a file, so a
  slow disk cannot stall the chat or the keepalive.
- **One worker thread per transfer** does everything else, in order: hashes the
  file to offer it (seconds for gigabytes), reads the chunks that the window of
  16 allows after each ack, writes and acknowledges received chunks, fsyncs and
  renames. Being the only thread that drives its transfer's state machine, it
  needs no lock around it and no ordering rule beyond its inbox.
- **The user interface's thread** (Tk's main loop in the desktop client; in
  the terminal client, the main thread that drains the event queue) calls the
  public methods: they check what can be checked at once (no
  such file, the server's size limit, the file exists) and raise
  :class:`~tk_client.files.events.TransferError` with words for the user, then
  post to the worker's inbox. They read only what never changes (the offer's
  facts) and the worker's flags under its ``lock``; creating a Download's file
  there (so that "it exists" is said at once) hands it to the worker unused.

Only the offer is a request (PROTOCOL.md 3.3, revision 1.1): every later step
goes with :meth:`ChatSession.send_message`, without ``id``, and gets no answer.
``error`` ``unknown_transfer`` means the server could not relay a step; it names
no transfer, so :meth:`TransferManager._unknown_transfer` works out which one it
may be about before ending it. A revision 1 server's ``ok`` to a step is dropped.

Memory stays constant: at most the window of chunks waits in an inbox or on the
wire, and :mod:`~tk_client.files.source` and :mod:`~tk_client.files.sink`
stream both files. A dropped connection ends every transfer (the server tells
the other side ``disconnected``); the partial file is removed, as after a
decline, a cancel or a failed check.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from chatproto.codes import ErrorCode
from chatproto.e2e_files import NOT_VERIFIED, FileFacts, encrypted_size
from chatproto.errors import MessageError
from chatproto.transfer import (
    CancelReason,
    IncomingTransfer,
    TransferState,
    file_cancel,
    new_transfer_id,
)

from ..events import (
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
from ..partials import PartialFiles
from .e2e_cipher import SealedDownload
from .events import (
    FileOffered,
    SealedOfferArrived,
    SealedOfferEnded,
    TransferError,
    TransferEvent,
    TransferInfo,
)
from .names import incoming_destination, safe_name
from .sink import Download
from .words import format_size
from .worker import TransferWorker

JOIN_SECONDS = 5.0  # how long close() waits for each worker to cancel and clean up
# How long after a transfer ended an unknown_transfer is taken for a race with that end: far
# more than a round trip, and it only decides whether other transfers are ended too.
STALE_ERROR_SECONDS = 30.0
# How long an unnamed unknown_transfer waits for the end that explains it (a relayed cancel
# can come after the error, through another of the server's processes).
UNKNOWN_GRACE_SECONDS = 3.0
# The relayed messages after which a transfer is over (file_reject ends an offer).
FINAL_STEPS = frozenset({"file_cancel", "file_reject", "file_done"})
# End-to-end offers held while their room key is on its way (4.12, 4.9): of each sender, as
# many as one may have open (3.3's rule of 8), so that one whose keys never come cannot
# stop the others' files; and MAX_WAITING_TOTAL in all. Past either, a new one is refused at
# once with ``file_cancel`` TOO_MANY_WAITING (the sender may send it again once one is
# settled), so a flood of offers whose keys never come cannot grow the client's memory.
MAX_WAITING_OFFERS = 8
MAX_WAITING_TOTAL = 64
TOO_MANY_WAITING = "too_many_waiting"


class SessionAPI(Protocol):
    """What the manager needs of :class:`tk_client.session.ChatSession`."""

    events: queue.Queue[Any]
    greeting: dict[str, Any] | None

    @property
    def phase(self) -> Phase: ...
    def add_hook(self, hook: Callable[[SessionEvent], bool]) -> None: ...
    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus: ...
    def send_message(self, message: dict[str, Any]) -> None: ...
    def send_chunk(self, transfer: bytes, index: int, data: bytes | memoryview) -> None: ...


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
        clock: Callable[[], float] = time.monotonic,
        unknown_grace: float = UNKNOWN_GRACE_SECONDS,
    ) -> None:
        self.session = session
        self.events = events if events is not None else session.events
        # Where downloads record their temporary files, for the cleanup after a crash.
        self.partials = partials
        self._lock = threading.Lock()  # guards the two tables; never held while calling out
        self._open: dict[str, TransferWorker] = {}
        self._sealed: dict[str, dict[str, Any]] = {}  # end-to-end offers being opened (4.12)
        # Transfers that ended, and when: what a late unknown_transfer is most likely about.
        self._recently_over: dict[str, float] = {}
        self._heard: dict[str, float] = {}  # transfer -> when the server last relayed for it
        self._clock = clock
        self._unknown_grace = unknown_grace
        self._closed = False
        session.add_hook(self.hook)

    # -- the user interface's side ------------------------------------------------------------

    def offer(self, user: str, path: str, *, end_to_end: bool = False) -> None:
        """Start sending ``path`` to ``user``: hash it in the background, then offer it.

        ``end_to_end`` (4.12; what a client with a device always asks): the worker posts
        :class:`OfferToSeal` after hashing, and the offer leaves at :meth:`sealed`.
        Without it, a plain 3.3 offer (only for sessions without a device).
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
        wire_size = encrypted_size(stat.st_size) if end_to_end else stat.st_size
        if limit is not None and wire_size > limit:
            raise TransferError(
                f"{file.name} is {format_size(stat.st_size)}; this server accepts files up to "
                f"{format_size(limit)}."
            )
        record = TransferWorker(
            self.session,
            new_transfer_id(),
            outgoing=True,
            peer=user,
            name=file.name or str(file),
            size=stat.st_size,
            state=TransferState.PREPARING,
            path=str(file),
            end_to_end=end_to_end,
            post=self._post,
            ended=self._ended,
        )
        with self._lock:
            self._open[record.transfer] = record
        record.inbox.put(("prepare", str(file)))
        record.thread.start()

    def sealed(self, transfer: str, e2e: dict[str, Any]) -> None:
        """The link sealed ``transfer``'s offer (:class:`OfferToSeal`): it leaves now."""
        record = self._find(transfer)
        if record is not None and record.outgoing:
            record.inbox.put(("sealed", e2e))

    def not_sealed(self, transfer: str, words: str) -> None:
        """The offer cannot be sealed (no device, not approved...): it ends, with ``words``."""
        record = self._find(transfer)
        if record is not None and record.outgoing:
            record.inbox.put(("not_sealed", words))

    def offer_verified(self, transfer: str, facts: FileFacts) -> None:
        """An end-to-end offer (:class:`SealedOfferArrived`) passed its checks: offer it to
        the user like any other (:class:`FileOffered`), marked end to end. Nothing if it
        ended meanwhile."""
        with self._lock:
            offer = self._sealed.get(transfer)
        if offer is None or self._closed:
            return
        try:
            incoming = IncomingTransfer(
                transfer=transfer,
                sender=str(offer.get("from")),
                name=facts.name,
                size=offer.get("size"),  # type: ignore[arg-type]  # checked by __init__
                sha256=facts.sha256,
            )
        except MessageError:
            self.refuse_offer(transfer)
            return
        self._start_incoming(incoming, facts, held=True)

    def refuse_offer(self, transfer: str) -> None:
        """An end-to-end offer failed a check (4.12): ``file_cancel`` ``not_verified``."""
        with self._lock:
            self._sealed.pop(transfer, None)
        self._send_quietly(file_cancel(transfer, NOT_VERIFIED))

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
            if record.facts is not None:
                download: Download = SealedDownload(
                    record.incoming,
                    record.facts,
                    destination,
                    overwrite=overwrite,
                    journal=self.partials,
                )
            else:
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
        return record.name  # safe_name() of the offered name, set when the offer came

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
                self._heard_from(record.transfer)
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
            # A revision 1 server answers every step; we send them without an id (PROTOCOL.md
            # 3.3, revision 1.1: only file_offer is a request), so its ok has no ref: harmless.
            return True
        if kind == "error" and message.get("code") == ErrorCode.UNKNOWN_TRANSFER:
            self._unknown_transfer(message)  # with a ref only from an old server: the same
            return True
        if not isinstance(kind, str) or not kind.startswith("file_"):
            return False
        transfer = message.get("transfer")
        if kind == "file_offer":
            self._on_offer(message)
            return True
        if kind in FINAL_STEPS and isinstance(transfer, str):
            with self._lock:
                held = self._sealed.pop(transfer, None)  # an end-to-end offer ended unshown
            if held is not None:
                reason = message.get("reason") if kind == "file_cancel" else kind
                self._post(SealedOfferEnded(transfer, str(held.get("from")), str(reason)))
        record = self._find(transfer) if isinstance(transfer, str) else None
        if record is not None:
            self._heard_from(record.transfer)
            if kind in FINAL_STEPS:
                self._note_over(record.transfer)  # before its worker even reads it
            record.inbox.put(("message", message))
        elif kind == "file_accept" and isinstance(transfer, str):
            # Accepted after we gave up on it (e.g. an offer re-sent after a reconnect): stop it.
            self._send_quietly(file_cancel(transfer, CancelReason.CANCELLED))
        return True

    def _unknown_transfer(self, message: dict[str, Any]) -> None:
        """``error`` ``unknown_transfer``: the server cannot relay a step of ours.

        It names no transfer (a step is not a request, so there is no ``ref``
        either). Most often it is a race with an end: a chunk or an ack was on
        the wire when the other side cancelled, and the server's relayed cancel
        may even arrive after its error. So the judgement waits
        ``unknown_grace`` seconds; then, unless a transfer ended shortly before
        or meanwhile (that explains it), the server lost a transfer without
        telling us, and waiting would hang it for ever: every open transfer that
        has sent a step and heard nothing from the server since the error ends,
        with words saying why. An error that names its transfer ends that one.
        """
        named = message.get("transfer")
        if isinstance(named, str):
            record = self._find(named)
            if record is not None:
                record.inbox.put(("unknown_transfer", True))
            return
        timer = threading.Timer(self._unknown_grace, self._judge_unknown, args=(self._clock(),))
        timer.daemon = True
        timer.start()

    def _judge_unknown(self, at: float) -> None:
        """``unknown_grace`` after an unnamed ``unknown_transfer`` that arrived at ``at``."""
        with self._lock:
            self._forget_ends_before(at - STALE_ERROR_SECONDS)
            if self._closed or self._recently_over:
                return  # an end explains it
            records = [
                record
                for record in self._open.values()
                if self._heard.get(record.transfer, float("-inf")) < at
            ]
        for record in records:
            record.inbox.put(("unknown_transfer", False))

    def _forget_ends_before(self, when: float) -> None:
        for transfer, ended in list(self._recently_over.items()):
            if ended < when:
                del self._recently_over[transfer]

    def _heard_from(self, transfer: str) -> None:
        self._heard[transfer] = self._clock()

    def _note_over(self, transfer: str) -> None:
        with self._lock:
            self._recently_over[transfer] = self._clock()

    def _on_offer(self, message: dict[str, Any]) -> None:
        if message.get("e2e") is not None:
            self._on_sealed_offer(message)
            return
        try:
            incoming = IncomingTransfer.from_offer(message)
        except MessageError:
            return  # malformed: the server validates offers, so this is not worth a word
        self._start_incoming(incoming, None)

    def _on_sealed_offer(self, message: dict[str, Any]) -> None:
        """An end-to-end offer: the user interface's thread has the link open it."""
        transfer, sender = message.get("transfer"), message.get("from")
        if not isinstance(transfer, str) or not isinstance(sender, str) or self._closed:
            return
        with self._lock:
            if transfer in self._sealed or transfer in self._open:
                return
            same = sum(1 for held in self._sealed.values() if held.get("from") == sender)
            full = same >= MAX_WAITING_OFFERS or len(self._sealed) >= MAX_WAITING_TOTAL
            if not full:
                self._sealed[transfer] = message
        if full:
            self._send_quietly(file_cancel(transfer, TOO_MANY_WAITING))
            self._post(SealedOfferEnded(transfer, sender, TOO_MANY_WAITING))
            return
        self._post(SealedOfferArrived(message))

    def _start_incoming(
        self, incoming: IncomingTransfer, facts: FileFacts | None, *, held: bool = False
    ) -> None:
        """Offer ``incoming`` to the user. ``held``: an end-to-end offer, which goes from
        the held ones to the open ones at once, so that a cancel relayed meanwhile (on the
        network thread) finds it in one or the other; gone from both, it ended."""
        if self._closed or self._find(incoming.transfer) is not None:
            if held:
                with self._lock:
                    self._sealed.pop(incoming.transfer, None)
            return
        record = TransferWorker(
            self.session,
            incoming.transfer,
            outgoing=False,
            peer=incoming.sender,
            name=safe_name(incoming.name),
            size=facts.size if facts is not None else incoming.size,
            state=TransferState.OFFERED,
            incoming=incoming,
            facts=facts,
            post=self._post,
            ended=self._ended,
        )
        record.last_info = record.info()
        with self._lock:
            ended = held and self._sealed.pop(record.transfer, None) is None
            if ended or record.transfer in self._open:
                return  # it ended while its verdict was taken, or another took its id
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
            held = list(self._sealed.items())
            self._sealed.clear()  # the server ended them (disconnected)
        for transfer, offer in held:
            sender = str(offer.get("from"))
            self._post(SealedOfferEnded(transfer, sender, CancelReason.DISCONNECTED))
        for record in records:
            if record.state is TransferState.PREPARING:
                record.abandon = CancelReason.DISCONNECTED
            record.inbox.put(("lost",))

    # -- helpers --------------------------------------------------------------------------------

    def _find(self, transfer: str) -> TransferWorker | None:
        with self._lock:
            return self._open.get(transfer)

    def _offered(self, transfer: str) -> TransferWorker:
        record = self._find(transfer)
        if record is None or record.outgoing or record.over or record.incoming is None:
            raise TransferError("This offer is no longer open.")
        if record.accepting or record.download is not None:
            raise TransferError("This offer is already answered.")
        return record

    def _ended(self, record: TransferWorker) -> None:
        with self._lock:
            self._open.pop(record.transfer, None)
            self._heard.pop(record.transfer, None)
            now = self._clock()
            self._forget_ends_before(now - STALE_ERROR_SECONDS)
            self._recently_over[record.transfer] = now

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
