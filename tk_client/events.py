"""What the session tells the user interface: events, and the state of each request.

Every class here is a frozen dataclass, so an event can cross from the network
thread to the user interface's thread without being changed underway.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatproto.framing import FileChunk
from chatproto.wording import try_again

from .known_servers import changed_key_warning


class Phase(enum.Enum):
    IDLE = "idle"  # not connected; waiting for the user (an address, a password, a trust decision)
    CONNECTING = "connecting"
    CONNECTED = "connected"  # greeting verified, not logged in
    LOGGING_IN = "logging in"
    ONLINE = "online"  # logged in
    RECONNECTING = "reconnecting"  # the connection dropped; waiting ``retry_at`` to try again
    STOPPED = "stopped"  # for good: closed, or a failure that retrying cannot fix


@dataclass(frozen=True)
class PhaseChanged:
    phase: Phase
    detail: str = ""  # human words: why we are reconnecting, what failed
    retry_at: float | None = None  # time.monotonic() of the next attempt (RECONNECTING)


@dataclass(frozen=True)
class TrustRequired:
    """First contact with this server: show the fingerprint; then ``trust()`` or ``close()``."""

    address: str
    fingerprint: str


@dataclass(frozen=True)
class KeyChanged:
    """The server presented another key than the pinned one; the session stopped."""

    address: str
    expected: str
    received: str

    @property
    def message(self) -> str:
        return changed_key_warning(self.address, self.expected, self.received)


@dataclass(frozen=True)
class Greeted:
    """The greeting opened (key confirmed). ``greeting["registration"]`` says if sign-up is open."""

    greeting: dict[str, Any]
    fingerprint: str


@dataclass(frozen=True)
class ConnectFailed:
    """Connecting failed before the first login; the session waits for the user to try again."""

    message: str


@dataclass(frozen=True)
class LoginRejected:
    """``login_failed`` / ``register_failed`` / an ``error`` answering the login, in human words."""

    reason: str
    message: str
    retry_after: int | None = None
    registering: bool = False


@dataclass(frozen=True)
class LoggedIn:
    """``login_ok``; ``again`` is True after a reconnect (fetch what was missed).

    ``device``: the remembered device this session is logged in as (PROTOCOL.md 3.4),
    if any; ``with_otp``: the login needed a one-time code (the account has
    two-factor login); ``otp_enrolment_required``: the server requires two-factor
    login and the account has none yet (only ``/2fa on`` works until it does).
    """

    username: str
    rooms: list[dict[str, Any]]
    again: bool
    device: str | None = None
    with_otp: bool = False
    otp_enrolment_required: bool = False


@dataclass(frozen=True)
class OtpRequired:
    """The password was right; the account needs a one-time code: call ``answer_otp(code)``.

    ``retry``: a code was given and refused (wrong, or already used). The session keeps
    the password in memory meanwhile, and the connection open.
    """

    username: str
    retry: bool


@dataclass(frozen=True)
class LoginNeeded:
    """Logging in with the remembered device failed for good (revoked, expired, unknown):
    its token is forgotten; show the login form with ``message`` and log in with the password.
    """

    message: str


class RequestState(enum.Enum):
    QUEUED = "queued"  # not on the wire yet (not logged in, or disconnected)
    SENT = "sent"  # written to the connection; no answer yet
    DONE = "done"  # answered (ack, rooms, history...)
    FAILED = "failed"  # answered with an error, or could not be sent


# Fields that carry a secret (PROTOCOL.md 3.4): a password, a code, a token, a TOTP secret
# (and its otpauth URI), backup codes. A repr shows them as "***", so an event printed
# in a test failure or a traceback never shows one.
SECRET_FIELDS = frozenset(
    {"password", "new_password", "otp", "code", "token", "secret", "uri", "backup_codes"}
)


def redacted(message: dict[str, Any] | None) -> dict[str, Any] | None:
    """``message`` with the values of :data:`SECRET_FIELDS` replaced, for a repr."""
    if message is None:
        return None
    return {k: "***" if k in SECRET_FIELDS else v for k, v in message.items()}


@dataclass(frozen=True)
class RequestStatus:
    """A snapshot of one outbox item; ``message`` is what goes on the wire (with ``id``)."""

    id: str
    message: dict[str, Any]
    state: RequestState
    error: str | None = None  # human words when FAILED
    code: str | None = None  # the error code, when the server answered with one
    uncertain: bool = False  # FAILED after being sent: it may have reached the server

    def __repr__(self) -> str:
        return (
            f"RequestStatus(id={self.id!r}, message={redacted(self.message)!r}, "
            f"state={self.state}, error={self.error!r}, code={self.code!r}, "
            f"uncertain={self.uncertain!r})"
        )

    @property
    def type(self) -> str:
        return self.message["type"]


@dataclass(frozen=True)
class RequestUpdate:
    """An outbox item changed state; ``answer`` is the server's direct answer, if any."""

    request: RequestStatus
    answer: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"RequestUpdate(request={self.request!r}, answer={redacted(self.answer)!r})"


@dataclass(frozen=True)
class Received:
    """A server message that answers none of our requests (a push)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class ChunkArrived:
    """A file chunk record (for a transfer hook; ignored when nobody takes it)."""

    chunk: FileChunk


@dataclass(frozen=True)
class Stopped:
    """The session ended and will not reconnect; ``message`` tells the user what to do."""

    reason: str
    message: str


SessionEvent = (
    PhaseChanged
    | TrustRequired
    | KeyChanged
    | Greeted
    | ConnectFailed
    | LoginRejected
    | LoggedIn
    | OtpRequired
    | LoginNeeded
    | RequestUpdate
    | Received
    | ChunkArrived
    | Stopped
)
Hook = Callable[[SessionEvent], bool]


class NotConnected(Exception):
    """A request the session cannot take now: it ended, or a connection-bound message offline."""


# Human words for the answers of PROTOCOL.md 3.1 and 3.2.
LOGIN_FAILED_MESSAGES = {
    "invalid_credentials": "Wrong username or password.",
    "otp_required": "This account needs a one-time code from its authenticator app.",
}
OTP_REFUSED = (
    "That one-time code was not accepted (wrong, expired or already used). Type the current "
    "code from your authenticator app, or one of your unused backup codes."
)
RESUME_REFUSED = (
    "This device is no longer signed in: it was signed out from another device, unused for "
    "too long, or the password was reset. Log in with your password."
)


def rate_limited_message(retry_after: int | None) -> str:
    if retry_after:
        return f"Too many failed attempts. {try_again(retry_after).capitalize()}"
    return "Too many failed attempts. Try again later."


def refusal_words(error: dict[str, Any]) -> str:
    """An ``error``'s words for the user; for ``rate_limited``, with the wait in words.

    PROTOCOL.md 3.2 (revision 1.1): ``rate_limited`` carries ``retry_after``,
    whole seconds; any request may be refused so, not only a login.
    """
    text = error.get("message")
    words = text if isinstance(text, str) and text.strip() else ""
    retry_after = error.get("retry_after")
    if error.get("code") != "rate_limited":
        return words or "the server refused it"
    words = words.rstrip(". ") or "too many requests"
    if type(retry_after) is int and retry_after > 0:
        return f"{words}; {try_again(retry_after)}"
    return f"{words}; try again later."
