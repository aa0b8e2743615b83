"""What the user can do about the key backup and the recovery key (section 4.13). No tkinter.

A mixin of :class:`~tk_client.controller.ChatController` over the end-to-end link: the
desktop's Key backup section and windows, and the terminal's ``/backup`` and
``/recover``, call these. Set-up is two steps because the recovery key is shown once
and the user must type it back before the backup is turned on:
:meth:`begin_backup_setup` gives the key to show, :meth:`finish_backup_setup` takes what
was typed (and the password, for a reset). What the server answers comes later, as the
link's events (turned on, restored, a problem, reset from another device): each becomes
a notice here, in words, and goes to the view's ``e2e_event`` for its windows.

The steps a view waits on raise :class:`BackupRefused` (words to show beside the step)
rather than posting a notice, so the desktop can show the error in the window where
the key was typed; the commands turn it into a notice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .account import format_ts
from .commands import help_text
from .e2e.backup import (
    BackupChanged,
    BackupEnabled,
    BackupProblem,
    BackupRecovered,
    BackupRestored,
    BackupRestoreProgress,
    BackupStatus,
)
from .e2e.engine import Notice
from .e2e.errors import E2EError
from .e2e.link import WAIT_FOR_APPROVAL, E2ELink
from .e2e_actions import E2EActions
from .secure import NEEDS_A_DEVICE

BACKUP_EVENTS = (
    BackupEnabled,
    BackupRestoreProgress,
    BackupRestored,
    BackupProblem,
    BackupChanged,
    BackupRecovered,
)

WHAT_THE_KEY_IS = (
    "This is your recovery key. With it, a new device reads your encrypted conversations "
    "even if you have lost every other device: type it there (Enter recovery key\u2026, or "
    "/recover). Nobody else has it, not even the server: if you lose it and your devices, "
    "that history cannot be read again. Keep it somewhere safe, away from this computer "
    "(a password manager, or on paper). It is shown only this once."
)
RESET_WARNING = (
    "Resetting the key backup makes a new recovery key: the old one stops working, and "
    "your other devices are told that the backup was reset. Your password is needed."
)
TYPE_IT_BACK = (
    "Type your recovery key to check that you kept it (spaces and capitals do not matter)."
)
NOT_TURNED_ON = "Key backup was not turned on; the key shown is not used."
RECOVERY_HINT = (
    "If you set up a key backup, you can enter your recovery key instead: /recover "
    "followed by the key (in the desktop client also Enter recovery key\u2026 above the "
    "conversation)."
)

STATUS_HINTS = {  # what /backup adds to the state: what to type next
    BackupStatus.NONE: " Type /backup setup to turn it on.",
    BackupStatus.ON: " Type /backup reset to make a new recovery key.",
    BackupStatus.NEEDS_KEY: " Type /recover followed by your recovery key.",
}


class BackupRefused(Exception):
    """A key backup step was not taken: the words say why and what to do (shown to the user)."""


def progress_text(event: BackupRestoreProgress) -> str:
    if event.total:
        return f"Restoring keys from the backup: {event.done} of {event.total}\u2026"
    return f"Restoring keys from the backup: {event.done}\u2026"


def key_rows(key: str, per_row: int = 7) -> list[str]:
    """The recovery key's groups of 4 in rows (two rows of 7 for 4.13's 14 groups)."""
    groups = key.split()
    return [" ".join(groups[i : i + per_row]) for i in range(0, len(groups), per_row)]


class BackupActions(E2EActions):
    """The key backup's state in words, its set-up, reset and recovery, and their notices."""

    # --- state --------------------------------------------------------------------------------

    @property
    def backup_status(self) -> BackupStatus | None:
        """None: this device has no end-to-end link (not remembered), so no backup."""
        return self.e2e.backup_status if self.e2e is not None else None

    @property
    def backup_info(self) -> tuple[int, str | None, str | None] | None:
        """(version, when it was made, the device that made it) of the current backup."""
        return self.e2e.backup_info if self.e2e is not None else None

    @property
    def can_recover(self) -> bool:
        """A backup exists and this device lacks its key: the recovery key would help."""
        return self.backup_status is BackupStatus.NEEDS_KEY

    @property
    def can_back_up(self) -> bool:
        """This device may set up or reset the backup: it is approved (holds the user key)."""
        return self.e2e is not None and self.e2e.approved

    def backup_status_text(self) -> str:
        """The key backup's state as a sentence (both clients)."""
        status = self.backup_status
        if status is None:
            return NEEDS_A_DEVICE
        if status is BackupStatus.UNKNOWN:
            return "Asking the server whether you have a key backup\u2026"
        if status is BackupStatus.NONE:
            first = "" if self.can_back_up else " once this device is approved"
            return (
                "Key backup is off. Without it, if you lose this device and have no other, "
                "the history of your encrypted conversations cannot be read again. Set it "
                f"up{first} to get a recovery key."
            )
        made = self._made()
        if status is BackupStatus.ON:
            return (
                f"Key backup is on{made}: the keys of your encrypted conversations are kept "
                "on the server, locked so that only your devices and your recovery key open "
                "them."
            )
        return (
            f"You have a key backup{made}, but this device does not hold its key yet: "
            "approve this device from one of your others, or enter your recovery key."
        )

    def _made(self) -> str:
        info = self.backup_info
        if info is None:
            return ""
        version, created, device = info
        when = format_ts(created) if isinstance(created, str) else ""
        parts = [f"version {version}"]
        if when and when != "-":
            parts.append(f"made {when}")
        if device:
            here = self.e2e is not None and device == self.e2e.device
            parts.append("on this device" if here else f"on device {device}")
        return f" ({', '.join(parts)})"

    # --- the steps ----------------------------------------------------------------------------

    def begin_backup_setup(self) -> str:
        """A new recovery key, to show once (14 groups of 4); nothing is published yet.
        :class:`BackupRefused` when this device cannot (no link, not approved)."""
        link = self._backup_link()
        try:
            return link.begin_backup_setup()
        except (ValueError, E2EError) as exc:
            raise BackupRefused(str(exc)) from None

    def finish_backup_setup(self, typed: str, password: str | None = None) -> None:
        """The user typed the key back: publish the backup (``password`` for a reset).
        :class:`BackupRefused` when ``typed`` is not the key shown; the server's answer
        follows as ``BackupEnabled`` or ``BackupProblem``."""
        link = self._backup_link()
        try:
            events = link.finish_backup_setup(typed, password)
        except (ValueError, E2EError) as exc:
            raise BackupRefused(str(exc)) from None
        self._e2e_events(events)

    def cancel_backup_setup(self) -> None:
        """The set-up ended without the backup turned on here (closed, cancelled, too many
        wrong tries): the recovery key shown is forgotten. Safe to call at any time."""
        if self.e2e is not None:
            self.e2e.cancel_backup_setup()

    def restore_with_recovery_key(self, text: str) -> None:
        """Recover with the typed recovery key: :class:`BackupRefused` at once for a typo;
        then ``BackupRestoreProgress`` and ``BackupRestored``, or ``BackupProblem``."""
        if not text.strip():
            raise BackupRefused("Type your recovery key: 14 groups of 4 letters and digits.")
        link = self._backup_link()
        try:
            events = link.restore_with_recovery_key(text)
        except (ValueError, E2EError) as exc:
            raise BackupRefused(str(exc)) from None
        self._e2e_events(events)

    def _backup_link(self) -> E2ELink:
        if self.e2e is None:
            raise BackupRefused(NEEDS_A_DEVICE)
        return self.e2e

    # --- the link's events -------------------------------------------------------------------

    def _e2e_events(self, events: Iterable[Any]) -> None:
        rest: list[Any] = []
        for event in events:
            if isinstance(event, BACKUP_EVENTS):
                if rest:
                    super()._e2e_events(rest)
                    rest = []
                self._backup_event(event)
            else:
                rest.append(event)
                waiting = isinstance(event, Notice) and event.text == WAIT_FOR_APPROVAL
                if waiting and self.backup_status is not BackupStatus.NONE:
                    rest.append(Notice(RECOVERY_HINT))
        if rest:
            super()._e2e_events(rest)

    def _backup_event(self, event: Any) -> None:
        """Each says what happened in words (``text``), but progress (the windows show it)
        and a reset made here (its ``BackupEnabled`` says so)."""
        elsewhere = isinstance(event, BackupChanged) and not event.by_me
        if isinstance(event, BackupProblem) or (elsewhere and event.reset):
            self._notice(event.text, "error")
        elif isinstance(event, BackupEnabled | BackupRestored | BackupRecovered) or elsewhere:
            self._notice(event.text)
        self.view.e2e_event(event)

    # --- the commands -------------------------------------------------------------------------

    def _cmd_backup(self, args: str) -> bool:
        """``/backup``: the state; ``/backup setup``, ``/backup reset``: the view asks."""
        word = args.strip().lower()
        if word not in ("", "setup", "reset"):
            self._notice(help_text("backup"), "error")
            return False
        if self._link_or_say() is None:
            return False
        status = self.backup_status
        if not word:
            hint = STATUS_HINTS.get(status, "") if status is not None else ""
            self._notice(self.backup_status_text() + hint)
            return True
        if word == "setup" and status in (BackupStatus.ON, BackupStatus.NEEDS_KEY):
            self._notice(
                "You have a key backup already. To make a new recovery key (the old one "
                "then stops working), type /backup reset.",
                "error",
            )
            return False
        if word == "reset" and status is BackupStatus.NONE:
            self._notice("You have no key backup yet: type /backup setup to turn it on.", "error")
            return False
        if self.view.account_command("backup", word):
            return True
        self._notice("Open the Account window to set up or reset the key backup.", "error")
        return False

    def _cmd_recover(self, args: str) -> bool:
        """``/recover KEY...``: the recovery key, typed with or without its spaces."""
        if not args.strip():
            self._notice(help_text("recover"), "error")
            return False
        if self._link_or_say() is None:
            return False
        if self.backup_status is BackupStatus.ON:
            self._notice("This device holds your backup key already: there is nothing to recover.")
            return False
        try:
            self.restore_with_recovery_key(args)
        except BackupRefused as exc:
            self._notice(str(exc), "error")
            return False
        self._notice("Checking the recovery key against your key backup\u2026")
        return True
