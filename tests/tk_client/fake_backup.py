"""The key backup's side of a fake link (4.13), for the controller, terminal and window tests.

It keeps no keys: it hands out one fixed recovery key, checks what is typed back the way
the real link does (spaces, hyphens and case aside), refuses a typo at once, and records
what it was asked; the test then plays the server by giving the link's events.
"""

from __future__ import annotations

from typing import Any

from tk_client.e2e.backup import BackupStatus
from tk_client.e2e.errors import E2EError

from .fake_e2e import FakeLink

RECOVERY_KEY = "EJKW 4XQP M7RT 2ZCD HN5V BG3L SYFA 6UOI Q2WE RT7Y PLKJ HGF4 DSAZ XC3V"
BASE32 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
TYPO = "This is not a recovery key: check it for a typo."
NOT_THE_KEY_SHOWN = "That is not the recovery key shown: compare it group by group, type it again."
NOT_APPROVED = (
    "This device is not approved yet: approve it from one of your other devices first, "
    "or enter your recovery key."
)


def bare(text: str) -> str:
    """A recovery key as the real link compares it: no spaces or hyphens, upper case."""
    return "".join(text.split()).replace("-", "").upper()


class BackupMixin:
    """``backup_*`` and the three steps of :class:`~tk_client.e2e.link.E2ELink`."""

    def setup_backup(self, status: BackupStatus = BackupStatus.NONE) -> None:
        self.backup_status = status
        self.backup_info: tuple[int, Any, str] | None = None
        self.can_back_up = True
        self.shown: str | None = None
        self.published: list[tuple[str, str | None]] = []
        self.restores: list[str] = []
        self.events_at_once: list[Any] = []  # what the next step returns (else nothing)

    def begin_backup_setup(self) -> str:
        if not self.can_back_up:
            raise E2EError(NOT_APPROVED)
        self.shown = RECOVERY_KEY
        return RECOVERY_KEY

    def finish_backup_setup(self, typed: str, password: str | None) -> list[Any]:
        if self.shown is None or bare(typed) != bare(self.shown):
            raise ValueError(NOT_THE_KEY_SHOWN)
        if self.backup_status in (BackupStatus.ON, BackupStatus.NEEDS_KEY) and not password:
            raise ValueError("Your password is needed to reset the key backup.")
        self.published.append((self.shown, password))
        self.shown = None
        events, self.events_at_once = self.events_at_once, []
        return events

    def cancel_backup_setup(self) -> None:
        self.shown = None  # as the real link forgets the recovery key

    def restore_with_recovery_key(self, text: str) -> list[Any]:
        typed = bare(text)
        if len(typed) != 56 or not set(typed) <= BASE32:
            raise ValueError(TYPO)
        self.restores.append(typed)
        events, self.events_at_once = self.events_at_once, []
        return events


class FakeBackupLink(BackupMixin, FakeLink):
    """:class:`.fake_e2e.FakeLink` with a key backup."""

    def __init__(self, session: Any, user: str, device: str) -> None:
        super().__init__(session, user, device)
        self.approved = True
        self.setup_backup()
