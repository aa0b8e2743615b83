"""What the transfer manager tells the user interface, and the one error it raises.

Frozen dataclasses, so a snapshot crosses from a transfer's worker thread to
the user interface's thread without being changed underway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatproto.transfer import TransferState


@dataclass(frozen=True)
class TransferInfo:
    """A snapshot of one transfer, for the user interface (safe to pass between threads).

    ``stage`` is the transfer's :class:`~chatproto.transfer.TransferState`
    (``PREPARING`` while the sender hashes the file, before the offer).
    ``progress`` and ``message`` are the words of :mod:`tk_client.files.words`.
    """

    transfer: str
    outgoing: bool
    peer: str  # the recipient (outgoing) or the sender (incoming)
    name: str  # the file's name; for an incoming file the sanitized one it is saved under
    size: int
    stage: TransferState
    done: int  # bytes hashed (PREPARING), acknowledged (sender) or written (recipient)
    fraction: float  # 0.0 to 1.0 of ``done``
    rate: float | None  # bytes per second, None until known
    remaining: float | None  # seconds left, None until known
    progress: str  # "12.3 MiB of 40.0 MiB (30%), 5.1 MiB/s, 5 s left"
    message: str  # what is happening, or how it ended, in words
    reason: str | None = None  # why it FAILED: a CancelReason value, "rejected", an error code
    local: bool = False  # FAILED by this side (Cancel pressed, our connection lost...)
    path: str | None = None  # the file sent, or where the received file was saved
    detail: str = ""  # words from the server or the recipient about how it ended
    end_to_end: bool = False  # sent or offered end to end (protocol.md 4.12)

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


@dataclass(frozen=True)
class OfferToSeal:
    """A file is hashed for an end-to-end offer (4.12): the user interface's thread has the
    end-to-end link seal it (:meth:`TransferManager.sealed` with the ``e2e``, or
    :meth:`TransferManager.not_sealed` with words)."""

    transfer: str
    peer: str
    name: str
    size: int  # the file's own size
    sha256: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class SealedOfferArrived:
    """An end-to-end offer came (4.12): the user interface's thread has the link open it,
    then :meth:`TransferManager.offer_verified` or :meth:`TransferManager.refuse_offer`."""

    offer: dict[str, Any] = field(repr=False)

    @property
    def transfer(self) -> str:
        return str(self.offer.get("transfer"))

    @property
    def sender(self) -> str:
        return str(self.offer.get("from"))


TransferEvent = FileOffered | TransferChanged | OfferToSeal | SealedOfferArrived


class TransferError(Exception):
    """What the user asked cannot be done; the message says why and what to do instead."""
