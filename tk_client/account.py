"""The user's own account: password, two-factor login, devices (PROTOCOL.md 3.4). No tkinter.

:class:`AccountActions` sends the account requests through the session and turns
their answers into the events below, which the controller passes to the view
(:meth:`ControllerView.account_event`): the desktop's Account window and the
terminal's ``/password``, ``/2fa``, ``/devices``, ``/revoke`` and ``/logout`` read
the same events. Every refusal becomes :class:`AccountActionFailed` with words
that say what to do next, so no view interprets error codes itself.

Secrets pass through here but are never kept: the password and codes go into
the request and are gone once it is answered; the TOTP secret and the backup
codes are handed to the view once (``repr`` hides them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chatproto.limits import MAX_OTP_LENGTH

from .events import LoggedIn, NotConnected, RequestState, RequestStatus, RequestUpdate

# The actions, by the controller method that starts them (AccountActionFailed.action).
CHANGE_PASSWORD = "change_password"  # noqa: S105 - an action's name, not a password
START_OTP_SETUP = "start_otp_setup"
CONFIRM_OTP = "confirm_otp"
DISABLE_OTP = "disable_otp"
REFRESH_DEVICES = "refresh_devices"
REVOKE_DEVICE = "revoke_device"
LOG_OUT = "log_out"


def format_ts(ts: str) -> str:
    """``2026-12-03T18:00:00.000Z`` as ``2026-12-03 18:00 UTC`` (anything else as it is)."""
    if len(ts) >= 16 and ts[10] == "T" and ts.endswith("Z"):
        return f"{ts[:10]} {ts[11:16]} UTC"
    return ts or "-"


# --- the events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """One remembered device of the account (``created``, ``last_seen``: the server's ``ts``)."""

    device: str
    name: str
    created: str
    last_seen: str
    current: bool  # the device this session logged in as
    online: bool  # it has a logged-in session now


@dataclass(frozen=True)
class PasswordChanged:
    """The password is changed; every other device was signed out, this one stays."""


@dataclass(frozen=True)
class OtpSetupStarted:
    """Show ``uri`` as a QR code (and ``secret`` for typing in), then ask for a code."""

    secret: str = field(repr=False)
    uri: str = field(repr=False)


@dataclass(frozen=True)
class OtpEnabled:
    """Two-factor login is on. Show the backup codes once: they are not shown again."""

    backup_codes: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class OtpDisabled:
    """Two-factor login is off."""


@dataclass(frozen=True)
class DevicesListed:
    """The account's devices, most recently used first."""

    devices: tuple[DeviceInfo, ...]


@dataclass(frozen=True)
class DeviceRevoked:
    """``device`` is signed out: its token no longer works. A fresh list follows."""

    device: str


@dataclass(frozen=True)
class AccountActionFailed:
    """``action`` (one of the names above) was refused; ``message`` says what to do next."""

    action: str
    code: str
    message: str


AccountEvent = (
    PasswordChanged
    | OtpSetupStarted
    | OtpEnabled
    | OtpDisabled
    | DevicesListed
    | DeviceRevoked
    | AccountActionFailed
)

# --- the words of refusals ---------------------------------------------------------------------

TURN_ON_2FA = (
    "This server requires two-factor login: turn it on first (/2fa on in the terminal, "
    "the Account window in the desktop client)."
)
OFFLINE = "Not connected to the server; try again once the connection is back."
_WORDS: dict[tuple[str, str], str] = {
    (CHANGE_PASSWORD, "invalid_credentials"): "The current password is wrong; type it again.",
    (CHANGE_PASSWORD, "invalid_password"): "The server refused the new password: {message} "
    "Choose another one.",
    (START_OTP_SETUP, "bad_request"): "Two-factor login is already on for this account. "
    "To set it up again, turn it off first.",
    (CONFIRM_OTP, "invalid_otp"): "That code is not right, or it expired. Type the current "
    "6-digit code that the authenticator app shows (check that the phone's clock is right).",
    (CONFIRM_OTP, "bad_request"): "No setup is waiting for a code: start again.",
    (DISABLE_OTP, "invalid_credentials"): "The password is wrong; type it again.",
    (DISABLE_OTP, "invalid_otp"): "That code is not right, or it expired. Type the current "
    "code from the authenticator app, or an unused backup code.",
    (REVOKE_DEVICE, "unknown_device"): "There is no such device; it may have been signed out "
    "already. The list is refreshed.",
}
_WHAT = {
    CHANGE_PASSWORD: "The password was not changed",
    START_OTP_SETUP: "Two-factor login could not be set up",
    CONFIRM_OTP: "Two-factor login was not turned on",
    DISABLE_OTP: "Two-factor login was not turned off",
    REFRESH_DEVICES: "The list of devices could not be fetched",
    REVOKE_DEVICE: "The device was not signed out",
    LOG_OUT: "You were not logged out",
}


def refusal_words(action: str, code: str, server_words: str) -> str:
    """A refused account action in the user's words, saying what to do next."""
    if code == "forbidden" and action != LOG_OUT:
        return TURN_ON_2FA
    if code == "offline":
        return f"{_WHAT[action]}: {OFFLINE}"
    if code == "bad_request" and "unknown message type" in server_words:
        return f"{_WHAT[action]}: this server is an older version that does not offer it."
    template = _WORDS.get((action, code))
    if template is not None:
        return template.format(message=server_words.rstrip(". ") + ".")
    words = server_words.rstrip(". ") or "the server refused it"
    return f"{_WHAT[action]}: {words}."


def devices_from_wire(raw: Any) -> tuple[DeviceInfo, ...]:
    """The ``devices`` answer's list; malformed entries are left out."""
    devices = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        device, name = item.get("device"), item.get("name")
        if not isinstance(device, str) or not isinstance(name, str):
            continue
        created, last_seen = item.get("created"), item.get("last_seen")
        devices.append(
            DeviceInfo(
                device,
                name,
                created if isinstance(created, str) else "",
                last_seen if isinstance(last_seen, str) else "",
                item.get("current") is True,
                item.get("online") is True,
            )
        )
    return tuple(devices)


# --- the actions -------------------------------------------------------------------------------


class AccountSession(Protocol):
    """What the account actions need from a session (ChatSession has it)."""

    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus: ...


class AccountActions:
    """Account requests out, :data:`AccountEvent` in ``report``. Owned by the controller."""

    def __init__(self, session: AccountSession, report: Callable[[AccountEvent], None]) -> None:
        self.session = session
        self.report = report
        # What the client has seen of two-factor login: None until a login or an answer tells.
        self.two_factor: bool | None = None
        self.otp_enrolment_required = False
        self.devices: tuple[DeviceInfo, ...] | None = None  # the last list, None before one
        self._pending: dict[str, tuple[str, str]] = {}  # request id -> (action, argument)

    def logged_in(self, event: LoggedIn) -> None:
        """A ``login_ok``: what it tells of two-factor login."""
        self.otp_enrolment_required = event.otp_enrolment_required
        if event.with_otp:
            self.two_factor = True
        elif event.otp_enrolment_required:
            self.two_factor = False

    # --- the user's actions (each reports one event, or AccountActionFailed) ------------------

    def change_password(self, current: str, new: str) -> None:
        if not current or not new:
            self._refuse(CHANGE_PASSWORD, "bad_request", "Type the current and the new password.")
            return
        if current == new:
            message = "The new password is the same as the current one; choose another one."
            self._refuse(CHANGE_PASSWORD, "bad_request", message)
            return
        self._ask(CHANGE_PASSWORD, "change_password", password=current, new_password=new)

    def start_otp_setup(self) -> None:
        self._ask(START_OTP_SETUP, "otp_setup")

    def confirm_otp(self, code: str) -> None:
        code = "".join(code.split())
        if not code or len(code) > MAX_OTP_LENGTH:
            message = "Type the 6-digit code that the authenticator app shows."
            self._refuse(CONFIRM_OTP, "bad_request", message)
            return
        self._ask(CONFIRM_OTP, "otp_confirm", code=code)

    def disable_otp(self, password: str, code: str) -> None:
        code = code.strip()
        if not password or not code or len(code) > MAX_OTP_LENGTH:
            message = (
                "Type your password and the current code from the authenticator app "
                "(or an unused backup code)."
            )
            self._refuse(DISABLE_OTP, "bad_request", message)
            return
        self._ask(DISABLE_OTP, "otp_disable", password=password, code=code)

    def refresh_devices(self) -> None:
        self._ask(REFRESH_DEVICES, "devices")

    def revoke_device(self, device: str) -> None:
        if not device:
            self._refuse(REVOKE_DEVICE, "bad_request", "Name the device to sign out.")
            return
        self._ask(REVOKE_DEVICE, "revoke", argument=device, device=device)

    def failed_to_log_out(self) -> None:
        """The logout could not be sent (offline): nothing changed."""
        self._refuse(LOG_OUT, "offline", refusal_words(LOG_OUT, "offline", ""))

    # --- answers -------------------------------------------------------------------------------

    def handle(self, update: RequestUpdate) -> bool:
        """Take the update if it concerns an account request (True); else leave it."""
        request = update.request
        if request.id not in self._pending:
            return False
        if request.state not in (RequestState.DONE, RequestState.FAILED):
            return True  # queued, sent: nothing to show yet
        action, argument = self._pending.pop(request.id)
        if request.state is RequestState.FAILED:
            code = request.code or "failed"
            self._refuse(action, code, refusal_words(action, code, request.error or ""))
            if request.code == "unknown_device":
                self.refresh_devices()
            return True
        self._answered(action, argument, update.answer or {})
        return True

    def _answered(self, action: str, argument: str, answer: dict[str, Any]) -> None:
        if action == CHANGE_PASSWORD:
            self.report(PasswordChanged())
        elif action == START_OTP_SETUP:
            secret, uri = answer.get("secret"), answer.get("uri")
            if not isinstance(secret, str) or not isinstance(uri, str):
                words = refusal_words(action, "bad_answer", "the server's answer was incomplete")
                self._refuse(action, "bad_answer", words)
                return
            self.report(OtpSetupStarted(secret, uri))
        elif action == CONFIRM_OTP:
            codes = answer.get("backup_codes")
            listed = codes if isinstance(codes, list) else []
            backup = tuple(c for c in listed if isinstance(c, str))
            self.two_factor, self.otp_enrolment_required = True, False
            self.report(OtpEnabled(backup))
        elif action == DISABLE_OTP:
            self.two_factor = False
            self.report(OtpDisabled())
        elif action == REFRESH_DEVICES:
            self.devices = devices_from_wire(answer.get("devices"))
            self.report(DevicesListed(self.devices))
        elif action == REVOKE_DEVICE:
            current = any(d.current and d.device == argument for d in self.devices or ())
            self.report(DeviceRevoked(argument))
            if not current:  # else the server ends this session now: no list to show
                self.refresh_devices()

    # --- helpers -------------------------------------------------------------------------------

    def _ask(self, action: str, type_: str, *, argument: str = "", **fields: Any) -> None:
        try:
            # Not durable: a password change should not wait in an outbox through an outage.
            status = self.session.request(type_, durable=False, **fields)
        except NotConnected:
            self._refuse(action, "offline", refusal_words(action, "offline", ""))
            return
        self._pending[status.id] = (action, argument)

    def _refuse(self, action: str, code: str, message: str) -> None:
        """Report a refusal; ``message`` is already in the user's words."""
        self.report(AccountActionFailed(action, code, message))
