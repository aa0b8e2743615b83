"""The key backup in the terminal client (docs/protocol.md 4.13), without a server.

The real controller, printer and account dialog over a fake session and a fake link with
a key backup (:mod:`.fake_backup`): what ``/backup`` and ``/recover`` ask of the link, the
questions they ask, and the lines a user reads.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from tk_client.commands import help_text
from tk_client.controller import ChatController
from tk_client.e2e.backup import (
    BackupChanged,
    BackupEnabled,
    BackupProblem,
    BackupRestored,
    BackupRestoreProgress,
    BackupStatus,
)
from tk_client.e2e.engine import Notice
from tk_client.e2e.link import WAIT_FOR_APPROVAL
from tk_client.events import LoggedIn
from tk_client.secure import NEEDS_A_DEVICE
from tk_client.terminal_account import AccountDialog
from tk_client.terminal_view import TerminalView

from .fake_backup import NOT_APPROVED, NOT_THE_KEY_SHOWN, RECOVERY_KEY, TYPO, FakeBackupLink
from .test_controller import ROOMS, FakeSession, push


class Terminal:
    """One terminal client with a key backup: controller, printer, dialog, what it printed."""

    def __init__(self, *, with_device: bool = True) -> None:
        self.session = FakeSession()
        self.out, self.err = io.StringIO(), io.StringIO()
        self.view = TerminalView(self.out, self.err)
        self.links: list[FakeBackupLink] = []

        def opener(user: str, name: str) -> FakeBackupLink:
            self.links.append(FakeBackupLink(self.session, user, name))
            return self.links[-1]

        self.controller = ChatController(
            self.session, self.view, e2e_opener=opener, autoload_history=False
        )
        self.view.controller = self.controller
        self.dialog = AccountDialog(
            self.controller,
            say=self.view.say,
            error=self.view.notify,
            encoding=None,
            interactive=True,
        )
        self.view.on_account_command = self.dialog.command
        device_id = "d1" if with_device else None
        self.controller.handle(LoggedIn("me", ROOMS, again=False, device=device_id))

    @property
    def link(self) -> FakeBackupLink:
        return self.links[-1]

    def type(self, line: str) -> bool:
        return self.controller.submit(line)

    def answer(self, text: str) -> None:
        assert self.dialog.question is not None, "no question is asked"
        self.dialog.answer(text)

    def events(self, *events: Any) -> None:
        """The link reports ``events`` (as it does for a pushed message)."""
        self.link.next_events = list(events)
        push(self.controller, {"type": "devices_changed", "users": []})

    def printed(self) -> str:
        return self.out.getvalue()

    def errors(self) -> list[str]:
        return self.err.getvalue().splitlines()


@pytest.fixture
def terminal():
    return Terminal()


# --- /backup ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "words", "hint"),
    [
        (BackupStatus.NONE, "Key backup is off.", "Type /backup setup to turn it on."),
        (BackupStatus.ON, "Key backup is on (version 3", "Type /backup reset"),
        (BackupStatus.NEEDS_KEY, "this device does not hold its key", "Type /recover"),
        (BackupStatus.UNKNOWN, "Asking the server", ""),
    ],
)
def test_backup_says_the_state_in_words_and_what_to_type(terminal, status, words, hint):
    terminal.link.backup_status = status
    terminal.link.backup_info = (3, "2026-12-04T21:00:00.000Z", "LAPTOP")

    assert terminal.type("/backup")

    printed = terminal.printed()
    assert words in printed
    assert hint in printed
    if status is BackupStatus.ON:
        assert "(version 3, made 2026-12-04 21:00 UTC, on device LAPTOP)" in printed


def test_setup_prints_the_key_once_in_two_rows_and_asks_for_it_back(terminal):
    assert terminal.type("/backup setup")

    printed = terminal.printed()
    groups = RECOVERY_KEY.split()
    assert f"    {' '.join(groups[:7])}\n    {' '.join(groups[7:])}\n" in printed
    assert "shown only this once" in printed
    assert printed.count(groups[0]) == 1
    assert terminal.dialog.question is not None
    assert not terminal.dialog.question.secret  # the key itself is on the screen already

    # typed back in lower case, without its spaces: accepted
    terminal.answer(RECOVERY_KEY.replace(" ", "").lower())
    assert terminal.link.published == [(RECOVERY_KEY, None)]
    assert "Turning the key backup on" in terminal.printed()

    terminal.events(BackupEnabled(1))
    assert BackupEnabled(1).text in terminal.printed()


def test_a_wrong_key_typed_back_is_refused_and_asked_again_then_given_up(terminal):
    terminal.type("/backup setup")

    terminal.answer("EJKW 4XQP")
    assert terminal.errors()[-1] == f"error: {NOT_THE_KEY_SHOWN}"
    terminal.answer("ABCD")
    terminal.answer("WXYZ")

    assert terminal.link.published == [] and terminal.link.shown is None  # key forgotten
    assert terminal.dialog.question is None
    assert "Key backup was not turned on" in terminal.printed()
    assert "Type /backup setup to start again." in terminal.printed()


def test_enter_alone_cancels_the_setup(terminal):
    terminal.type("/backup setup")
    terminal.answer("")

    assert terminal.link.published == [] and terminal.link.shown is None  # key forgotten
    assert "Key backup was not turned on" in terminal.printed()


def test_the_input_ending_before_the_key_is_typed_back_forgets_it(terminal):
    terminal.type("/backup setup")
    assert terminal.link.shown == RECOVERY_KEY

    terminal.dialog.abandon()

    assert terminal.link.shown is None and terminal.link.published == []


def test_reset_warns_and_asks_the_password_without_echo_first(terminal):
    terminal.link.backup_status = BackupStatus.ON

    assert terminal.type("/backup reset")

    assert "the old one stops working" in terminal.printed()
    assert RECOVERY_KEY not in terminal.printed()  # not before the password
    question = terminal.dialog.question
    assert question is not None and question.secret and "Password" in question.text
    terminal.answer("me-password")
    assert RECOVERY_KEY.split()[0] in terminal.printed()
    terminal.answer(RECOVERY_KEY)
    assert terminal.link.published == [(RECOVERY_KEY, "me-password")]


def test_reset_without_a_password_resets_nothing(terminal):
    terminal.link.backup_status = BackupStatus.ON
    terminal.type("/backup reset")
    terminal.answer("")

    assert "Nothing was reset." in terminal.printed()
    assert terminal.link.shown is None


def test_setup_when_a_backup_exists_points_to_reset(terminal):
    terminal.link.backup_status = BackupStatus.ON

    assert terminal.type("/backup setup") is False

    assert "/backup reset" in terminal.errors()[-1]
    assert terminal.link.shown is None


def test_a_device_that_may_not_back_up_says_why(terminal):
    terminal.link.can_back_up = False

    terminal.type("/backup setup")

    assert terminal.errors()[-1] == f"error: {NOT_APPROVED}"
    assert terminal.dialog.question is None


def test_a_wrong_password_comes_back_as_a_problem_in_words(terminal):
    terminal.link.backup_status = BackupStatus.ON
    terminal.type("/backup reset")
    terminal.answer("wrong")
    terminal.answer(RECOVERY_KEY)

    terminal.events(BackupProblem("Wrong password: the key backup was not reset."))

    assert terminal.errors()[-1] == "error: Wrong password: the key backup was not reset."


def test_backup_with_a_wrong_word_shows_the_usage(terminal):
    assert terminal.type("/backup on") is False
    assert terminal.errors()[-1] == f"error: {help_text('backup')}"


# --- /recover ---------------------------------------------------------------------------------


def test_recover_takes_the_key_with_its_spaces_and_prints_progress_and_result(terminal):
    terminal.link.backup_status = BackupStatus.NEEDS_KEY

    assert terminal.type(f"/recover {RECOVERY_KEY.lower()}")

    assert terminal.link.restores == [RECOVERY_KEY.replace(" ", "")]
    assert "Checking the recovery key" in terminal.printed()
    terminal.events(BackupRestoreProgress(500, 1200))
    assert "* Restoring keys from the backup: 500 of 1200\u2026" in terminal.errors()
    terminal.events(BackupRestored(1198, 2))
    printed = terminal.printed()
    assert "1198 keys were restored from the key backup." in printed
    assert "2 keys in the backup could not be verified and were skipped." in printed


def test_recover_refuses_a_typo_at_once(terminal):
    terminal.link.backup_status = BackupStatus.NEEDS_KEY

    assert terminal.type("/recover EJKW 4XQP M7RT") is False

    assert terminal.errors()[-1] == f"error: {TYPO}"
    assert terminal.link.restores == []


def test_a_wrong_recovery_key_is_said_in_words(terminal):
    terminal.link.backup_status = BackupStatus.NEEDS_KEY
    terminal.type(f"/recover {RECOVERY_KEY}")

    terminal.events(
        BackupProblem("This recovery key does not match your key backup. Nothing was changed.")
    )

    assert "does not match your key backup" in terminal.errors()[-1]


def test_recover_alone_shows_the_usage(terminal):
    assert terminal.type("/recover") is False
    assert terminal.errors()[-1] == f"error: {help_text('recover')}"


def test_recover_on_a_device_that_holds_the_key_does_nothing(terminal):
    terminal.link.backup_status = BackupStatus.ON

    assert terminal.type(f"/recover {RECOVERY_KEY}") is False
    assert terminal.link.restores == []


# --- notices --------------------------------------------------------------------------------


def test_a_reset_from_another_device_is_announced_once(terminal):
    terminal.events(BackupChanged(4, "PHONE", "my phone", by_me=False))

    assert terminal.errors()[-1] == (
        "error: Your key backup was reset from my phone (PHONE). "
        "Your old recovery key no longer works."
    )


def test_a_first_backup_made_on_another_device_is_not_called_a_reset(terminal):
    terminal.events(BackupChanged(1, "PHONE", "my phone", by_me=False))

    said = terminal.err.getvalue() + terminal.printed()
    assert "Key backup was turned on from my phone (PHONE)." in terminal.printed()
    assert "reset" not in said and "old recovery key" not in said


def test_a_reset_made_here_is_not_announced_as_from_elsewhere(terminal):
    terminal.events(BackupChanged(4, "d1", "this one", by_me=True))

    assert "was reset from" not in terminal.err.getvalue() + terminal.printed()


def test_waiting_for_approval_also_offers_the_recovery_key(terminal):
    terminal.link.backup_status = BackupStatus.NEEDS_KEY

    terminal.events(Notice(WAIT_FOR_APPROVAL))

    printed = terminal.printed()
    assert printed.index(WAIT_FOR_APPROVAL) < printed.index("/recover")


def test_waiting_for_approval_without_any_backup_does_not_offer_it(terminal):
    terminal.link.backup_status = BackupStatus.NONE

    terminal.events(Notice(WAIT_FOR_APPROVAL))

    assert "/recover" not in terminal.printed()


@pytest.mark.parametrize("line", ["/backup", "/backup setup", f"/recover {RECOVERY_KEY}"])
def test_without_a_remembered_device_backup_commands_say_what_they_need(line):
    terminal = Terminal(with_device=False)

    assert terminal.type(line) is False

    assert terminal.errors()[-1] == f"error: {NEEDS_A_DEVICE}"


def test_the_help_lists_both_commands():
    assert "/backup [setup|reset]" in help_text()
    assert "/recover KEY" in help_text()
