"""The terminal client's account commands: their questions, and what their results print.

``/password`` asks for the current and the new password (twice, without echo);
``/2fa on`` asks the server for a secret, draws its QR code, asks for a code
from the app and prints the backup codes once; ``/2fa off`` asks for the
password and a code. ``/devices``, ``/revoke`` and ``/logout`` ask nothing (the
controller sends them), but their results print here. A question is answered
by the next line read (:mod:`tk_client.terminal_input`); the main loop asks
:attr:`AccountDialog.question` what to read next, and holds the input while
:attr:`AccountDialog.waiting` for the server (so a code is asked only once the
QR code is on the screen).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .account import (
    CONFIRM_OTP,
    START_OTP_SETUP,
    AccountActionFailed,
    DeviceInfo,
    DeviceRevoked,
    DevicesListed,
    OtpDisabled,
    OtpEnabled,
    OtpSetupStarted,
    PasswordChanged,
    format_ts,
)
from .backup_actions import (
    NOT_TURNED_ON,
    RESET_WARNING,
    TYPE_IT_BACK,
    WHAT_THE_KEY_IS,
    BackupRefused,
    key_rows,
)
from .controller import ChatController
from .e2e.link import DeviceView
from .e2e_commands import RESET_IDENTITY_WARNING
from .terminal_input import Question
from .terminal_lines import is_yes, printable
from .terminal_qr import qr_text

CODE_ATTEMPTS = 3  # wrong codes while turning two-factor login on before starting over

CURRENT_PASSWORD = Question("Current password: ", secret=True)
NEW_PASSWORD = Question("New password: ", secret=True)
REPEAT_PASSWORD = Question("Repeat the new password: ", secret=True)
PASSWORD = Question("Password: ", secret=True)
SETUP_CODE = Question("Code shown by the app: ")
CODE = Question("One-time code (or a backup code): ")
RELOGIN_CODE = Question("One-time code to log in again: ")
RESET_SURE = Question("Are you sure you want to reset your identity? [y/N] ")
RECOVERY_KEY_BACK = Question("Recovery key (Enter alone to cancel): ")


@dataclass
class _Step:
    """One command's dialog: the questions left, the answers so far, what to do with them."""

    questions: list[Question]
    finish: Callable[[list[str]], None]
    answers: list[str]


def devices_table(
    devices: tuple[DeviceInfo, ...], keys: Mapping[str, DeviceView] | None = None
) -> str:
    """The ``/devices`` table: id, name, last seen, and which is this one and who is online;
    with ``keys`` (this device takes part in end-to-end encryption), under each device its
    key's fingerprint and whether it is approved (signed by the user's identity)."""
    if not devices:
        return (
            "No device keeps you signed in. Run the client with --remember NAME "
            "to keep this one signed in."
        )
    rows = [("ID", "NAME", "LAST SEEN", "")]
    for d in devices:
        notes = ", ".join(n for n, on in (("this device", d.current), ("online", d.online)) if on)
        rows.append((printable(d.device), printable(d.name), format_ts(d.last_seen), notes))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"Devices that keep you signed in ({len(devices)}):"]
    for i, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        lines.append(("  " + "  ".join(cells) + "  " + row[3]).rstrip())
        if keys is not None and i > 0:
            lines.append(_key_line(keys.get(devices[i - 1].device)))
    lines.append("Sign one out with /revoke ID (or its name).")
    return "\n".join(lines)


def _key_line(device: DeviceView | None) -> str:
    if device is None:
        return "      no encryption key known (it has not logged in since, or is not remembered)"
    if device.signed:
        state = "approved"
    elif device.this_device:
        state = "NOT approved yet: approve it from a device you already use"
    else:
        state = f"NOT approved: /approve {device.device} if it is yours"
    return f"      key {device.fingerprint} ({state})"


class AccountDialog:
    """The questions of ``/password`` and ``/2fa``, and the printing of account results."""

    def __init__(
        self,
        controller: ChatController,
        *,
        say: Callable[[str], None],
        error: Callable[[str], None],
        encoding: str | None,
        interactive: bool = False,
    ) -> None:
        """``say`` prints lines on stdout, ``error`` on stderr (the view's, above its last
        line); ``encoding``: stdout's, to draw the QR code with characters it can show;
        ``interactive``: a person types the input (only then does /reset-identity ask)."""
        self.controller = controller
        self.interactive = interactive
        self._say = say
        self._error = error
        self.encoding = encoding
        self._step: _Step | None = None
        self._waiting_for: str | None = None  # the action whose answer holds the input
        self._code_attempts = 0
        self._key_attempts = 0

    @property
    def question(self) -> Question | None:
        """The question to ask now, if any."""
        if self._step is None or self._waiting_for is not None:
            return None
        return self._step.questions[0]

    @property
    def waiting(self) -> bool:
        """Waiting for the server's answer before the next question: hold the input."""
        return self._waiting_for is not None

    def print(self, text: str) -> None:
        self._say(text)

    # --- commands ----------------------------------------------------------------------------

    def command(self, name: str, args: str) -> bool:
        """``/password``, ``/2fa on`` or ``/2fa off`` typed (the controller checked the args)."""
        if self._step is not None or self._waiting_for is not None:
            self._error("error: finish the question above first.")
            return True
        if name == "backup":
            self._backup(args)
        elif name == "reset-identity":
            if not self.interactive:
                return False  # the controller says to type /reset-identity yes
            self.print(RESET_IDENTITY_WARNING)
            self._start([RESET_SURE], self._reset_identity)
        elif name == "password":
            self._start([CURRENT_PASSWORD, NEW_PASSWORD, REPEAT_PASSWORD], self._change_password)
        elif args == "on":
            self._code_attempts = 0
            self._waiting_for = START_OTP_SETUP
            self.controller.start_otp_setup()
        else:
            self._start([PASSWORD, CODE], lambda a: self.controller.disable_otp(a[0], a[1]))
        return True

    def ask_code_to_log_in_again(self, answer: Callable[[str], None]) -> None:
        """A reconnect needs a one-time code (the session waits for ``answer(code)``)."""
        self._start([RELOGIN_CODE], lambda a: answer(a[0]))

    def answer(self, text: str) -> None:
        """The answer to :attr:`question`."""
        step = self._step
        if step is None:
            return
        step.questions.pop(0)
        step.answers.append(text)
        if not step.questions:
            self._step = None
            step.finish(step.answers)

    def abandon(self) -> None:
        """The input ended: questions go unanswered (a recovery key not yet typed back is
        forgotten)."""
        if self._step is not None and RECOVERY_KEY_BACK in self._step.questions:
            self.controller.cancel_backup_setup()
        self._step, self._waiting_for = None, None

    def _start(self, questions: list[Question], finish: Callable[[list[str]], None]) -> None:
        self._step = _Step(list(questions), finish, [])

    def _change_password(self, answers: list[str]) -> None:
        current, new, repeated = answers
        if new != repeated:
            self._error("error: the new passwords differ; nothing was changed. Type /password.")
            return
        self.controller.change_password(current, new)

    def _reset_identity(self, answers: list[str]) -> None:
        if is_yes(answers[0]):
            self.controller.reset_identity()
        else:
            self.print("Nothing was reset.")

    def _backup(self, step: str) -> None:
        """``/backup setup`` or ``/backup reset`` (the controller checked which fits)."""
        if step != "reset":
            self._show_recovery_key(None)
            return
        self.print(RESET_WARNING)

        def reset(answers: list[str]) -> None:
            if not answers[0]:
                self.print("Nothing was reset.")
            else:
                self._show_recovery_key(answers[0])

        self._start([PASSWORD], reset)

    def _show_recovery_key(self, password: str | None) -> None:
        """The new recovery key, once, then the question that checks the user kept it."""
        try:
            key = self.controller.begin_backup_setup()
        except BackupRefused as exc:
            self._error(f"error: {printable(str(exc))}")
            return
        rows = "\n".join(f"    {row}" for row in key_rows(key))
        self.print(f"{WHAT_THE_KEY_IS}\n\n{rows}\n\n{TYPE_IT_BACK}")
        self._key_attempts = 0
        self._start([RECOVERY_KEY_BACK], lambda a: self._typed_back(a[0], password))

    def _typed_back(self, typed: str, password: str | None) -> None:
        if not typed.strip():
            self.controller.cancel_backup_setup()
            self.print(f"{NOT_TURNED_ON} Type /backup setup to start again.")
            return
        try:
            self.controller.finish_backup_setup(typed, password)
        except BackupRefused as exc:
            self._key_attempts += 1
            self._error(f"error: {printable(str(exc))}")
            if self._key_attempts < CODE_ATTEMPTS:
                self._start([RECOVERY_KEY_BACK], lambda a: self._typed_back(a[0], password))
            else:
                self.controller.cancel_backup_setup()
                self.print(f"{NOT_TURNED_ON} Type /backup setup to start again.")
            return
        self.print("Turning the key backup on\u2026")

    def _confirm(self, answers: list[str]) -> None:
        self._waiting_for = CONFIRM_OTP
        self.controller.confirm_otp(answers[0])

    # --- results -----------------------------------------------------------------------------

    def event(self, event: Any) -> None:
        """An account event from the controller: print it, and go on with the dialog."""
        if isinstance(event, AccountActionFailed):
            self._failed(event)
        elif isinstance(event, OtpSetupStarted):
            self._waiting_for = None
            self._show_setup(event)
            self._start([SETUP_CODE], self._confirm)
        elif isinstance(event, OtpEnabled):
            self._waiting_for = None
            self._show_backup_codes(event.backup_codes)
        elif isinstance(event, PasswordChanged):
            self.print("Your password was changed. Your other devices were signed out.")
        elif isinstance(event, OtpDisabled):
            self.print("Two-factor login is off: logging in needs only your password.")
        elif isinstance(event, DevicesListed):
            self.print(devices_table(event.devices, self._keys()))
        elif isinstance(event, DeviceRevoked):
            self.print(f"The device {printable(event.device)} was signed out.")

    def _keys(self) -> dict[str, DeviceView] | None:
        """This user's devices with their end-to-end keys; None without a link."""
        if self.controller.e2e is None:
            return None
        return {d.device: d for d in self.controller.e2e_devices(self.controller.username or "")}

    def _failed(self, event: AccountActionFailed) -> None:
        if event.action == CONFIRM_OTP and self._waiting_for == CONFIRM_OTP:
            self._waiting_for = None
            self._code_attempts += 1
            again = event.code in ("invalid_otp", "bad_request")
            if again and self._code_attempts < CODE_ATTEMPTS:
                self._error(f"error: {printable(event.message)}")
                self._start([SETUP_CODE], self._confirm)
                return
        if event.action == self._waiting_for:
            self._waiting_for = None
        self._error(f"error: {printable(event.message)}")

    def _show_setup(self, event: OtpSetupStarted) -> None:
        encoding = self.encoding
        self.print(
            "Turning on two-factor login. Scan this QR code with an authenticator app "
            "(or type the secret into it):"
        )
        self.print(qr_text(event.uri, encoding))
        self.print(f"Secret: {event.secret}")
        self.print(f"Link: {event.uri}")
        self.print("Then type the 6-digit code that the app shows.")

    def _show_backup_codes(self, codes: tuple[str, ...]) -> None:
        lines = [
            "Two-factor login is on. From now on logging in asks for a code from the app "
            "(--otp CODE, or at the prompt); a device remembered with --remember needs none.",
            "Backup codes: each works once in place of a code, if you lose the phone. "
            "Keep them somewhere safe; they are not shown again:",
        ]
        lines += [f"  {printable(code)}" for code in codes]
        self.print("\n".join(lines))
