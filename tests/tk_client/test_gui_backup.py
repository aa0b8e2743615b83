"""The key backup's desktop windows (docs/protocol.md 4.13), under Xvfb.

The real controller over a fake session and a fake link with a key backup
(:mod:`.fake_backup`): the test plays the server by handing the link's events to the
controller, which passes them to the windows as the App does. Buttons are pressed with
``invoke()``, as a click would.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tk_client.controller import ChatController
from tk_client.e2e.backup import (
    BackupChanged,
    BackupEnabled,
    BackupProblem,
    BackupRestored,
    BackupRestoreProgress,
    BackupStatus,
)
from tk_client.events import LoggedIn

from .fake_backup import NOT_APPROVED, NOT_THE_KEY_SHOWN, RECOVERY_KEY, TYPO, FakeBackupLink
from .test_controller import ROOMS, FakeSession, RecordingView, push

pytestmark = pytest.mark.gui

RECOVERY_KEY_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "recovery-key.png"
GROUPS = RECOVERY_KEY.split()
TWO_ROWS = f"{' '.join(GROUPS[:7])}\n{' '.join(GROUPS[7:])}"


class WindowsView(RecordingView):
    """Hands the controller's end-to-end events to the open windows, as the App does."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[Any] = []

    def e2e_event(self, event: Any) -> None:
        for window in list(self.windows):
            window.handle(event)


class Desk:
    """A themed Tk root, the controller of a logged-in device, and its fake link."""

    def __init__(self) -> None:
        import tkinter as tk

        from tk_client.views.theme import apply_theme

        self.root = tk.Tk()
        self.root.geometry("900x600")
        self.fonts = apply_theme(self.root)
        self.session = FakeSession()
        self.view = WindowsView()
        self.links: list[FakeBackupLink] = []

        def opener(user: str, device: str) -> FakeBackupLink:
            self.links.append(FakeBackupLink(self.session, user, device))
            return self.links[-1]

        self.controller = ChatController(
            self.session, self.view, e2e_opener=opener, autoload_history=False
        )
        self.controller.handle(LoggedIn("me", ROOMS, again=False, device="d1"))

    @property
    def link(self) -> FakeBackupLink:
        return self.links[-1]

    def key_window(self, *, reset: bool = False):
        from tk_client.views.backup import RecoveryKeyWindow

        window = RecoveryKeyWindow(self.root, self.fonts, self.controller, reset=reset)
        return self._opened(window)

    def recovery_dialog(self):
        from tk_client.views.backup import RecoveryDialog

        return self._opened(RecoveryDialog(self.root, self.fonts, self.controller))

    def _opened(self, window):
        self.view.windows.append(window)
        window.present()
        self.root.update()
        return window

    def events(self, *events: Any) -> None:
        """The link reports ``events`` (as for a pushed message); the windows update."""
        self.link.next_events = list(events)
        push(self.controller, {"type": "devices_changed", "users": []})
        self.root.update()

    def close(self) -> None:
        self.fonts.release()
        self.root.destroy()


@pytest.fixture
def desk(display):
    opened = Desk()
    yield opened
    opened.close()


def text_of(label) -> str:
    return str(label.cget("text"))


def style_of(label) -> str:
    return str(label.cget("style"))


# --- set-up: the key once, Copy, Save, typed back ---------------------------------------------


def test_setup_shows_the_key_once_large_and_grouped_and_says_what_it_is_for(desk):
    window = desk.key_window()

    assert window.stage == "key"
    assert text_of(window.key_label) == TWO_ROWS
    assert "shown only this once" in text_of(window.key_frame.winfo_children()[0])
    assert str(window.key_label.cget("font")) == str(desk.fonts.safety)
    assert desk.link.published == []  # nothing is turned on before it is typed back


def test_copy_puts_the_key_on_the_clipboard(desk):
    window = desk.key_window()

    window.copy_button.invoke()

    assert desk.root.clipboard_get() == RECOVERY_KEY
    assert "clipboard" in text_of(window.message)


def test_save_writes_the_key_to_a_file_only_the_user_can_read(desk, tmp_path, monkeypatch):
    from tk_client.views import backup

    target = tmp_path / "keys" / "recovery.txt"
    monkeypatch.setattr(backup, "ask_recovery_key_path", lambda parent: str(target))
    window = desk.key_window()

    window.save_button.invoke()

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    saved = target.read_text()
    assert RECOVERY_KEY in saved and "me's encrypted chat history" in saved
    assert f"Saved to {target}" in text_of(window.message)


def test_a_save_cancelled_in_the_file_dialog_writes_nothing(desk, monkeypatch):
    from tk_client.views import backup

    monkeypatch.setattr(backup, "ask_recovery_key_path", lambda parent: "")
    window = desk.key_window()

    window.save_button.invoke()

    assert text_of(window.message) == ""


def test_a_wrong_key_typed_back_is_refused_and_a_right_one_turns_the_backup_on(desk):
    window = desk.key_window()
    window.kept_button.invoke()
    assert window.stage == "check"

    window.typed.set("EJKW 4XQP M7RT")
    window.turn_on_button.invoke()

    assert text_of(window.message) == NOT_THE_KEY_SHOWN
    assert style_of(window.message) == "Error.TLabel"
    assert desk.link.published == []
    assert str(window.turn_on_button.cget("state")) == "normal"  # try again

    window.typed.set(RECOVERY_KEY.lower().replace(" ", "-"))  # case and hyphens do not matter
    window.turn_on_button.invoke()
    assert desk.link.published == [(RECOVERY_KEY, None)]
    assert "Turning the key backup on" in text_of(window.message)

    desk.events(BackupEnabled(1))
    assert BackupEnabled(1).text in text_of(window.message)
    assert text_of(window.key_label) == ""  # the key leaves the screen
    assert text_of(window.close_button) == "Close"


def test_show_the_key_again_goes_back_to_it(desk):
    window = desk.key_window()
    window.kept_button.invoke()

    window.back_button.invoke()

    assert window.stage == "key"
    assert window.key_frame.winfo_ismapped()


def test_a_problem_from_the_server_is_said_in_the_window(desk):
    window = desk.key_window()
    window.kept_button.invoke()
    window.typed.set(RECOVERY_KEY)
    window.turn_on_button.invoke()

    desk.events(BackupProblem("The server refused the key backup: try again later."))

    assert "The server refused the key backup" in text_of(window.message)
    assert "not turned on" in text_of(window.message)
    assert style_of(window.message) == "Error.TLabel"


def test_cancel_makes_the_controller_forget_the_key_shown(desk):
    window = desk.key_window()
    window.kept_button.invoke()
    assert desk.link.shown == RECOVERY_KEY

    window.close_button.invoke()

    assert desk.link.shown is None and desk.link.published == []


def test_a_device_that_may_not_back_up_says_why_instead_of_a_key(desk):
    desk.link.can_back_up = False

    window = desk.key_window()

    assert window.stage == "refused"
    assert text_of(window.message) == NOT_APPROVED
    assert text_of(window.key_label) == ""


# --- reset: the password first ----------------------------------------------------------------


def test_reset_asks_the_password_first_and_says_the_old_key_stops_working(desk):
    desk.link.backup_status = BackupStatus.ON
    window = desk.key_window(reset=True)

    assert window.stage == "password"
    assert desk.link.shown is None  # no key before the password
    warning = text_of(window.password_frame.winfo_children()[0])
    assert "the old one stops working" in warning
    assert window.password_entry.cget("show") == "\u2022"

    window.continue_button.invoke()
    assert "Enter your password" in text_of(window.message)
    assert window.stage == "password"

    window.password.set("me-password")
    window.continue_button.invoke()
    assert window.stage == "key"
    window.kept_button.invoke()
    window.typed.set(RECOVERY_KEY)
    window.turn_on_button.invoke()

    assert desk.link.published == [(RECOVERY_KEY, "me-password")]
    desk.events(BackupProblem("The password is wrong: the key backup was not reset."))
    assert "password is wrong" in text_of(window.message)
    assert window.password.get() == ""  # nothing typed is kept


# --- entering the recovery key ------------------------------------------------------------------


def test_a_typo_in_the_recovery_key_is_refused_at_once(desk):
    desk.link.backup_status = BackupStatus.NEEDS_KEY
    dialog = desk.recovery_dialog()

    dialog.typed.set("EJKW 4XQP M7RT 2ZCD")
    dialog.restore_button.invoke()

    assert text_of(dialog.message) == TYPO
    assert style_of(dialog.message) == "Error.TLabel"
    assert desk.link.restores == []
    assert str(dialog.restore_button.cget("state")) == "normal"


def test_restoring_shows_its_progress_then_what_was_restored(desk):
    desk.link.backup_status = BackupStatus.NEEDS_KEY
    dialog = desk.recovery_dialog()

    dialog.typed.set(RECOVERY_KEY.lower())
    dialog.restore_button.invoke()

    assert desk.link.restores == [RECOVERY_KEY.replace(" ", "")]
    assert "Checking the recovery key" in text_of(dialog.message)
    assert str(dialog.restore_button.cget("state")) == "disabled"
    desk.events(BackupRestoreProgress(500, 1200))
    assert text_of(dialog.message) == "Restoring keys from the backup: 500 of 1200\u2026"
    desk.events(BackupRestored(1199, 1))
    assert "1199 keys were restored from the key backup." in text_of(dialog.message)
    assert "1 keys in the backup could not be verified and were skipped" in text_of(dialog.message)
    assert dialog.typed.get() == ""


def test_a_wrong_recovery_key_is_said_and_can_be_typed_again(desk):
    desk.link.backup_status = BackupStatus.NEEDS_KEY
    dialog = desk.recovery_dialog()
    dialog.typed.set(RECOVERY_KEY)
    dialog.restore_button.invoke()

    wrong = "This recovery key does not match your key backup. Nothing was changed."
    desk.events(BackupProblem(wrong))

    assert text_of(dialog.message) == wrong
    assert style_of(dialog.message) == "Error.TLabel"
    assert str(dialog.restore_button.cget("state")) == "normal"


# --- the Account window's section, and the button above the chat -------------------------------


@pytest.mark.parametrize(
    ("status", "buttons"),
    [
        (BackupStatus.NONE, {"setup"}),
        (BackupStatus.ON, {"reset"}),
        (BackupStatus.NEEDS_KEY, {"recover", "reset"}),
    ],
)
def test_the_account_window_shows_the_state_and_the_buttons_that_fit(desk, status, buttons):
    from tk_client.views.account import AccountWindow

    desk.link.backup_status = status
    opened: list[str] = []
    window = AccountWindow(
        desk.root,
        desk.fonts,
        desk.controller,
        on_backup_setup=lambda reset: opened.append("reset" if reset else "setup"),
        on_recover=lambda: opened.append("recover"),
    )
    window.present()
    desk.root.update()
    section = window.backup

    assert text_of(section.status) == desk.controller.backup_status_text()
    mapped = {
        name
        for name, button in (
            ("setup", section.setup_button),
            ("reset", section.reset_button),
            ("recover", section.recover_button),
        )
        if button.winfo_ismapped()
    }
    assert mapped == buttons
    for name in sorted(buttons):
        getattr(section, f"{name}_button").invoke()
    assert sorted(opened) == sorted(buttons)
    window.destroy()


def test_a_reset_from_another_device_is_said_in_the_section_and_the_chat(desk):
    from tk_client.views.account import AccountWindow

    desk.link.backup_status = BackupStatus.ON
    window = AccountWindow(desk.root, desk.fonts, desk.controller)
    desk.view.windows.append(window.backup)

    desk.events(BackupChanged(5, "PHONE", "my phone", by_me=False))

    said = "Your key backup was reset from my phone (PHONE). Your old recovery key no longer works."
    assert text_of(window.backup.message) == said
    assert desk.view.last_notice() == said
    window.destroy()


def test_the_chat_offers_the_recovery_key_when_this_device_needs_it(desk):
    from tk_client.views.main_window import MainView

    recovering: list[bool] = []
    main = MainView(
        desk.root,
        desk.fonts,
        desk.controller,
        fingerprint="SHA256:x",
        address="localhost",
        on_quit=lambda: None,
        on_reconnect=lambda: None,
        on_recover=lambda: recovering.append(True),
    )
    main.pack(fill="both", expand=True)
    main.refresh_security()
    desk.root.update()
    assert not main.recover_button.winfo_ismapped()

    desk.link.backup_status = BackupStatus.NEEDS_KEY
    main.refresh_security()
    desk.root.update()
    assert main.recover_button.winfo_ismapped()
    main.recover_button.invoke()
    assert recovering == [True]
    main.destroy()


def test_the_recovery_key_window_is_saved_as_a_picture(desk):
    """docs/recovery-key.png: the window as a user first sees it."""
    from PIL import ImageGrab

    window = desk.key_window()
    desk.root.update()
    window.update_idletasks()
    x, y = window.winfo_rootx(), window.winfo_rooty()
    width, height = window.winfo_width(), window.winfo_height()
    image = ImageGrab.grab(bbox=(x, y, x + width, y + height), xdisplay=os.environ["DISPLAY"])
    RECOVERY_KEY_SCREENSHOT.parent.mkdir(exist_ok=True)
    image.save(RECOVERY_KEY_SCREENSHOT)

    assert width > 400 and height > 250
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # drawn, not blank


def test_a_device_not_approved_yet_is_offered_only_the_recovery_key(desk):
    from tk_client.views.account import AccountWindow

    desk.link.approved = False
    desk.link.backup_status = BackupStatus.NEEDS_KEY
    window = AccountWindow(desk.root, desk.fonts, desk.controller)
    window.present()
    desk.root.update()

    assert window.backup.recover_button.winfo_ismapped()
    assert not window.backup.reset_button.winfo_ismapped()
    desk.link.backup_status = BackupStatus.NONE
    window.backup.refresh()
    desk.root.update()
    assert not window.backup.setup_button.winfo_ismapped()
    assert "once this device is approved" in text_of(window.backup.status)
    window.destroy()
