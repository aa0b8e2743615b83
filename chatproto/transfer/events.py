"""What a client's end of a transfer returns: messages to send and things to show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..framing import FileChunk


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
