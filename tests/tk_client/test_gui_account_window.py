"""The Account window on its own, under Xvfb: what each button asks of the controller, and
what each account event shows (PROTOCOL.md 3.4).

The controller is a recorder here, so every answer (and every refusal) is exactly the
one the test gives. ``test_gui_account.py`` drives the same window through the whole
client against the fake server.
"""

from __future__ import annotations

import stat
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from tk_client.account import (
    AccountActionFailed,
    DeviceInfo,
    DeviceRevoked,
    DevicesListed,
    OtpDisabled,
    OtpEnabled,
    OtpSetupStarted,
    PasswordChanged,
)

pytestmark = pytest.mark.gui

URI = "otpauth://totp/Chat:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Chat"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
CODES = tuple(f"abcd-efgh-ijkl-mn{i:02d}" for i in range(10))


@dataclass
class Recorder:
    """The controller's account side: records the calls; the test plays the server."""

    username: str | None = "alice"
    two_factor: bool | None = False
    otp_enrolment_required: bool = False
    backup_status: None = None  # the key backup has its own tests (test_gui_backup.py)
    can_recover: bool = False
    can_back_up: bool = False
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def backup_status_text(self) -> str:
        return "no key backup here"

    def begin_backup_setup(self) -> str:
        raise AssertionError("not in these tests")

    def finish_backup_setup(self, typed: str, password: str | None = None) -> None:
        raise AssertionError("not in these tests")

    def cancel_backup_setup(self) -> None:
        raise AssertionError("not in these tests")

    def restore_with_recovery_key(self, text: str) -> None:
        raise AssertionError("not in these tests")

    def change_password(self, current: str, new: str) -> None:
        self.calls.append(("change_password", current, new))

    def start_otp_setup(self) -> None:
        self.calls.append(("start_otp_setup",))

    def confirm_otp(self, code: str) -> None:
        self.calls.append(("confirm_otp", code))

    def disable_otp(self, password: str, code: str) -> None:
        self.calls.append(("disable_otp", password, code))

    def refresh_devices(self) -> None:
        self.calls.append(("refresh_devices",))

    def revoke_device(self, device: str) -> None:
        self.calls.append(("revoke_device", device))

    def log_out(self) -> None:
        self.calls.append(("log_out",))


@pytest.fixture
def window(display):
    """An Account window over a themed root, with a recording controller."""
    import tkinter as tk

    from tk_client.views.account import AccountWindow
    from tk_client.views.theme import apply_theme

    root = tk.Tk()
    root.geometry("900x600")
    fonts = apply_theme(root)
    opened = []

    def open_(**state: Any) -> AccountWindow:
        controller = Recorder(**state)
        account = AccountWindow(root, fonts, controller)
        account.present()
        root.update()
        opened.append(account)
        return account

    yield open_
    for account in opened:
        if account.winfo_exists():
            account.destroy()
    fonts.release()
    root.destroy()


def calls(account) -> list[tuple[Any, ...]]:
    return account.actions.calls


def text_of(section) -> str:
    return str(section.message.cget("text"))


# --- password ------------------------------------------------------------------------------------


def test_new_passwords_that_differ_are_refused_here_and_nothing_is_sent(window):
    account = window()
    section = account.password
    section.current.set("old secret")
    section.new.set("new secret 1")
    section.repeat.set("new secret 2")

    section.button.invoke()

    assert calls(account) == []
    assert "differ" in text_of(section)
    assert section.repeat.get() == ""  # typed again


def test_change_password_sends_both_and_success_clears_the_fields(window):
    account = window()
    section = account.password
    section.current.set("old secret")
    section.new.set("a much better one")
    section.repeat.set("a much better one")

    section.button.invoke()
    assert calls(account) == [("change_password", "old secret", "a much better one")]

    account.handle(PasswordChanged())
    assert (section.current.get(), section.new.get(), section.repeat.get()) == ("", "", "")
    assert "Password changed" in text_of(section)
    assert calls(account)[-1] == ("refresh_devices",)  # the other devices were signed out


def test_a_refusal_is_shown_beside_the_action_it_belongs_to(window):
    account = window()

    account.handle(AccountActionFailed("change_password", "invalid_credentials", "Wrong, retype."))
    account.handle(AccountActionFailed("revoke_device", "unknown_device", "No such device."))

    assert text_of(account.password) == "Wrong, retype."
    assert text_of(account.devices) == "No such device."
    assert text_of(account.two_factor) == ""
    assert str(account.password.message.cget("style")) == "Error.TLabel"


# --- two-factor login ---------------------------------------------------------------------------


def test_turn_on_draws_the_qr_code_of_the_uri_with_the_secret_beside_it(window):
    from tk_client.views.qr import qr_matrix

    account = window()
    section = account.two_factor
    section.turn_on_button.invoke()
    assert calls(account) == [("start_otp_setup",)]

    account.handle(OtpSetupStarted(SECRET, URI))
    account.update()

    matrix = qr_matrix(URI)
    assert section.qr.matrix == matrix
    assert section.qr.dark_modules() == sum(map(sum, matrix)) > 0
    assert section.qr.winfo_ismapped()
    assert int(section.qr.cget("width")) == len(matrix) * section.qr.module
    assert section.secret_entry.get() == SECRET
    assert str(section.secret_entry.cget("state")) == "readonly"  # selectable, not editable


def test_without_the_qrcode_package_the_secret_is_shown_and_what_to_install(window, monkeypatch):
    monkeypatch.setitem(sys.modules, "qrcode", None)  # import qrcode: ImportError
    account = window()
    section = account.two_factor

    account.handle(OtpSetupStarted(SECRET, URI))

    assert section.qr.dark_modules() == 0
    assert section.secret_entry.get() == SECRET
    assert "pip install qrcode" in text_of(section)


def test_confirm_sends_six_digits_only(window):
    account = window()
    section = account.two_factor
    account.handle(OtpSetupStarted(SECRET, URI))

    section.code.set("12345")
    section.confirm_button.invoke()
    assert calls(account) == []
    assert "6 digits" in text_of(section)

    section.code.set("123 456")
    section.confirm_button.invoke()
    assert calls(account) == [("confirm_otp", "123456")]


def test_backup_codes_are_shown_once_and_saved_readable_only_by_the_user(
    window, tmp_path, monkeypatch
):
    from tk_client.views import two_factor

    account = window()
    section = account.two_factor
    account.handle(OtpSetupStarted(SECRET, URI))
    account.handle(OtpEnabled(CODES))
    account.update()

    shown = section.codes_text.get("1.0", "end").split()
    assert shown == list(CODES)
    assert section.qr.matrix == [] and section.secret.get() == ""  # the secret left the screen
    words = " ".join(
        str(w.cget("text"))
        for w in section.codes_frame.winfo_children()
        if w.winfo_class() == "TLabel"
    )
    assert "shown only this once" in words

    target = tmp_path / "codes.txt"
    monkeypatch.setattr(two_factor, "ask_backup_codes_path", lambda parent: str(target))
    section.save_button.invoke()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert all(code in target.read_text() for code in CODES)

    section.copy_button.invoke()
    assert all(code in account.clipboard_get() for code in CODES)

    section.done_button.invoke()
    assert section.codes_text.get("1.0", "end").strip() == ""
    assert section.stage == "on"


def test_turn_off_needs_the_password_and_a_code(window):
    account = window(two_factor=True)
    section = account.two_factor
    assert section.on_frame.winfo_ismapped()

    section.off_password.set("my password")
    section.turn_off_button.invoke()
    assert calls(account) == []

    section.off_code.set("654321")
    section.turn_off_button.invoke()
    assert calls(account) == [("disable_otp", "my password", "654321")]

    account.handle(OtpDisabled())
    account.update()
    assert section.stage == "off" and section.turn_on_button.winfo_ismapped()
    assert section.off_password.get() == ""


def test_when_not_known_whether_it_is_on_both_ways_are_offered(window):
    account = window(two_factor=None)
    section = account.two_factor
    account.update()
    assert section.turn_on_button.winfo_ismapped()

    section.show_off_form_button.invoke()
    account.update()
    assert section.off_password_entry.winfo_ismapped()


def test_when_known_to_be_off_only_turn_on_is_offered(window):
    account = window(two_factor=False)
    account.update()
    assert account.two_factor.turn_on_button.winfo_ismapped()
    assert not account.two_factor.show_off_form_button.winfo_ismapped()


def test_enrolment_required_leaves_only_two_factor_login_usable(window):
    account = window(otp_enrolment_required=True)
    assert account.banner.winfo_ismapped()
    assert str(account.password.button.cget("state")) == "disabled"
    assert str(account.devices.refresh_button.cget("state")) == "disabled"

    account.handle(OtpEnabled(CODES))
    account.update()
    assert not account.banner.winfo_ismapped()
    assert str(account.password.button.cget("state")) == "normal"


# --- devices and log out -------------------------------------------------------------------------


def devices() -> tuple[DeviceInfo, ...]:
    return (
        DeviceInfo(
            "d1", "laptop", "2026-12-01T08:00:00.000Z", "2026-12-03T09:30:00.000Z", True, True
        ),
        DeviceInfo(
            "d2",
            "old-desktop",
            "2026-10-01T08:00:00.000Z",
            "2026-11-02T18:05:00.000Z",
            False,
            False,
        ),
    )


def test_devices_are_listed_with_this_device_and_online(window):
    account = window()
    tree = account.devices.tree

    account.handle(DevicesListed(devices()))

    assert tree.get_children() == ("d1", "d2")
    assert tree.set("d1", "name") == "laptop"
    assert tree.set("d1", "this") == "this device" and tree.set("d2", "this") == ""
    assert tree.set("d1", "online") == "online" and tree.set("d2", "online") == ""
    assert tree.set("d2", "last_seen").startswith("2026-11-0")


def test_revoke_asks_first_and_sends_only_when_agreed(window, monkeypatch):
    from tk_client.views import sections

    account = window()
    section = account.devices
    account.handle(DevicesListed(devices()))
    assert str(section.revoke_button.cget("state")) == "disabled"  # nothing selected
    section.tree.selection_set("d2")
    account.update()

    questions = []
    answer = False
    monkeypatch.setattr(sections, "ask_yes_no", lambda p, t, q: questions.append(q) or answer)
    section.revoke_button.invoke()
    assert calls(account) == [] and "old-desktop" in questions[0]

    answer = True
    section.revoke_button.invoke()
    assert calls(account) == [("revoke_device", "d2")]
    account.handle(DeviceRevoked("d2"))
    assert "was revoked" in text_of(section)

    section.refresh_button.invoke()
    assert calls(account)[-1] == ("refresh_devices",)


def test_log_out_asks_first(window, monkeypatch):
    from tk_client.views import sections

    account = window()
    monkeypatch.setattr(sections, "ask_yes_no", lambda p, t, q: False)
    account.log_out_button.invoke()
    assert calls(account) == []

    monkeypatch.setattr(sections, "ask_yes_no", lambda p, t, q: True)
    account.log_out_button.invoke()
    assert calls(account) == [("log_out",)]
