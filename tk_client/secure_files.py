"""End-to-end files (protocol.md 4.12) between the transfer manager and the end-to-end link.

Both clients' controllers call these on the user interface's thread, where the link
lives: a hashed file's offer is sealed by the link and handed back to its worker
(:class:`~tk_client.files.events.OfferToSeal`); a received end-to-end offer is opened
by the link (:class:`~tk_client.files.events.SealedOfferArrived`), then offered to the
user or refused (:class:`~tk_client.e2e.files.FileOfferVerified`,
:class:`~tk_client.e2e.files.FileOfferRefused`). Without a link (no remembered device)
nothing is sent or read (and a received offer is left to the user's other sessions):
there is no plaintext fallback. No tkinter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from chatproto.e2e_files import FileFacts

from .e2e.errors import E2EError
from .e2e.files import FileOfferRefused, FileOfferVerified
from .files.events import OfferToSeal, SealedOfferArrived, TransferInfo

if TYPE_CHECKING:
    from .e2e.link import E2ELink

FILES_NEED_A_DEVICE = (
    "Files are sent end-to-end encrypted and need this computer to be a remembered "
    'device: log in with "Remember me" ticked (--remember NAME in the terminal client).'
)
PLAIN_OFFER = "not end-to-end encrypted: the server could read this file"
SEALED_OFFER = "\N{LOCK} end-to-end encrypted"


def offer_security(info: TransferInfo) -> str:
    """The words beside an offer, before the user answers (4.12)."""
    return SEALED_OFFER if info.end_to_end else PLAIN_OFFER


def cannot_receive(sender: str) -> str:
    return (
        f"{sender} sent you an end-to-end encrypted file; this computer cannot read it: "
        "answer it where you are logged in on a remembered device, or log in here with "
        '"Remember me" ticked (--remember NAME in the terminal client).'
    )


class SealedTransfers(Protocol):
    """What these need of :class:`~tk_client.files.TransferManager`."""

    def sealed(self, transfer: str, e2e: dict[str, Any]) -> None: ...
    def not_sealed(self, transfer: str, words: str) -> None: ...
    def offer_verified(self, transfer: str, facts: FileFacts) -> None: ...
    def refuse_offer(self, transfer: str) -> None: ...


def seal_offer(link: E2ELink | None, transfers: SealedTransfers, event: OfferToSeal) -> list[Any]:
    """Have the link seal a hashed file's offer; the worker sends it when sealed. The
    link's events (requests it made, notices) are returned for the controller to show."""
    if link is None:
        transfers.not_sealed(event.transfer, FILES_NEED_A_DEVICE)
        return []
    transfer = event.transfer

    def on_sealed(e2e: dict[str, Any]) -> None:
        transfers.sealed(transfer, e2e)

    def on_failed(words: str) -> None:
        transfers.not_sealed(transfer, words)

    try:
        return link.seal_file(
            event.peer,
            transfer=transfer,
            name=event.name,
            size=event.size,
            sha256=event.sha256,
            key=event.key,
            on_sealed=on_sealed,
            on_failed=on_failed,
        )
    except E2EError as exc:
        transfers.not_sealed(transfer, str(exc))
        return []


def open_offer(
    link: E2ELink | None, transfers: SealedTransfers, event: SealedOfferArrived
) -> tuple[list[Any], str | None]:
    """Have the link open an end-to-end offer: its events (the verdict may come now or
    when its key arrives: :func:`take_verdict`), and a notice if it cannot be read here.

    Without a link the offer is left unanswered, not refused: another session of the
    user, on a device, may read it, and any session's answer ends it for all (3.3). It
    ends as every unanswered offer does (answered elsewhere, cancelled, expired)."""
    if link is None:
        return [], cannot_receive(event.sender)
    return link.open_file_offer(event.offer), None


def take_verdict(
    transfers: SealedTransfers, event: FileOfferVerified | FileOfferRefused
) -> str | None:
    """Offer a verified file to the user, or refuse it; the notice to show, if any."""
    if isinstance(event, FileOfferVerified):
        transfers.offer_verified(event.transfer, event.facts)
        return None
    transfers.refuse_offer(event.transfer)
    return event.text
