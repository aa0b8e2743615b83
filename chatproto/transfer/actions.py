"""What the relay asks the server's consumer to do, in the order it returns them.

The actions of :class:`~chatproto.transfer.relay.TransferRegistry`:

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
