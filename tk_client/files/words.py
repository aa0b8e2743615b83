"""The words a person reads about a transfer: sizes, durations, progress, why it ended.

One place for them, apart from the state machines and the threads. Tkinter-free,
because both clients show them: the desktop views (:mod:`tk_client.views.transfers`)
and the terminal client, and the controller's notices (which may not import the
views) read them from :class:`~tk_client.files.events.TransferInfo`.
"""

from __future__ import annotations

from chatproto.transfer import OFFER_TIMEOUT_SECONDS, CancelReason, TransferState

from .events import TransferInfo
from .progress import Progress


def format_size(size: float) -> str:
    """1023 B, 1.5 KiB, 12.3 MiB, 4.0 GiB."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """8 s, 2 min 05 s, 1 h 20 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def describe_progress(progress: Progress) -> str:
    """ "12.3 MiB of 40.0 MiB (30%), 5.1 MiB/s, 5 s left" for a progress bar's label."""
    text = (
        f"{format_size(progress.done)} of {format_size(progress.total)} "
        f"({int(progress.fraction * 100)}%)"
    )
    rate = progress.rate
    if rate is not None:
        text += f", {format_size(rate)}/s"
    left = progress.remaining_seconds
    if left is not None and progress.done < progress.total:
        text += f", {format_duration(left)} left"
    return text


_REASONS = {
    CancelReason.CHUNK_OUT_OF_ORDER: "the transfer broke the protocol (chunks out of order)",
    CancelReason.CHUNK_TOO_LARGE: "the transfer broke the protocol (a chunk too large)",
    CancelReason.WINDOW_EXCEEDED: "the transfer broke the protocol (too many chunks at once)",
    CancelReason.SIZE_EXCEEDED: "the file's size did not match the offer",
    CancelReason.DISCONNECTED: "the other side disconnected",
    CancelReason.EXPIRED: (
        f"the offer was not answered within {int(OFFER_TIMEOUT_SECONDS // 60)} minutes"
    ),
    CancelReason.ANSWERED_ELSEWHERE: "answered in another of your sessions",
    CancelReason.CANCELLED: "cancelled",
    CancelReason.FILE_CHANGED: "the file changed while it was being sent; send it again",
    CancelReason.READ_FAILED: "the sender could not read the file",
    CancelReason.WRITE_FAILED: "the file could not be written (is the disk full?)",
    "rejected": "declined",
    "not_kept": "the recipient did not keep the file (it did not match)",
    "too_large": "the file is larger than the server allows",
    "offline": "the user is not online",
    "unknown_user": "there is no such user",
    "rate_limited": "too many transfers open; wait until one ends",
    "unknown_transfer": "the server no longer knows this transfer",
    "not_verified": (
        "the end-to-end encrypted file could not be verified (altered or out of place on the "
        "way); nothing of it was kept"
    ),
    "device_required": "files are sent end to end: log in as a remembered device",
}


def describe_reason(reason: str) -> str:
    """Words for a cancel reason, a refusal code or a failure; unknown ones as they came."""
    return _REASONS.get(reason, reason)


# How a transfer failed on this side: the ``detail`` of its TransferInfo, shown by _why().
SIZE_MISMATCH = "the sender sent a different number of bytes than it offered"
HASH_MISMATCH = "the received file does not match the sender's SHA-256; it was discarded"


# The server answered a step with unknown_transfer (PROTOCOL.md 3.3): it no longer relays it.
UNKNOWN_TO_SERVER = "the server lost track of this transfer; it can be sent again"


def save_failed(exc: OSError) -> str:
    """The verified file could not be put in place (disk full, folder removed...)."""
    return f"the file could not be saved: {exc.strerror or exc}"


def read_failed(path: str, exc: OSError) -> str:
    """The file to send could not be opened or hashed."""
    return f"cannot read {path}: {exc.strerror or exc}"


def unexpected_error(exc: BaseException) -> str:
    """A bug ended the transfer; the type only, never the message (it may hold file data)."""
    return f"an unexpected error ({type(exc).__name__})"


def describe_transfer(info: TransferInfo) -> str:
    """What is happening to a transfer, or how it ended, as a sentence (``info.message``)."""
    name, peer, size = info.name, info.peer, format_size(info.size)
    state = info.stage
    if info.outgoing:
        return {
            TransferState.PREPARING: f"Preparing {name} for {peer} (computing its checksum)",
            TransferState.OFFERED: f"Waiting for {peer} to accept {name} ({size})",
            TransferState.RUNNING: f"Sending {name} to {peer}",
            TransferState.ENDED: f"{peer} is checking {name}",
            TransferState.FINISHED: f"{peer} received {name} ({size}) intact.",
        }.get(state) or f"{name} was not sent to {peer}: {_why(info)}."
    if state is TransferState.FAILED and info.reason == "rejected":
        return f"You declined {name} from {peer}."
    return {
        TransferState.OFFERED: f"{peer} offers you {name} ({size})",
        TransferState.RUNNING: f"Receiving {name} from {peer}",
        TransferState.ENDED: f"Checking {name} from {peer}",
        TransferState.FINISHED: f"Received {name} ({size}) from {peer}, saved as {info.path}.",
    }.get(state) or f"{name} from {peer} was not received: {_why(info)}."


def _why(info: TransferInfo) -> str:
    reason, peer = info.reason or "", info.peer
    if reason == CancelReason.CANCELLED:
        return "you cancelled it" if info.local else f"{peer} cancelled it"
    if reason == "rejected":
        return f"{peer} declined it"
    if reason == CancelReason.DISCONNECTED:
        return "the connection to the server was lost" if info.local else f"{peer} went offline"
    if info.detail:
        return info.detail
    return describe_reason(reason)
