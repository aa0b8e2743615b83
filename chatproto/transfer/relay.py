"""The server's relay rules of a file transfer (PROTOCOL.md 3.3), without I/O.

(Over 600 lines on purpose: one transfer's states and the transition for each of its
messages are one machine, which split across modules would be read in pieces.)

Nothing here touches a socket or a clock: every method takes what arrived (a
validated request, a chunk, the caller's ``now``) and returns what to do.

One registry per server process holds a :class:`RelayTransfer` per open transfer
(counters only, never file data: the server holds at most the window of 16
chunks in its send buffers, whatever the file's size). Its methods return
:mod:`~chatproto.transfer.events` relay actions; the consumer carries them out in order.
Its state is the one :class:`~chatproto.transfer.wire.TransferState` of both
clients (never ``PREPARING`` here; ``RUNNING`` from the accept to ``file_end``).

Where the state lives, across server processes. A transfer belongs to the
registry of the process that holds the **sender's session**: the offer is made
there and every chunk arrives there, so the hot path never crosses processes.
Session ids are opaque strings that must be unique across processes (the
Channels channel name of the session is the natural choice); an action
addressed to a session of another process goes through the channel layer
(``channel_layer.send(session, ...)``), a :class:`ToUser` target through the
user's group. The recipient's messages (accept, reject, acks, done, cancel)
must reach the owning process: the relayed offer tells each recipient session
where the transfer lives (the owner's channel, sent beside the offer in the
channel-layer event, never on the wire), the recipient's consumer remembers
``transfer -> owner channel`` and forwards those requests there, where the
owner's consumer calls :meth:`TransferRegistry.receive` with the recipient's
session id and user. A request for a transfer that a consumer has no route for
is answered ``unknown_transfer`` on the spot. When a session ends, its
consumer calls :meth:`TransferRegistry.drop_session` locally and sends
"session gone" to the owners of the transfers it had routes for, which call
``drop_session`` with that id. Nothing else is shared, so the registry needs
no knowledge of sessions in other processes. (The limit of 8 open transfers is
counted per process; pass ``open_elsewhere`` where a cross-process count is
kept. A transfer id in use is detected in the owner's process; ids are 128
random bits chosen by the sender, so a clash elsewhere only harms the client
that reused an id.)

Answers (PROTOCOL.md 3.3, revision 1.1). Only ``file_offer`` is a request: it
is answered ``ok`` or its refusal. ``file_accept``, ``file_reject``,
``file_ack``, ``file_end``, ``file_done`` and ``file_cancel`` get no answer
when they are relayed (an ``id`` is ignored, though an error still carries it
as ``ref``). Races are normal and harmless: steps (acks, ``file_end``) already on
the wire when the other side cancels are answered ``unknown_transfer``, which a
client ignores for a transfer it knows is over. Chunks that the sender had in
flight when its transfer ended are dropped **silently** and do not count as bad
requests: the registry remembers, per sender session, the transfers of that
session that ended while chunks were flowing (after the accept, before
``file_end``) by anything but the sender's own step (the recipient's cancel or
disconnect, a violation), until a window's worth of chunks (16) has arrived for one or
:data:`~chatproto.limits.ENDED_TRANSFER_LINGER_SECONDS` have passed (by the
caller's ``now``), whichever comes first, and forgets a session's memory when the
session ends. The memory holds at most twice the open-transfer limit (16 ids) per
session, the oldest forgotten first. A chunk for a transfer that its session
never sent, or that arrives after that memory, is refused and counts (below).

What is refused and how:

- a message from a session that is not one of the transfer's two sessions, or
  from one of them outside its role (a chunk or ``file_end`` from the recipient,
  an accept or ack from the sender), or about an unknown or finished transfer:
  ``error`` ``unknown_transfer``; the transfer goes on. Such a chunk record is
  dropped and counts as a bad request of its session (:attr:`Refuse.counts`),
  unless it is one of its sender's in-flight chunks just described;
- a violation of the rules ends the transfer with ``file_cancel`` to both
  sides, and nothing else: a step out of turn by the right session (an ack or
  ``file_done`` before its time, a second accept, ``file_reject`` after
  accepting, ``file_end`` before the accept or twice), a chunk before the
  accept, after ``file_end`` or with the wrong index, or an ack that is not for
  the oldest unacknowledged chunk: ``chunk_out_of_order`` (the protocol names
  no reason of its own for the order of the steps); chunk data not 1 to 65,536
  bytes: ``chunk_too_large``; a 17th chunk not acknowledged:
  ``window_exceeded``; bytes beyond ``size``, or ``file_end`` before ``size``
  bytes: ``size_exceeded``.

The offer's checks run in this order: ``to`` is the sender (``bad_request``),
the transfer id in use (``bad_request``), the size (``too_large``), the
recipient (``unknown_user``, ``offline``: the caller looks the user and their
presence up and passes a :class:`RecipientStatus`), the sender's open transfers
(``rate_limited`` for a 9th). The relayed offer is the request with ``id``
removed and ``from`` added, sent to every session of the recipient. The first
of the recipient's sessions to accept or reject wins; the others get
``file_cancel`` ``answered_elsewhere``. An offer not answered within 5 minutes
ends with ``expired`` to both sides; when a session of the transfer ends, the
other side gets ``disconnected``. Before the answer, the recipient's side is
all of their sessions: one of them ending leaves the offer open for the others,
and :meth:`TransferRegistry.recipient_offline` ends it (``disconnected`` to the
sender) when the recipient has no session left.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..codes import ErrorCode
from ..errors import LocalProtocolError
from ..framing import FileChunk
from ..limits import (
    DEFAULT_MAX_FILE_SIZE,
    ENDED_TRANSFER_LINGER_SECONDS,
    MAX_OPEN_TRANSFERS,
    OFFER_TIMEOUT_SECONDS,
    TRANSFER_WINDOW,
)
from ..messages import Request
from .events import (
    Action,
    Deliver,
    DeliverChunk,
    Refuse,
    Target,
    ToSession,
    ToUser,
)
from .wire import TRANSFER_TYPES, CancelReason, ChunkWindow, TransferState, file_cancel, ok


class RecipientStatus(enum.Enum):
    """What the server knows of the offer's ``to`` (it looks the user up; this module cannot)."""

    ONLINE = "online"  # an active user with at least one logged-in session
    OFFLINE = "offline"  # an active user with none
    UNKNOWN = "unknown"  # no such user, or an inactive one


class _Role(enum.Enum):
    SENDER = "sender"
    RECIPIENT = "recipient"


# Who may send each step (PROTOCOL.md 3.3: "each only in its role").
_ROLES: dict[str, frozenset[_Role]] = {
    "file_accept": frozenset({_Role.RECIPIENT}),
    "file_reject": frozenset({_Role.RECIPIENT}),
    "file_ack": frozenset({_Role.RECIPIENT}),
    "file_done": frozenset({_Role.RECIPIENT}),
    "file_end": frozenset({_Role.SENDER}),
    "file_cancel": frozenset({_Role.SENDER, _Role.RECIPIENT}),
}

# The words of every ``unknown_transfer`` refusal; the server's routing answers with them too.
UNKNOWN_TRANSFER_MESSAGE = "no open transfer of yours has this id; it may have ended"


def _unknown_transfer(session: str, ref: str | None = None, *, chunk: bool = False) -> Refuse:
    """The refusal of a step or chunk for a transfer that ``session`` has no part in (any more);
    a chunk counts as a bad request."""
    return Refuse(session, ErrorCode.UNKNOWN_TRANSFER, UNKNOWN_TRANSFER_MESSAGE, ref, counts=chunk)


@dataclass
class _Ended:
    """A transfer that ended, remembered for its sender's chunks still in flight."""

    chunks_left: int  # how many more of its chunks are dropped silently
    until: float | None  # the ``now`` from which it is forgotten; None: not yet stamped


class RelayTransfer:
    """The server's state of one transfer: who takes part, where it stands, counters.

    Called through :class:`TransferRegistry`, which routes by transfer id and
    forgets the transfer once its :attr:`state` is over. Holds no file data.
    """

    def __init__(
        self,
        *,
        transfer: str,
        sender_session: str,
        sender_user: str,
        recipient_user: str,
        size: int,
        offered_at: float,
        offer_timeout: float = OFFER_TIMEOUT_SECONDS,
        window: int = TRANSFER_WINDOW,
    ) -> None:
        self.transfer = transfer
        self.sender_session = sender_session
        self.sender_user = sender_user
        self.recipient_user = recipient_user
        self.recipient_session: str | None = None  # the session that accepted
        self.size = size
        self.offered_at = offered_at
        self.expires_at = offered_at + offer_timeout
        self.window = window
        self.state = TransferState.OFFERED
        self.chunks = ChunkWindow(size, window)  # the counters of the chunk-window rule

    @property
    def next_index(self) -> int:
        """The index the next chunk must carry."""
        return self.chunks.next_index

    @property
    def bytes_relayed(self) -> int:
        """Bytes of file data forwarded to the recipient so far."""
        return self.chunks.received

    @property
    def unacked(self) -> int:
        """Chunks forwarded and not yet acknowledged (at most the window)."""
        return self.chunks.unacked

    def __repr__(self) -> str:
        return (
            f"<RelayTransfer {self.transfer[:8]} {self.state.value} "
            f"{self.bytes_relayed}/{self.size} unacked={self.unacked}>"
        )

    # -- routing helpers --------------------------------------------------------------------

    def _role(self, session: str, user: str) -> _Role | None:
        if session == self.sender_session:
            return _Role.SENDER
        if self.recipient_session is None:
            # Before the answer, any session of the recipient may answer (or cancel).
            if self.state is TransferState.OFFERED and user == self.recipient_user:
                return _Role.RECIPIENT
            return None
        return _Role.RECIPIENT if session == self.recipient_session else None

    def _recipient_side(self) -> Target:
        if self.recipient_session is None:
            return ToUser(self.recipient_user)
        return ToSession(self.recipient_session)

    def _to_sender(self, message: dict[str, Any], *, final: bool = False) -> Deliver:
        return Deliver(ToSession(self.sender_session), message, final)

    def _cancel_both(self, reason: CancelReason) -> list[Action]:
        message = file_cancel(self.transfer, reason)
        self.state = TransferState.FAILED
        return [
            self._to_sender(message, final=True),
            Deliver(self._recipient_side(), message, True),
        ]

    def _violation(self, reason: CancelReason) -> list[Action]:
        """A step against the rules: the transfer ends, both sides told (no other answer)."""
        return self._cancel_both(reason)

    def _answered_elsewhere(self, session: str) -> Deliver:
        message = file_cancel(self.transfer, CancelReason.ANSWERED_ELSEWHERE)
        return Deliver(ToUser(self.recipient_user, exclude=session), message, final=True)

    # -- requests ---------------------------------------------------------------------------

    def handle(self, request: Request, *, session: str, user: str) -> list[Action]:
        """A step of this transfer from ``session`` (of ``user``)."""
        roles = _ROLES.get(request.type)
        if roles is None:
            raise LocalProtocolError(f"{request.type} is not a step of a transfer")
        if self.state.over or self._role(session, user) not in roles:
            return [_unknown_transfer(session, request.id)]
        handler: Callable[[Any, str], list[Action]] = getattr(self, "_on_" + request.type)
        return handler(request, session)

    def _out_of_turn(self) -> list[Action]:
        """A step by the right session at the wrong time: against the order of the steps."""
        return self._violation(CancelReason.CHUNK_OUT_OF_ORDER)

    def _on_file_accept(self, request: Any, session: str) -> list[Action]:
        if self.state is not TransferState.OFFERED:
            return self._out_of_turn()  # accepted already
        self.recipient_session = session
        self.state = TransferState.RUNNING
        accepted = {"type": "file_accept", "transfer": self.transfer, "from": self.recipient_user}
        return [
            self._to_sender(accepted),
            self._answered_elsewhere(session),
        ]

    def _on_file_reject(self, request: Any, session: str) -> list[Action]:
        if self.state is not TransferState.OFFERED:
            return self._out_of_turn()  # accepted already: file_cancel stops it
        self.state = TransferState.FAILED
        rejected = {"type": "file_reject", "transfer": self.transfer, "from": self.recipient_user}
        return [
            self._to_sender(rejected, final=True),
            self._answered_elsewhere(session),
        ]

    def _on_file_ack(self, request: Any, session: str) -> list[Action]:
        if self.state is TransferState.OFFERED:
            return self._out_of_turn()  # an ack before the accept
        if not self.chunks.acknowledge(request.index):
            return self._violation(CancelReason.CHUNK_OUT_OF_ORDER)  # not the oldest chunk
        acked = {"type": "file_ack", "transfer": self.transfer, "index": request.index}
        return [self._to_sender(acked)]

    def _on_file_end(self, request: Any, session: str) -> list[Action]:
        if self.state in (TransferState.OFFERED, TransferState.ENDED):
            return self._out_of_turn()  # before the accept, or a second file_end
        if self.bytes_relayed != self.size:
            return self._violation(CancelReason.SIZE_EXCEEDED)  # before all the offered bytes
        self.state = TransferState.ENDED
        ended = {"type": "file_end", "transfer": self.transfer}
        assert self.recipient_session is not None
        return [Deliver(ToSession(self.recipient_session), ended)]

    def _on_file_done(self, request: Any, session: str) -> list[Action]:
        if self.state is not TransferState.ENDED:
            return self._out_of_turn()  # file_done before file_end
        self.state = TransferState.FINISHED if request.ok else TransferState.FAILED
        done = {"type": "file_done", "transfer": self.transfer, "ok": request.ok}
        return [self._to_sender(done, final=True)]

    def _on_file_cancel(self, request: Any, session: str) -> list[Action]:
        cancel = file_cancel(self.transfer, request.reason or CancelReason.CANCELLED)
        actions: list[Action] = []
        if session == self.sender_session:
            actions.append(Deliver(self._recipient_side(), cancel, final=True))
        else:
            actions.append(self._to_sender(cancel, final=True))
            if self.recipient_session is None:  # one of the recipient's sessions declined
                actions.append(self._answered_elsewhere(session))
        self.state = TransferState.FAILED
        return actions

    # -- chunks -----------------------------------------------------------------------------

    def handle_chunk(self, chunk: FileChunk, *, session: str) -> list[Action]:
        """A chunk record from ``session``: forwarded, refused, or the end of the transfer."""
        if session != self.sender_session or self.state.over:
            return [_unknown_transfer(session, chunk=True)]
        size = len(chunk.data)
        running = self.state is TransferState.RUNNING
        violation = self.chunks.violation(chunk.index, size, running=running)
        if violation is not None:
            return self._cancel_both(violation)
        self.chunks.passed(size)
        assert self.recipient_session is not None
        return [DeliverChunk(self.recipient_session, chunk)]

    # -- endings from outside -----------------------------------------------------------------

    def session_gone(self, session: str) -> list[Action]:
        """``session`` ended: ``disconnected`` to the other side if it was one of the two."""
        if self.state.over:
            return []
        if session == self.sender_session:
            message = file_cancel(self.transfer, CancelReason.DISCONNECTED)
            self.state = TransferState.FAILED
            return [Deliver(self._recipient_side(), message, final=True)]
        if session == self.recipient_session:
            self.state = TransferState.FAILED
            message = file_cancel(self.transfer, CancelReason.DISCONNECTED)
            return [self._to_sender(message, final=True)]
        return []

    def recipient_offline(self) -> list[Action]:
        """The recipient has no session left: an unanswered offer ends with ``disconnected``."""
        if self.state is not TransferState.OFFERED:
            return []
        self.state = TransferState.FAILED
        message = file_cancel(self.transfer, CancelReason.DISCONNECTED)
        return [self._to_sender(message, final=True)]

    def expire(self, now: float) -> list[Action]:
        """``expired`` to both sides if the offer is still unanswered at ``now``."""
        if self.state is not TransferState.OFFERED or now < self.expires_at:
            return []
        return self._cancel_both(CancelReason.EXPIRED)


class TransferRegistry:
    """Every transfer whose sender's session is in this process, indexed three ways.

    By id (routing), by session (so that a session's end finds its transfers),
    by recipient user (offers still waiting) and the open count per sending
    user. A transfer is forgotten the moment it is over, so an idle registry
    holds no transfer (:attr:`idle`); beside them it keeps only the bounded,
    short memory of ended transfers per sender session (:meth:`remembered`, see
    the module docstring), which the ``now`` passed to a call expires and the
    session's :meth:`drop_session` frees. Calls are synchronous and never await, so a
    consumer may call them from any coroutine without locks.
    """

    def __init__(
        self,
        *,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_open_per_user: int = MAX_OPEN_TRANSFERS,
        offer_timeout: float = OFFER_TIMEOUT_SECONDS,
        window: int = TRANSFER_WINDOW,
        linger: float = ENDED_TRANSFER_LINGER_SECONDS,
    ) -> None:
        self.max_file_size = max_file_size
        self.max_open_per_user = max_open_per_user
        self.offer_timeout = offer_timeout
        self.window = window
        self.linger = linger
        self.max_ended_per_session = 2 * max_open_per_user
        self._transfers: dict[str, RelayTransfer] = {}
        self._by_session: dict[str, set[str]] = {}
        self._offers_to: dict[str, set[str]] = {}  # recipient user -> unanswered offers
        self._open_by_user: dict[str, int] = {}  # sending user -> open transfers
        # sender session -> its transfers that ended lately (oldest first), for chunks in flight;
        # an entry past its time is dropped when looked up, all of them when the session ends
        self._ended: dict[str, dict[str, _Ended]] = {}

    # -- inspection -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._transfers)

    def __contains__(self, transfer: object) -> bool:
        return transfer in self._transfers

    def get(self, transfer: str) -> RelayTransfer | None:
        return self._transfers.get(transfer)

    def open_count(self, user: str) -> int:
        """Open transfers offered by ``user`` in this process."""
        return self._open_by_user.get(user, 0)

    def remembered(self, session: str) -> list[str]:
        """The ended transfers of sender ``session`` whose in-flight chunks are dropped silently."""
        return list(self._ended.get(session, ()))

    @property
    def idle(self) -> bool:
        """True when no transfer is open and no index holds anything (all state of a transfer
        freed; the memory of ended transfers, bounded per session, is not counted)."""
        return not (self._transfers or self._by_session or self._offers_to or self._open_by_user)

    def next_expiry(self) -> float | None:
        """The earliest ``now`` at which :meth:`expire` has something to do, if any."""
        waiting = [
            t.expires_at for t in self._transfers.values() if t.state is TransferState.OFFERED
        ]
        return min(waiting, default=None)

    # -- the offer --------------------------------------------------------------------------

    def offer(
        self,
        request: Request,
        *,
        session: str,
        user: str,
        now: float,
        recipient: RecipientStatus = RecipientStatus.ONLINE,
        open_elsewhere: int = 0,
    ) -> list[Action]:
        """A ``file_offer`` from ``session`` of ``user``: the answer, and the offer relayed.

        ``recipient`` is what the caller found for ``request.to``; ``now`` is a
        monotonic time in seconds, the same clock as for :meth:`expire`.
        """
        if request.type != "file_offer":
            raise LocalProtocolError(f"offer() takes file_offer, not {request.type}")
        req: Any = request
        refusal: tuple[ErrorCode, str] | None = None
        if req.to == user:
            refusal = (ErrorCode.BAD_REQUEST, "you cannot send a file to yourself")
        elif req.transfer in self._transfers:
            refusal = (ErrorCode.BAD_REQUEST, "this transfer id is in use; draw a new random one")
        elif req.size > self.max_file_size:
            refusal = (
                ErrorCode.TOO_LARGE,
                f"the file is larger than this server's limit of {self.max_file_size} bytes",
            )
        elif recipient is RecipientStatus.UNKNOWN:
            refusal = (ErrorCode.UNKNOWN_USER, "there is no such user")
        elif recipient is RecipientStatus.OFFLINE:
            refusal = (ErrorCode.OFFLINE, "the user is not online; try again when they are")
        elif self.open_count(user) + open_elsewhere >= self.max_open_per_user:
            refusal = (
                ErrorCode.RATE_LIMITED,
                f"you have {self.max_open_per_user} transfers open; wait until one ends",
            )
        if refusal is not None:
            return [Refuse(session, refusal[0], refusal[1], req.id)]
        transfer = RelayTransfer(
            transfer=req.transfer,
            sender_session=session,
            sender_user=user,
            recipient_user=req.to,
            size=req.size,
            offered_at=now,
            offer_timeout=self.offer_timeout,
            window=self.window,
        )
        self._transfers[transfer.transfer] = transfer
        _discard_ended(self._ended, session, transfer.transfer)  # an id used again: live now
        self._by_session.setdefault(session, set()).add(transfer.transfer)
        self._offers_to.setdefault(transfer.recipient_user, set()).add(transfer.transfer)
        self._open_by_user[user] = self._open_by_user.get(user, 0) + 1
        relayed = relayed_offer(req, user)
        return [Deliver(ToSession(session), ok(req.id)), Deliver(ToUser(req.to), relayed)]

    # -- the other steps ---------------------------------------------------------------------

    def receive(
        self, request: Request, *, session: str, user: str, now: float | None = None
    ) -> list[Action]:
        """A step of a transfer (a type in :data:`TRANSFER_TYPES`) from ``session`` of ``user``.

        ``now`` (as for :meth:`offer`) times the memory of a transfer that this step ends;
        here and below, without it that memory's time starts with the next call that has one.
        """
        if request.type not in TRANSFER_TYPES:
            raise LocalProtocolError(f"{request.type} is not a step of a transfer")
        transfer = self._transfers.get(request.transfer)  # type: ignore[attr-defined]  # every transfer step's class has `transfer`
        if transfer is None:
            return [_unknown_transfer(session, request.id)]
        # Only the other side's step can end it with the sender's chunks still in flight.
        racing = transfer.state is TransferState.RUNNING and session != transfer.sender_session
        actions = transfer.handle(request, session=session, user=user)
        return self._after(transfer, actions, now, remember=racing)

    def receive_chunk(
        self, chunk: FileChunk, *, session: str, now: float | None = None
    ) -> list[Action]:
        """A chunk record from ``session``.

        A chunk of a transfer of ``session`` that ended lately is dropped without
        an answer (no actions): its sender was sent ``file_cancel`` already.
        """
        transfer_id = chunk.transfer_hex
        transfer = self._transfers.get(transfer_id)
        if transfer is None:
            if self._in_flight(session, transfer_id, now):
                return []
            return [_unknown_transfer(session, chunk=True)]
        racing = transfer.state is TransferState.RUNNING  # a violation: the sender sends on
        actions = transfer.handle_chunk(chunk, session=session)
        if transfer.state.over:
            self._forget(transfer, now, remember=racing)
        return actions

    def drop_session(self, session: str, *, now: float | None = None) -> list[Action]:
        """``session`` ended (here, or in another process for a transfer owned here)."""
        actions: list[Action] = []
        for transfer_id in sorted(self._by_session.get(session, ())):
            transfer = self._transfers[transfer_id]
            racing = transfer.state is TransferState.RUNNING  # the recipient gone mid-stream
            actions += self._after(transfer, transfer.session_gone(session), now, remember=racing)
        self._ended.pop(session, None)  # no chunk comes from a session that is over
        return actions

    def recipient_offline(self, user: str, *, now: float | None = None) -> list[Action]:
        """``user``'s last session ended: their unanswered offers end with ``disconnected``."""
        actions: list[Action] = []
        for transfer_id in sorted(self._offers_to.get(user, ())):
            transfer = self._transfers[transfer_id]
            actions += self._after(transfer, transfer.recipient_offline(), now)
        return actions

    def expire(self, now: float) -> list[Action]:
        """``expired`` to both sides of every offer unanswered for the timeout at ``now``."""
        actions: list[Action] = []
        for transfer in sorted(self._transfers.values(), key=lambda t: t.expires_at):
            if transfer.state is TransferState.OFFERED and now >= transfer.expires_at:
                actions += self._after(transfer, transfer.expire(now), now)
        return actions

    # -- bookkeeping --------------------------------------------------------------------------

    def _after(
        self,
        transfer: RelayTransfer,
        actions: list[Action],
        now: float | None,
        *,
        remember: bool = False,
    ) -> list[Action]:
        if transfer.state.over:
            self._forget(transfer, now, remember=remember)
            return actions
        if transfer.state is not TransferState.OFFERED:
            _discard(self._offers_to, transfer.recipient_user, transfer.transfer)
        if transfer.recipient_session is not None:
            self._by_session.setdefault(transfer.recipient_session, set()).add(transfer.transfer)
        return actions

    def _forget(self, transfer: RelayTransfer, now: float | None, *, remember: bool) -> None:
        """Drop the ended ``transfer``; ``remember``: it ended while its sender may have had
        chunks in flight (then they are dropped silently for a while)."""
        if remember:
            self._remember_ended(transfer, now)
        self._transfers.pop(transfer.transfer, None)
        _discard(self._by_session, transfer.sender_session, transfer.transfer)
        if transfer.recipient_session is not None:
            _discard(self._by_session, transfer.recipient_session, transfer.transfer)
        _discard(self._offers_to, transfer.recipient_user, transfer.transfer)
        count = self._open_by_user.get(transfer.sender_user, 0) - 1
        if count > 0:
            self._open_by_user[transfer.sender_user] = count
        else:
            self._open_by_user.pop(transfer.sender_user, None)

    def _remember_ended(self, transfer: RelayTransfer, now: float | None) -> None:
        """Keep ``transfer``'s id for its sender's chunks still in flight (bounded per session)."""
        ended = self._ended.setdefault(transfer.sender_session, {})
        ended.pop(transfer.transfer, None)
        while len(ended) >= self.max_ended_per_session:
            del ended[next(iter(ended))]  # the oldest
        until = None if now is None else now + self.linger
        ended[transfer.transfer] = _Ended(chunks_left=self.window, until=until)

    def _in_flight(self, session: str, transfer_id: str, now: float | None) -> bool:
        """Whether a chunk of ``session`` for ``transfer_id`` (not open) is one it had in flight
        when that transfer ended: then it is counted off the memory, which it may end."""
        ended = self._ended.get(session)
        entry = ended.get(transfer_id) if ended is not None else None
        if entry is None:
            return False
        if now is not None:
            if entry.until is None:
                entry.until = now + self.linger  # ended in a call without ``now``
            elif now >= entry.until:
                _discard_ended(self._ended, session, transfer_id)
                return False
        entry.chunks_left -= 1
        if entry.chunks_left <= 0:
            _discard_ended(self._ended, session, transfer_id)
        return True


def relayed_offer(req: Any, sender: str) -> dict[str, Any]:
    """The offer as the recipient's sessions get it: the request with ``id`` removed and
    ``from`` added. A 3.3 offer carries ``name`` and ``sha256``; an end-to-end one
    (docs/protocol.md 4.12) carries its ``e2e`` object as it came, and neither of them."""
    relayed: dict[str, Any] = {
        "type": "file_offer",
        "transfer": req.transfer,
        "to": req.to,
        "size": req.size,
        "from": sender,
    }
    if req.e2e is not None:
        relayed["e2e"] = req.e2e
    else:
        relayed["name"], relayed["sha256"] = req.name, req.sha256
    return relayed


def _discard(index: dict[str, set[str]], key: str, transfer: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(transfer)
        if not members:
            del index[key]


def _discard_ended(ended: dict[str, dict[str, _Ended]], session: str, transfer: str) -> None:
    members = ended.get(session)
    if members is not None:
        members.pop(transfer, None)
        if not members:
            del ended[session]
