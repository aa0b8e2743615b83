"""End-to-end file offers (protocol.md 4.12) between the engine, the link and the controller.

The engine seals a file offer's ``file`` plaintext as a Megolm message of the private
conversation (:meth:`~.engine.E2EEngine.seal_for` gives :class:`Sealed` when the room
keys are out) and opens a received offer's ``e2e`` with 4.5's checks
(:meth:`~.engine.E2EEngine.open_file_offer` gives :class:`Opened`, or ``NotShown`` while
its key is missing or when it fails). The link turns those into what the controller acts
on: :class:`FileOfferVerified` (show the offer) and :class:`FileOfferRefused` (answer
``file_cancel`` ``not_verified``). No Tk, no network, no thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatproto.e2e_files import FileFacts, parse_file_plaintext

FILE_MESSAGE_PREFIX = "file:"
"""The message id of an offer for the replay rule (4.12): ``file:<transfer>``."""


def file_message_id(transfer: str) -> str:
    return f"{FILE_MESSAGE_PREFIX}{transfer}"


def transfer_of(msg_id: Any) -> str | None:
    """The transfer of a ``file:<transfer>`` message id; None for a chat message's id."""
    if isinstance(msg_id, str) and msg_id.startswith(FILE_MESSAGE_PREFIX):
        return msg_id[len(FILE_MESSAGE_PREFIX) :]
    return None


@dataclass(frozen=True)
class Sealed:
    """Engine event: the payload given to ``seal_for`` with ``tag`` is sealed (the room keys
    went first): ``e2e`` is the Megolm body to put in the request."""

    tag: str
    e2e: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Opened:
    """Engine event: a file offer's Megolm plaintext, its session, conversation, sender and
    device checked as in 4.5 (the ``file`` fields are checked by :func:`verdict`)."""

    conversation: str
    msg_id: str
    sender: str
    payload: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class FileOfferVerified:
    """Link event: an end-to-end offer whose plaintext passed every check: show it."""

    transfer: str
    sender: str
    facts: FileFacts = field(repr=False)  # carries the file key


@dataclass(frozen=True)
class FileOfferRefused:
    """Link event: an end-to-end offer failed a check: refuse it (``not_verified``)."""

    transfer: str
    sender: str

    @property
    def text(self) -> str:
        return f"A file from {self.sender} could not be verified and was refused."


def verdict(offer: Mapping[str, Any], opened: Opened) -> FileOfferVerified | FileOfferRefused:
    """Check the opened plaintext against its offer (``type``, ``transfer``, ``size``)."""
    transfer = str(offer.get("transfer"))
    size = offer.get("size")
    try:
        if type(size) is not int:
            raise ValueError
        facts = parse_file_plaintext(opened.payload, transfer=transfer, offered_size=size)
    except ValueError:
        return FileOfferRefused(transfer, opened.sender)
    return FileOfferVerified(transfer, opened.sender, facts)
