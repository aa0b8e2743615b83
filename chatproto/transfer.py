"""File transfer (PROTOCOL.md 3.3) without I/O: the server's relay rules and both clients' sides.

Nothing here touches a socket, a file or a clock. Every method takes what arrived
(a validated request, a chunk, the caller's ``now``) and returns what to do, as
small frozen dataclasses, in the order they must be done.

The server: :class:`TransferRegistry`
=====================================

One registry per server process holds a :class:`RelayTransfer` per open transfer
(counters only, never file data: the server holds at most the window of 16
chunks in its send buffers, whatever the file's size). Its methods return
*actions*; the consumer carries them out in order:

- :class:`Deliver` ``(to, message, final)``: send a JSON message. ``to`` is
  :class:`ToSession` (one session) or :class:`ToUser` (every logged-in session of
  a user, but ``exclude``). ``final`` means the transfer is over for the
  receiving sessions: a consumer that keeps a route for the transfer drops it.
- :class:`DeliverChunk` ``(session, chunk)``: send a chunk record.
- :class:`Refuse` ``(session, code, message, ref)``: answer ``error``; the
  consumer of ``session`` sends it with ``ServerConnection.reply_error`` so that
  ``bad_request`` counts toward the 4008 close.

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

Direct answers (PROTOCOL.md 3.0: every request has exactly one). Every
``file_*`` request is answered ``ok`` when it is taken, else ``error``:
``file_offer`` with ``ok`` or its refusal; ``file_accept``, ``file_reject``,
``file_ack``, ``file_end``, ``file_done`` and ``file_cancel`` with ``ok`` (the
direct answer "where nothing else is returned"), carrying ``ref`` when the
request had an ``id``. The direct answer comes before what is relayed. Chunks
are not requests and get no answer, only ``error`` ``unknown_transfer`` (no
``ref``) when they are not the sender's. Which steps are answered is decided in
one place, ``RelayTransfer._ok``. Races are normal and harmless: chunks or acks
already on the wire when the other side cancels are answered ``unknown_transfer``,
which a client ignores for a transfer it knows is over.

What is refused and how:

- a message from a session that is not one of the transfer's two sessions, or
  from one of them outside its role (a chunk or ``file_end`` from the recipient,
  an accept or ack from the sender), or about an unknown or finished transfer:
  ``error`` ``unknown_transfer``; the transfer goes on;
- a step out of turn by the right session (an ack or ``file_done`` before its
  time, a second accept, ``file_reject`` after accepting): ``error``
  ``bad_request``; nothing is relayed and the transfer goes on;
- a violation of the data rules ends the transfer with ``file_cancel`` to both
  sides: a chunk before the accept, after ``file_end`` or with the wrong index,
  or an ack that is not for the oldest unacknowledged chunk:
  ``chunk_out_of_order``; chunk data not 1 to 65,536 bytes: ``chunk_too_large``;
  a 17th chunk not acknowledged: ``window_exceeded``; bytes beyond ``size``, or
  ``file_end`` before ``size`` bytes: ``size_exceeded`` (the protocol names no
  other reason for an early end). When the violation is a request, its direct
  answer is ``error`` ``bad_request``, before the cancels.

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

The clients
===========

:class:`OutgoingTransfer` and :class:`IncomingTransfer` are the two ends; they
return *client events*: :class:`Send` and :class:`SendChunk` (put them on the
wire) and :class:`Accepted`, :class:`Rejected`, :class:`Refused`,
:class:`Acknowledged`, :class:`ChunkData`, :class:`Ended`, :class:`Finished`,
:class:`Cancelled` (show them). The sender sends ``file_end`` as soon as every
byte is sent, without waiting for the last acks; the recipient verifies.
:class:`IntegrityCheck` counts and hashes a stream against the offer (the
recipient hashes where it writes, so each byte is hashed once), :class:`Progress`
turns byte counts into a rate and a time left, and :func:`sanitize_filename`
makes a safe file name of an offered one.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import unicodedata
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .codes import ErrorCode
from .errors import ChatProtoError, LocalProtocolError, MessageError
from .framing import FileChunk
from .limits import (
    MAX_CANCEL_REASON_LENGTH,
    MAX_CHUNK_SIZE,
    MAX_FILE_NAME_LENGTH,
    MAX_JSON_INTEGER,
    TRANSFER_WINDOW,
)
from .messages import SHA256_RE, TRANSFER_RE, USERNAME_RE, Request

OFFER_TIMEOUT_SECONDS = 300.0  # an offer unanswered this long ends with ``expired``
MAX_OPEN_TRANSFERS = 8  # open transfers offered by one user; the 9th offer is rate_limited
DEFAULT_MAX_FILE_SIZE = 4 * 2**30  # CHAT_MAX_FILE_SIZE's default: 4 GiB

# The requests that belong to a transfer; file_offer goes to TransferRegistry.offer.
TRANSFER_TYPES = frozenset(
    {"file_accept", "file_reject", "file_ack", "file_end", "file_done", "file_cancel"}
)


class CancelReason(enum.StrEnum):
    """The ``reason`` of a ``file_cancel``. The first seven are the server's (PROTOCOL.md 3.3)."""

    CHUNK_OUT_OF_ORDER = "chunk_out_of_order"
    CHUNK_TOO_LARGE = "chunk_too_large"
    WINDOW_EXCEEDED = "window_exceeded"
    SIZE_EXCEEDED = "size_exceeded"
    DISCONNECTED = "disconnected"
    EXPIRED = "expired"
    ANSWERED_ELSEWHERE = "answered_elsewhere"
    # Reasons of our clients (the protocol lets a client give any reason).
    CANCELLED = "cancelled"  # the user pressed Cancel (also relayed for an empty reason)
    FILE_CHANGED = "file_changed"  # the sender's file changed while it was being sent
    READ_FAILED = "read_failed"  # the sender could not read its file
    WRITE_FAILED = "write_failed"  # the recipient could not write (disk full, removed...)


class TransferIntegrityError(ChatProtoError):
    """A stream does not match its offer (too many bytes, too few, another SHA-256).

    ``reason`` is the :class:`CancelReason` to cancel with; the message says what
    happened in words for the user, without any of the file's content.
    """

    def __init__(self, reason: CancelReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- messages --------------------------------------------------------------------------------


def ok(ref: str | None) -> dict[str, Any]:
    """The direct answer to a transfer step that was taken (``ref`` only if it had an id)."""
    return {"type": "ok"} if ref is None else {"type": "ok", "ref": ref}


def file_cancel(transfer: str, reason: str) -> dict[str, Any]:
    return {"type": "file_cancel", "transfer": transfer, "reason": str(reason)}


# --- server: actions -------------------------------------------------------------------------


@dataclass(frozen=True)
class ToSession:
    """One session, by its opaque id (a channel name)."""

    session: str


@dataclass(frozen=True)
class ToUser:
    """Every logged-in session of ``user`` except ``exclude`` (a user's Channels group)."""

    user: str
    exclude: str | None = None


Target = ToSession | ToUser


@dataclass(frozen=True)
class Deliver:
    """Send ``message`` to ``to``; ``final``: the transfer is over for the receiving sessions."""

    to: Target
    message: dict[str, Any]
    final: bool = False


@dataclass(frozen=True)
class DeliverChunk:
    """Send ``chunk`` as a chunk record to ``session`` (the accepting recipient)."""

    session: str
    chunk: FileChunk


@dataclass(frozen=True)
class Refuse:
    """Answer ``error`` to ``session``, through ``ServerConnection.reply_error`` there."""

    session: str
    code: ErrorCode
    message: str
    ref: str | None = None


Action = Deliver | DeliverChunk | Refuse


class RecipientStatus(enum.Enum):
    """What the server knows of the offer's ``to`` (it looks the user up; this module cannot)."""

    ONLINE = "online"  # an active user with at least one logged-in session
    OFFLINE = "offline"  # an active user with none
    UNKNOWN = "unknown"  # no such user, or an inactive one


class Phase(enum.Enum):
    OFFERED = "offered"  # relayed to the recipient's sessions; waiting for an answer
    ACCEPTED = "accepted"  # chunks and acks flow between the two sessions
    ENDED = "ended"  # file_end relayed; waiting for file_done
    OVER = "over"  # done, rejected, cancelled, expired: the registry forgets it


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

_UNKNOWN_TRANSFER = "no open transfer of yours has this id; it may have ended"


class RelayTransfer:
    """The server's state of one transfer: who takes part, where it stands, counters.

    Called through :class:`TransferRegistry`, which routes by transfer id and
    forgets the transfer once :attr:`phase` is ``OVER``. Holds no file data.
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
        self.phase = Phase.OFFERED
        self.next_index = 0  # the index the next chunk must carry
        self.next_ack = 0  # the index the next ack must carry
        self.bytes_relayed = 0

    @property
    def unacked(self) -> int:
        """Chunks forwarded and not yet acknowledged (at most the window)."""
        return self.next_index - self.next_ack

    def __repr__(self) -> str:
        return (
            f"<RelayTransfer {self.transfer[:8]} {self.phase.value} "
            f"{self.bytes_relayed}/{self.size} unacked={self.unacked}>"
        )

    # -- routing helpers --------------------------------------------------------------------

    def _role(self, session: str, user: str) -> _Role | None:
        if session == self.sender_session:
            return _Role.SENDER
        if self.recipient_session is None:
            # Before the answer, any session of the recipient may answer (or cancel).
            if self.phase is Phase.OFFERED and user == self.recipient_user:
                return _Role.RECIPIENT
            return None
        return _Role.RECIPIENT if session == self.recipient_session else None

    def _recipient_side(self) -> Target:
        if self.recipient_session is None:
            return ToUser(self.recipient_user)
        return ToSession(self.recipient_session)

    def _to_sender(self, message: dict[str, Any], *, final: bool = False) -> Deliver:
        return Deliver(ToSession(self.sender_session), message, final)

    def _ok(self, session: str, ref: str | None, *, final: bool = False) -> Deliver:
        return Deliver(ToSession(session), ok(ref), final)

    def _cancel_both(self, reason: CancelReason) -> list[Action]:
        message = file_cancel(self.transfer, reason)
        self.phase = Phase.OVER
        return [
            self._to_sender(message, final=True),
            Deliver(self._recipient_side(), message, True),
        ]

    def _violation(
        self, reason: CancelReason, session: str, ref: str | None, message: str
    ) -> list[Action]:
        refusal = Refuse(session, ErrorCode.BAD_REQUEST, message, ref)
        return [refusal, *self._cancel_both(reason)]

    def _answered_elsewhere(self, session: str) -> Deliver:
        message = file_cancel(self.transfer, CancelReason.ANSWERED_ELSEWHERE)
        return Deliver(ToUser(self.recipient_user, exclude=session), message, final=True)

    # -- requests ---------------------------------------------------------------------------

    def handle(self, request: Request, *, session: str, user: str) -> list[Action]:
        """A step of this transfer from ``session`` (of ``user``)."""
        roles = _ROLES.get(request.type)
        if roles is None:
            raise LocalProtocolError(f"{request.type} is not a step of a transfer")
        if self.phase is Phase.OVER or self._role(session, user) not in roles:
            return [Refuse(session, ErrorCode.UNKNOWN_TRANSFER, _UNKNOWN_TRANSFER, request.id)]
        handler = getattr(self, "_on_" + request.type)
        return handler(request, session)

    def _out_of_turn(self, session: str, ref: str | None, message: str) -> list[Action]:
        return [Refuse(session, ErrorCode.BAD_REQUEST, message, ref)]

    def _on_file_accept(self, request: Any, session: str) -> list[Action]:
        if self.phase is not Phase.OFFERED:
            return self._out_of_turn(session, request.id, "this transfer is already accepted")
        self.recipient_session = session
        self.phase = Phase.ACCEPTED
        accepted = {"type": "file_accept", "transfer": self.transfer, "from": self.recipient_user}
        return [
            self._ok(session, request.id),
            self._to_sender(accepted),
            self._answered_elsewhere(session),
        ]

    def _on_file_reject(self, request: Any, session: str) -> list[Action]:
        if self.phase is not Phase.OFFERED:
            return self._out_of_turn(
                session, request.id, "the transfer is accepted; send file_cancel to stop it"
            )
        self.phase = Phase.OVER
        rejected = {"type": "file_reject", "transfer": self.transfer, "from": self.recipient_user}
        return [
            self._ok(session, request.id, final=True),
            self._to_sender(rejected, final=True),
            self._answered_elsewhere(session),
        ]

    def _on_file_ack(self, request: Any, session: str) -> list[Action]:
        if self.phase is Phase.OFFERED:
            return self._out_of_turn(
                session, request.id, "accept the transfer before acknowledging"
            )
        if request.index != self.next_ack or request.index >= self.next_index:
            return self._violation(
                CancelReason.CHUNK_OUT_OF_ORDER,
                session,
                request.id,
                "acknowledgements must name the oldest unacknowledged chunk; transfer cancelled",
            )
        self.next_ack += 1
        acked = {"type": "file_ack", "transfer": self.transfer, "index": request.index}
        return [self._ok(session, request.id), self._to_sender(acked)]

    def _on_file_end(self, request: Any, session: str) -> list[Action]:
        if self.phase is Phase.OFFERED:
            return self._out_of_turn(session, request.id, "wait until the recipient accepts")
        if self.phase is Phase.ENDED:
            return self._out_of_turn(session, request.id, "file_end was already sent")
        if self.bytes_relayed != self.size:
            return self._violation(
                CancelReason.SIZE_EXCEEDED,
                session,
                request.id,
                "file_end before all the offered bytes were sent; transfer cancelled",
            )
        self.phase = Phase.ENDED
        ended = {"type": "file_end", "transfer": self.transfer}
        assert self.recipient_session is not None
        return [self._ok(session, request.id), Deliver(ToSession(self.recipient_session), ended)]

    def _on_file_done(self, request: Any, session: str) -> list[Action]:
        if self.phase is not Phase.ENDED:
            return self._out_of_turn(
                session, request.id, "file_done comes after file_end; send file_cancel to stop"
            )
        self.phase = Phase.OVER
        done = {"type": "file_done", "transfer": self.transfer, "ok": request.ok}
        return [self._ok(session, request.id, final=True), self._to_sender(done, final=True)]

    def _on_file_cancel(self, request: Any, session: str) -> list[Action]:
        cancel = file_cancel(self.transfer, request.reason or CancelReason.CANCELLED)
        actions: list[Action] = [self._ok(session, request.id, final=True)]
        if session == self.sender_session:
            actions.append(Deliver(self._recipient_side(), cancel, final=True))
        else:
            actions.append(self._to_sender(cancel, final=True))
            if self.recipient_session is None:  # one of the recipient's sessions declined
                actions.append(self._answered_elsewhere(session))
        self.phase = Phase.OVER
        return actions

    # -- chunks -----------------------------------------------------------------------------

    def handle_chunk(self, chunk: FileChunk, *, session: str) -> list[Action]:
        """A chunk record from ``session``: forwarded, refused, or the end of the transfer."""
        if session != self.sender_session or self.phase is Phase.OVER:
            return [Refuse(session, ErrorCode.UNKNOWN_TRANSFER, _UNKNOWN_TRANSFER)]
        size = len(chunk.data)
        if self.phase is not Phase.ACCEPTED or chunk.index != self.next_index:
            return self._cancel_both(CancelReason.CHUNK_OUT_OF_ORDER)
        if not 1 <= size <= MAX_CHUNK_SIZE:
            return self._cancel_both(CancelReason.CHUNK_TOO_LARGE)
        if self.unacked >= self.window:
            return self._cancel_both(CancelReason.WINDOW_EXCEEDED)
        if self.bytes_relayed + size > self.size:
            return self._cancel_both(CancelReason.SIZE_EXCEEDED)
        self.next_index += 1
        self.bytes_relayed += size
        assert self.recipient_session is not None
        return [DeliverChunk(self.recipient_session, chunk)]

    # -- endings from outside -----------------------------------------------------------------

    def session_gone(self, session: str) -> list[Action]:
        """``session`` ended: ``disconnected`` to the other side if it was one of the two."""
        if self.phase is Phase.OVER:
            return []
        if session == self.sender_session:
            message = file_cancel(self.transfer, CancelReason.DISCONNECTED)
            self.phase = Phase.OVER
            return [Deliver(self._recipient_side(), message, final=True)]
        if session == self.recipient_session:
            self.phase = Phase.OVER
            message = file_cancel(self.transfer, CancelReason.DISCONNECTED)
            return [self._to_sender(message, final=True)]
        return []

    def recipient_offline(self) -> list[Action]:
        """The recipient has no session left: an unanswered offer ends with ``disconnected``."""
        if self.phase is not Phase.OFFERED:
            return []
        self.phase = Phase.OVER
        message = file_cancel(self.transfer, CancelReason.DISCONNECTED)
        return [self._to_sender(message, final=True)]

    def expire(self, now: float) -> list[Action]:
        """``expired`` to both sides if the offer is still unanswered at ``now``."""
        if self.phase is not Phase.OFFERED or now < self.expires_at:
            return []
        return self._cancel_both(CancelReason.EXPIRED)


class TransferRegistry:
    """Every transfer whose sender's session is in this process, indexed three ways.

    By id (routing), by session (so that a session's end finds its transfers),
    by recipient user (offers still waiting) and the open count per sending
    user. A transfer is forgotten the moment it is over, so an idle registry
    holds nothing (:attr:`idle`). Calls are synchronous and never await, so a
    consumer may call them from any coroutine without locks.
    """

    def __init__(
        self,
        *,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_open_per_user: int = MAX_OPEN_TRANSFERS,
        offer_timeout: float = OFFER_TIMEOUT_SECONDS,
        window: int = TRANSFER_WINDOW,
    ) -> None:
        self.max_file_size = max_file_size
        self.max_open_per_user = max_open_per_user
        self.offer_timeout = offer_timeout
        self.window = window
        self._transfers: dict[str, RelayTransfer] = {}
        self._by_session: dict[str, set[str]] = {}
        self._offers_to: dict[str, set[str]] = {}  # recipient user -> unanswered offers
        self._open_by_user: dict[str, int] = {}  # sending user -> open transfers

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

    @property
    def idle(self) -> bool:
        """True when no transfer is open and no index holds anything (all state freed)."""
        return not (self._transfers or self._by_session or self._offers_to or self._open_by_user)

    def next_expiry(self) -> float | None:
        """The earliest ``now`` at which :meth:`expire` has something to do, if any."""
        waiting = [t.expires_at for t in self._transfers.values() if t.phase is Phase.OFFERED]
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
        self._by_session.setdefault(session, set()).add(transfer.transfer)
        self._offers_to.setdefault(transfer.recipient_user, set()).add(transfer.transfer)
        self._open_by_user[user] = self._open_by_user.get(user, 0) + 1
        relayed = {
            "type": "file_offer",
            "transfer": req.transfer,
            "to": req.to,
            "name": req.name,
            "size": req.size,
            "sha256": req.sha256,
            "from": user,
        }
        return [Deliver(ToSession(session), ok(req.id)), Deliver(ToUser(req.to), relayed)]

    # -- the other steps ---------------------------------------------------------------------

    def receive(self, request: Request, *, session: str, user: str) -> list[Action]:
        """A step of a transfer (a type in :data:`TRANSFER_TYPES`) from ``session`` of ``user``."""
        if request.type not in TRANSFER_TYPES:
            raise LocalProtocolError(f"{request.type} is not a step of a transfer")
        transfer = self._transfers.get(request.transfer)  # type: ignore[attr-defined]
        if transfer is None:
            return [Refuse(session, ErrorCode.UNKNOWN_TRANSFER, _UNKNOWN_TRANSFER, request.id)]
        return self._after(transfer, transfer.handle(request, session=session, user=user))

    def receive_chunk(self, chunk: FileChunk, *, session: str) -> list[Action]:
        """A chunk record from ``session``."""
        transfer = self._transfers.get(chunk.transfer_hex)
        if transfer is None:
            return [Refuse(session, ErrorCode.UNKNOWN_TRANSFER, _UNKNOWN_TRANSFER)]
        actions = transfer.handle_chunk(chunk, session=session)
        if transfer.phase is Phase.OVER:
            self._forget(transfer)
        return actions

    def drop_session(self, session: str) -> list[Action]:
        """``session`` ended (here, or in another process for a transfer owned here)."""
        actions: list[Action] = []
        for transfer_id in sorted(self._by_session.get(session, ())):
            transfer = self._transfers[transfer_id]
            actions += self._after(transfer, transfer.session_gone(session))
        return actions

    def recipient_offline(self, user: str) -> list[Action]:
        """``user``'s last session ended: their unanswered offers end with ``disconnected``."""
        actions: list[Action] = []
        for transfer_id in sorted(self._offers_to.get(user, ())):
            transfer = self._transfers[transfer_id]
            actions += self._after(transfer, transfer.recipient_offline())
        return actions

    def expire(self, now: float) -> list[Action]:
        """``expired`` to both sides of every offer unanswered for the timeout at ``now``."""
        actions: list[Action] = []
        for transfer in sorted(self._transfers.values(), key=lambda t: t.expires_at):
            if transfer.phase is Phase.OFFERED and now >= transfer.expires_at:
                actions += self._after(transfer, transfer.expire(now))
        return actions

    # -- bookkeeping --------------------------------------------------------------------------

    def _after(self, transfer: RelayTransfer, actions: list[Action]) -> list[Action]:
        if transfer.phase is Phase.OVER:
            self._forget(transfer)
            return actions
        if transfer.phase is not Phase.OFFERED:
            _discard(self._offers_to, transfer.recipient_user, transfer.transfer)
        if transfer.recipient_session is not None:
            self._by_session.setdefault(transfer.recipient_session, set()).add(transfer.transfer)
        return actions

    def _forget(self, transfer: RelayTransfer) -> None:
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


def _discard(index: dict[str, set[str]], key: str, transfer: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(transfer)
        if not members:
            del index[key]


# --- clients: events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send this JSON message (a transfer step; its ``ok`` answer needs no tracking)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class SendChunk:
    """Send this chunk as a chunk record."""

    chunk: FileChunk


@dataclass(frozen=True)
class Accepted:
    """The recipient accepted: chunks may flow."""


@dataclass(frozen=True)
class Rejected:
    """The recipient declined the offer; the transfer is over."""


@dataclass(frozen=True)
class Refused:
    """The server refused the offer (``code``: too_large, offline, unknown_user...)."""

    code: str
    message: str


@dataclass(frozen=True)
class Acknowledged:
    """The recipient wrote chunk ``index``; ``bytes_acked`` of the file are safely across."""

    index: int
    bytes_acked: int


@dataclass(frozen=True)
class ChunkData:
    """Recipient: write ``data``, then call :meth:`IncomingTransfer.written`."""

    index: int
    data: bytes


@dataclass(frozen=True)
class Ended:
    """Recipient: the sender sent ``file_end``; verify, keep or discard, then ``finish()``."""

    size_ok: bool


@dataclass(frozen=True)
class Finished:
    """The transfer is over after ``file_done``: ``ok`` if the recipient kept an exact copy."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Cancelled:
    """The transfer is over: cancelled by us (``local``) or by the peer or the server."""

    reason: str
    local: bool


ClientEvent = (
    Send
    | SendChunk
    | Accepted
    | Rejected
    | Refused
    | Acknowledged
    | ChunkData
    | Ended
    | Finished
    | Cancelled
)


class TransferState(enum.Enum):
    OFFERED = "offered"  # offer sent (or received); no answer yet
    RUNNING = "running"  # accepted: chunks flow
    ENDED = "ended"  # file_end sent (or received); waiting for file_done (or verifying)
    FINISHED = "finished"  # file_done with ok true: an exact copy was kept
    FAILED = "failed"  # rejected, refused, cancelled, or file_done with ok false

    @property
    def over(self) -> bool:
        return self in (TransferState.FINISHED, TransferState.FAILED)


class _ClientSide:
    """What both ends share: the id, the offer's facts, the state and how it ended."""

    transfer: str
    transfer_bytes: bytes
    size: int
    sha256: str
    state: TransferState
    reason: str | None  # why it failed (a CancelReason value, "rejected", an error code)

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


def _check_offer_fields(transfer: str, name: str, size: int, sha256: str) -> None:
    if not isinstance(transfer, str) or not TRANSFER_RE.fullmatch(transfer):
        raise ValueError("a transfer id is 32 lowercase hex digits")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_FILE_NAME_LENGTH:
        raise ValueError(f"a file name is 1 to {MAX_FILE_NAME_LENGTH} characters")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_JSON_INTEGER:
        raise ValueError("a file size is a whole number of bytes")
    if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
        raise ValueError("a SHA-256 is 64 lowercase hex digits")


def new_transfer_id() -> str:
    """A fresh transfer id: 16 random bytes from the operating system, in hex."""
    return secrets.token_hex(16)


# --- clients: the sender ---------------------------------------------------------------------


class OutgoingTransfer(_ClientSide):
    """The sender's end: the offer, chunks within the window of 16, ``file_end``, the outcome.

    The caller reads the file; this object says how much to read next
    (:meth:`next_chunk_size`), numbers what was read (:meth:`chunk`) and says
    when to end (:attr:`ready_to_end`, :meth:`end`). Route every server message
    whose ``transfer`` is :attr:`transfer` to :meth:`receive`.
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
            _check_offer_fields(transfer, name, size, sha256)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.transfer = transfer
        self.transfer_bytes = bytes.fromhex(transfer)
        self.to = to
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.window = window
        self.state = TransferState.OFFERED
        self.reason = None
        self.next_index = 0
        self.bytes_sent = 0
        self.bytes_acked = 0
        self._in_flight: deque[int] = deque()  # lengths of sent, unacknowledged chunks

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
        return len(self._in_flight)

    def next_chunk_size(self) -> int:
        """How many bytes the next chunk may hold now: 0 while the window is full or all is sent."""
        if self.state is not TransferState.RUNNING or len(self._in_flight) >= self.window:
            return 0
        return min(MAX_CHUNK_SIZE, self.size - self.bytes_sent)

    def chunk(self, data: bytes) -> list[ClientEvent]:
        """The chunk record for the next ``data`` (1 to :meth:`next_chunk_size` bytes)."""
        allowed = self.next_chunk_size()
        if not 1 <= len(data) <= allowed:
            raise LocalProtocolError(f"a chunk now holds 1 to {allowed} bytes, not {len(data)}")
        chunk = FileChunk(self.transfer_bytes, self.next_index, bytes(data))
        self.next_index += 1
        self.bytes_sent += len(data)
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

    def _on_ack(self, index: Any) -> list[ClientEvent]:
        expected = self.next_index - len(self._in_flight)
        if isinstance(index, bool) or index != expected or not self._in_flight:
            # The server checks acks; one out of order means something is broken: stop.
            return self.cancel(CancelReason.CHUNK_OUT_OF_ORDER)
        self.bytes_acked += self._in_flight.popleft()
        return [Acknowledged(index, self.bytes_acked)]


# --- clients: the recipient ------------------------------------------------------------------


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


# --- clients: integrity, progress, names -----------------------------------------------------


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
        self._hash = hashlib.sha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        length = len(data)
        if self.count + length > self.size:
            raise TransferIntegrityError(
                CancelReason.SIZE_EXCEEDED, f"more than the {self.size} bytes announced"
            )
        self._hash.update(data)
        self.count += length

    @property
    def remaining(self) -> int:
        return self.size - self.count

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def matches(self) -> bool:
        """True if exactly ``size`` bytes with the announced SHA-256 went through."""
        return self.count == self.size and self.hexdigest() == self.sha256


class Progress:
    """Bytes done of a total, with a rate over a sliding window and the time left.

    Time is the caller's (a monotonic clock, in seconds). The rate is measured
    over the last ``window`` seconds, so it follows a network that speeds up or
    slows down instead of averaging since the start.
    """

    def __init__(self, total: int, *, window: float = 5.0) -> None:
        self.total = total
        self.done = 0
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, done: int, now: float) -> None:
        self.done = done
        if self._samples and now < self._samples[-1][0]:
            now = self._samples[-1][0]  # a clock that went backwards counts as standing still
        self._samples.append((now, done))
        # Keep one sample at or before the window's start, as the baseline of the rate.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    @property
    def fraction(self) -> float:
        """0.0 to 1.0 (an empty file is complete from the start)."""
        return 1.0 if self.total == 0 else min(1.0, self.done / self.total)

    @property
    def rate(self) -> float | None:
        """Bytes per second over the window; None until two samples span some time."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return max(0.0, (d1 - d0) / (t1 - t0))

    @property
    def remaining_seconds(self) -> float | None:
        """Seconds left at the current rate; None while it is unknown or zero."""
        left = self.total - self.done
        if left <= 0:
            return 0.0
        rate = self.rate
        if not rate:
            return None
        return left / rate


RESERVED_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in range(1, 10)}
    | {f"LPT{n}" for n in range(1, 10)}
)
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf"})  # controls; format characters such as U+202E


def is_reserved_name(name: str) -> bool:
    """A Windows device name, with any extension: ``con``, ``CON.txt``, ``Com1.tar.gz``."""
    stem = name.split(".", 1)[0]
    return stem.isascii() and stem.upper() in RESERVED_DEVICE_NAMES


def sanitize_filename(name: str) -> str:
    """The name to save an offered file under (PROTOCOL.md 3.3), never empty, never a path.

    Removes ``/``, ``\\`` and every character of Unicode categories Cc and Cf;
    strips leading dots and trailing dots and spaces; an empty result or a
    reserved device name on Windows becomes ``file``. Idempotent.
    """
    kept = "".join(
        char
        for char in name
        if char not in "/\\" and unicodedata.category(char) not in _DROPPED_CATEGORIES
    )
    kept = kept.lstrip(".").rstrip(". ")
    if not kept or is_reserved_name(kept):
        return "file"
    return kept
