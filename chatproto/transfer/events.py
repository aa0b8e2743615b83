"""What the sans-I/O transfer machines return: small frozen dataclasses, to act on in order.

**Client events**, returned by the two ends of :mod:`.endpoint`
(:class:`~chatproto.transfer.endpoint.OutgoingTransfer`,
:class:`~chatproto.transfer.endpoint.IncomingTransfer`): :class:`Send` and
:class:`SendChunk` (put them on the wire) and :class:`Accepted`,
:class:`Rejected`, :class:`Refused`, :class:`Acknowledged`, :class:`ChunkData`,
:class:`Ended`, :class:`Finished`, :class:`Cancelled` (act on them, show them).

**Relay actions**, returned by :class:`~chatproto.transfer.relay.TransferRegistry`
for the server's consumer:

- :class:`Deliver` ``(to, message, final)``: send a JSON message. ``to`` is
  :class:`ToSession` (one session) or :class:`ToUser` (every logged-in session of
  a user, but ``exclude``). ``final`` means the transfer is over for the
  receiving sessions: a consumer that keeps a route for the transfer drops it.
- :class:`DeliverChunk` ``(session, chunk)``: send a chunk record.
- :class:`Refuse` ``(session, code, message, ref)``: answer ``error``; the
  consumer of ``session`` sends it with ``ServerConnection.reply_error`` so that
  ``bad_request`` counts toward the 4008 close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..codes import ErrorCode
from ..framing import FileChunk

# --- client events -----------------------------------------------------------------------------


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
    data: bytes | memoryview  # a view of the record it came in (FileChunk)


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


# --- relay actions -----------------------------------------------------------------------------


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
    counts: bool = False  # a bad request of the session whatever the code (a stray chunk)


Action = Deliver | DeliverChunk | Refuse
