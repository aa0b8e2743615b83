"""What the session does when a connection ends or a login is refused: one pure table.

No sockets, threads or clocks here, so every row is tested directly
(``tests/tk_client/test_endings.py``). The rules, and why (see also the
guarantees at the top of :mod:`tk_client.session`):

- A close code is a hint, not an order: a close frame is not protected by the
  record layer, so anyone on a ``ws://`` path can forge one. Only the
  authenticated ``session_ended`` record stops the session (PROTOCOL.md 3.2),
  whatever way the connection then ends; a bare 4003 is a lost connection.
- 4001 (too many failed logins) follows a ``login_failed`` answer (PROTOCOL.md
  3.1). Before the first login it sends the user back to the login form; on an
  established session a reconnect's refused login has already stopped it on
  that encrypted answer, so a bare 4001 is retried.
- 4008 (policy) is retried only at the longest delay: hurrying makes it worse.
- 1000 on a logged-in connection is a direction reaching 2**32 records
  (PROTOCOL.md 2): reconnect at once.
- Before the first login nothing is retried on its own (no decision says
  RETRY then): the user is told and tries again. Once logged in, a lost
  connection is retried with backoff.
- A reconnect's login refused for server trouble (``rate_limited``, an
  ``internal`` error) is retried; for anything else (the password changed,
  the account went) the session stops.
- Devices, two-factor login (PROTOCOL.md 3.4): ``otp_required`` keeps the
  connection and the password, and asks the user for a code (also on a
  reconnect: a code cannot be guessed by retrying). A ``resume`` refused for
  its token (``invalid_credentials``) forgets the token and asks for the
  password. ``session_ended`` ``revoked`` and ``logged_out`` also forget the
  token, which the server no longer honours; ``password_changed`` stops like
  the other reasons (the device may still be this one's, if another session
  of it changed the password, so the token is kept).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from chatproto.codes import CloseCode
from chatproto.connection import LoginFailed, LoginRefused, State

from .events import (
    LOGIN_FAILED_MESSAGES,
    OTP_REFUSED,
    RESUME_REFUSED,
    KeyChanged,
    TrustRequired,
    rate_limited_message,
)
from .known_servers import Trust, TrustCheck


class Next(enum.Enum):
    """What the network thread does next."""

    RETRY = "retry"  # back off, then connect again (before the first login: wait for the user)
    RETRY_NOW = "retry now"  # 1000 after 2**32 records
    RETRY_SLOW = "retry slow"  # 4008: the longest delay
    WAIT = "wait"  # for the user: trust, a password, another try
    STOP = "stop"  # for good
    STAY = "stay"  # keep this connection: the user answers a refused login


class Ask(enum.Enum):
    """What a refused login needs from the user, besides the words (see after_refusal)."""

    OTP = "otp"  # a one-time code: OtpRequired, then answer_otp()
    LOGIN = "login"  # the password: LoginNeeded (the remembered device no longer works)


class Reached(enum.Enum):
    """How far a connection got before it ended."""

    HANDSHAKE = "handshake"  # no greeting yet
    GREETED = "greeted"  # greeting verified, no login on the wire
    LOGGING_IN = "logging in"  # login or register sent, no answer
    LOGGED_IN = "logged in"

    @classmethod
    def of(cls, state: State) -> Reached:
        """From the state a :class:`ClientConnection` is in, or closed in."""
        return _REACHED.get(state, cls.HANDSHAKE)


_REACHED = {
    State.AWAITING_LOGIN: Reached.GREETED,
    State.LOGGING_IN: Reached.LOGGING_IN,
    State.LOGGED_IN: Reached.LOGGED_IN,
}


class Cause(enum.Enum):
    """How a connection ended when it was not a close frame from the server."""

    DROPPED = "dropped"  # no close frame: the network failed, or a send did
    NO_HELLO = "no hello"  # nothing within the connect timeout
    BAD_HANDSHAKE = "bad handshake"  # the hello or the greeting failed its checks
    BAD_RECORD = "bad record"  # a record failed its checks (we closed 4002 or 1009)
    NO_GREETING = "no greeting"  # silence between key and greeting
    SILENT = "silent"  # a keepalive ping went unanswered
    BAD_LOGIN_ANSWER = "bad login answer"  # login_ok without its user or rooms


@dataclass(frozen=True)
class Decision:
    """What to do, and what to tell the user.

    ``report``: show ``message`` now (``ConnectFailed``), since before the first
    login nothing else will. ``forget_password``: retrying cannot make the
    password useful. ``at_least``: seconds the server asked us to wait.
    ``reason``: the ``Stopped`` reason when ``next`` is STOP. ``forget_token``:
    the remembered device's token is dead. ``ask``: a refused login that the
    user answers with a code or the password (with ``next`` STAY).
    """

    next: Next
    message: str = ""
    report: bool = False
    forget_password: bool = False
    at_least: float = 0.0
    reason: str = "stopped"
    forget_token: bool = False
    ask: Ask | None = None


# Why the server ended the session (an authenticated ``session_ended``), and what to do.
SESSION_ENDED_MESSAGES = {
    "deactivated": "Your account was deactivated by an administrator.",
    "ended_by_admin": "An administrator ended your session.",
    "revoked": (
        "This device was signed out (revoked) from another device or by an administrator. "
        "Log in with your password to use it again."
    ),
    "password_changed": (
        "Your password was changed on another device, which signed out this one. "
        "Log in with the new password."
    ),
    "logged_out": "You logged out; this device no longer keeps you signed in.",
}
# The ends after which the device's token is dead: forget it (PROTOCOL.md 3.4).
TOKEN_ENDING_REASONS = frozenset({"revoked", "logged_out"})

HANDSHAKE_FAILED = (
    "The secure handshake with {address} failed. The server may run an incompatible "
    "version, or something between you and it altered the connection."
)
NO_HELLO = (
    "The server at {address} did not say hello within {timeout:.0f} seconds. Is it a chat server?"
)
FORGED_4003 = (
    "the server closed the connection as if it ended the session (4003), but without the "
    "encrypted notice that comes first, so it may have been forged on the network; reconnecting"
)
REFUSED_BY_POLICY = (
    "The server refuses new connections from this address for now (too many attempts). "
    "Wait a minute and try again."
)
LOST = {
    Cause.NO_GREETING: "the server did not complete the handshake",
    Cause.SILENT: "the server stopped answering",
    Cause.BAD_RECORD: "the server sent data that failed the integrity check",
    Cause.BAD_LOGIN_ANSWER: "the server's login answer was malformed",
}


def failed(message: str, *, established: bool) -> Decision:
    """A failure that retrying may fix: retried once logged in, else reported to the user."""
    if established:
        return Decision(Next.RETRY, message)
    return Decision(Next.WAIT, message, report=True)


def lost(why: str, *, established: bool) -> Decision:
    return failed(f"Connection lost: {why}.", established=established)


def after_end(
    how: int | Cause,
    reached: Reached,
    *,
    session_ended: str | None,
    established: bool,
    address: str,
    hello_timeout: float = 10.0,
) -> Decision:
    """What to do after a connection ended.

    ``how``: the server's close code, or a :class:`Cause`. ``session_ended``:
    the reason of an authenticated ``session_ended`` received on this
    connection. ``established``: logged in at least once (this connection
    included). ``address`` and ``hello_timeout`` only go into the words.
    """
    if session_ended is not None:
        message = SESSION_ENDED_MESSAGES.get(session_ended, "The server ended your session.")
        forget = session_ended in TOKEN_ENDING_REASONS
        return Decision(Next.STOP, message, reason=session_ended, forget_token=forget)
    if how is Cause.DROPPED:
        how = 0
    if isinstance(how, Cause):
        if how is Cause.NO_HELLO:
            text = NO_HELLO.format(address=address, timeout=hello_timeout)
            return failed(text, established=established)
        if how is Cause.BAD_HANDSHAKE or (how is Cause.BAD_RECORD and reached is Reached.HANDSHAKE):
            return failed(HANDSHAKE_FAILED.format(address=address), established=established)
        return lost(LOST[how], established=established)
    return _after_close(how, reached, established=established, address=address)


def _after_close(code: int, reached: Reached, *, established: bool, address: str) -> Decision:
    """A close frame with ``code`` (0: the connection dropped without one)."""
    if code == CloseCode.SESSION_ENDED:
        return lost(FORGED_4003, established=established)
    if code == CloseCode.LOGIN_FAILURES:
        if established:
            return lost("the server closed the connection (4001)", established=True)
        message = "The server closed the connection after too many failed logins."
        return Decision(Next.WAIT, message, forget_password=True)
    if code == CloseCode.NORMAL and reached is Reached.LOGGED_IN:
        return Decision(Next.RETRY_NOW, "The server renewed the connection.")
    if code == CloseCode.POLICY:
        if not established and reached is Reached.GREETED:
            return Decision(Next.WAIT)  # the 60-second login deadline passed while the user typed
        if not established and reached is Reached.HANDSHAKE:
            return Decision(Next.WAIT, REFUSED_BY_POLICY, report=True)
        message = "The server closed the connection (policy)."
        return Decision(Next.RETRY_SLOW if established else Next.WAIT, message)
    if code == CloseCode.BAD_HANDSHAKE:
        return failed(HANDSHAKE_FAILED.format(address=address), established=established)
    if reached is Reached.HANDSHAKE:
        why = "the server closed the connection during the handshake"
        return lost(why, established=established)
    if not established:
        if reached is Reached.LOGGING_IN:
            return lost("the server closed the connection during login", established=False)
        return Decision(Next.WAIT)
    return lost(
        "the server closed the connection" if code else "the network connection dropped",
        established=True,
    )


@dataclass(frozen=True)
class Verdict:
    """What the server's key means: go on (``decision`` None) or end; tell the user ``event``."""

    decision: Decision | None
    event: KeyChanged | TrustRequired | None = None
    pin: bool = False  # pin the key now: it is the one the user gave (--trust)


def after_hello(check: TrustCheck, *, expected: str | None) -> Verdict:
    """The pin check, before ``key`` is sent. ``expected``: a fingerprint given in advance.

    An unknown key waits for the user (the server allows only 10 seconds for
    ``key``, a person needs longer); a changed key is refused, never retried.
    """
    address, received = check.address, check.received
    if check.trust is Trust.TRUSTED:
        return Verdict(None)
    if check.trust is Trust.CHANGED:
        assert check.expected is not None
        return Verdict(
            Decision(Next.STOP, "The server's key changed; the connection was refused."),
            KeyChanged(address, check.expected, received),
        )
    if expected is None:
        waiting = Decision(Next.WAIT, "waiting for you to trust the server's key")
        return Verdict(waiting, TrustRequired(address, received))
    if expected == received:
        return Verdict(None, pin=True)
    message = (
        f"The server {address} presented the key {received}, not the expected {expected}. "
        "Nothing was sent. Check the fingerprint with the server's administrator."
    )
    return Verdict(Decision(Next.STOP, message), KeyChanged(address, expected, received))


def refusal_message(refused: LoginRefused) -> str:
    """A refused login or registration in the user's words (PROTOCOL.md 3.1 reasons)."""
    if refused.reason == "rate_limited":
        return rate_limited_message(refused.retry_after)
    if isinstance(refused, LoginFailed):
        return LOGIN_FAILED_MESSAGES.get(refused.reason, "The server refused the login.")
    if refused.reason == "closed":
        return "This server does not accept new accounts. Ask its administrator."
    return refused.detail or "The server refused the request."


def after_refusal(
    refused: LoginRefused, *, established: bool, resuming: bool = False, otp_given: bool = False
) -> Decision:
    """What a refused login means: the user tries again, or for a reconnect retry or stop.

    Server trouble (a rate limit, an ``internal`` error while its database or
    Redis recovers) is worth retrying; anything else means the credentials
    are no good, and the password is forgotten as soon as that is known.
    ``otp_required`` is the exception: the password was right, so it is kept
    while the user types a code (``otp_given``: one was sent and refused).
    ``resuming``: the refused login was a ``resume`` with the device's token.
    """
    text = refusal_message(refused)
    if refused.reason == "otp_required" and not resuming:
        words = OTP_REFUSED if otp_given else text
        return Decision(Next.STAY, words, ask=Ask.OTP)
    if resuming and refused.reason == "invalid_credentials":
        return Decision(
            Next.STAY, RESUME_REFUSED, forget_password=True, forget_token=True, ask=Ask.LOGIN
        )
    if not established:
        return Decision(Next.STAY, text, forget_password=True)
    if refused.reason == "rate_limited" or refused.code == "internal":
        return Decision(Next.RETRY, text, at_least=float(refused.retry_after or 0))
    message = f"Logging in again after the reconnect failed: {text} Log in again to continue."
    return Decision(Next.STOP, message, forget_password=True)


class Backoff:
    """Delays between reconnection attempts: 0.5 s doubling to 30 s, each with +-20% jitter.

    Jitter spreads the reconnections of many clients after a server restart.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._rng = rng or random.SystemRandom()
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the following one."""
        base = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return self._jittered(base)

    def longest(self) -> float:
        """The maximum delay (for 4008, where hurrying makes things worse)."""
        self._next = self.maximum
        return self._jittered(self.maximum)

    def _jittered(self, base: float) -> float:
        return base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._next = self.initial

    def delay(self, decision: Decision) -> float:
        """Seconds to wait before reconnecting after ``decision`` (a RETRY kind)."""
        if decision.next is Next.RETRY_NOW:
            delay = 0.0
        elif decision.next is Next.RETRY_SLOW:
            delay = self.longest()
        else:
            delay = self.next()
        return max(delay, decision.at_least)
