"""The desktop client's side of PROTOCOL.md 3.4 under Xvfb, against the fake server:
"Remember me", resuming at start, the two-factor code prompt, and the Account window
(password, two-factor login, devices, log out). Also writes ``docs/account-window.png``.

The fake server's 3.4 rules are plain (``tests/tk_client/fake_server.py``): a
remembered device's token is ``token-<id>``, ``otp_confirm`` accepts
``server.otp_code``, an account in ``server.otp`` logs in only with that code.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from chatproto import crypto_utils
from tk_client.device_tokens import DeviceTokens
from tk_client.endings import SESSION_ENDED_MESSAGES
from tk_client.events import LoggedIn, Stopped
from tk_client.known_servers import KnownServers

from .fake_server import FAKE_SECRET, FakeServer
from .gui_helpers import pump, xdotool
from .helpers import make_session

pytestmark = pytest.mark.gui

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "account-window.png"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}


@pytest.fixture(scope="module")
def server_key():
    return crypto_utils.generate_private_key()


@pytest.fixture
def server(request, server_key):
    """The fake server; ``indirect`` parameters are its options (``require_2fa``)."""
    fake = FakeServer(server_key, dict(PASSWORDS), **getattr(request, "param", {})).start()
    yield fake
    fake.stop()


@pytest.fixture
def desktop(display, config_home, server):
    """Open the desktop client on the fake server, its key already trusted; closed after."""
    import gc
    import tkinter as tk

    from tk_client.gui import App

    known = KnownServers(config_home / "known_servers")
    known.trust(server.address, server.fingerprint)
    opened = []

    def open_(username: str = "bob"):
        app = App(
            tk.Tk(),
            known_servers=known,
            config_folder=config_home,
            server=server.address.key,
            username=username,
        )
        opened.append(app)
        return app

    yield open_
    for app in opened:
        app.close()
    gc.collect()  # Tk objects collected here, on Tk's thread


def tokens(config_home) -> DeviceTokens:
    return DeviceTokens(config_home)


def greeted(app) -> None:
    pump(app, lambda: "Fake" in str(app.login_view.greeting.cget("text")), "the greeting")


def log_in(app, username: str = "bob", *, remember: bool = True) -> None:
    """Type the password into the login form and press Log in (the box as ``remember`` says)."""
    greeted(app)
    app.login_view.remember.set(remember)
    app.login_view.password.set(PASSWORDS[username])
    app.login_view.login_button.invoke()


def in_main_window(app) -> None:
    pump(app, lambda: app.main_view is not None, "the main window")


def menu_entry(menu, label: str) -> int:
    """The index of the entry called ``label`` in ``menu``."""
    for index in range(menu.index("end") + 1):
        if menu.type(index) in ("command", "cascade") and menu.entrycget(index, "label") == label:
            return index
    raise AssertionError(f"no menu entry {label!r}")


def choose(app, menu: str, entry: str) -> None:
    """Choose ``menu`` > ``entry`` in the menu bar."""
    bar = app.menubar
    cascade = bar.nametowidget(bar.entrycget(menu_entry(bar, menu), "menu"))
    cascade.invoke(menu_entry(cascade, entry))


def account_menu(app) -> None:
    """Choose Chat > Account... in the menu bar."""
    choose(app, "Chat", "Account\u2026")
    pump(app, lambda: app.account_window is not None, "the Account window")


def message(section) -> str:
    return str(section.message.cget("text"))


def agree(monkeypatch) -> list[str]:
    """Answer Yes to every confirmation; returns the questions asked."""
    from tk_client.views import sections

    asked: list[str] = []
    monkeypatch.setattr(sections, "ask_yes_no", lambda parent, title, q: asked.append(q) or True)
    return asked


# --- Remember me and resuming ------------------------------------------------------------------


def test_remember_me_is_ticked_and_sends_the_computers_name(desktop, server, config_home):
    from tk_client.gui import device_name

    app = desktop()
    greeted(app)
    assert app.login_view.remember.get() is True  # on by default

    log_in(app)
    in_main_window(app)

    assert server.requests_of("login")[-1]["remember"] == device_name()
    stored = tokens(config_home).get(server.fingerprint, "bob")
    assert stored is not None and stored.token == f"token-{stored.device}"


@pytest.mark.parametrize(
    ("host", "expected"),
    [("bob-laptop", "bob-laptop"), ("", "this computer"), ("h" * 80, "h" * 64)],
)
def test_the_device_name_is_the_host_name_within_the_protocols_bound(monkeypatch, host, expected):
    from tk_client import gui

    monkeypatch.setattr(gui.socket, "gethostname", lambda: host)
    assert gui.device_name() == expected


def test_without_remember_me_no_device_is_asked_for(desktop, server, config_home):
    app = desktop()
    log_in(app, remember=False)
    in_main_window(app)

    assert server.requests_of("login")[-1].get("remember") is None
    assert tokens(config_home).get(server.fingerprint, "bob") is None


def test_a_restart_resumes_the_remembered_login_without_the_password(desktop, server):
    first = desktop()
    log_in(first)
    in_main_window(first)
    first.close()
    logins = len(server.requests_of("login"))

    again = desktop()
    in_main_window(again)

    assert len(server.requests_of("login")) == logins  # no password sent
    resume = server.requests_of("resume")[-1]
    assert (resume["username"], resume["token"]) == ("bob", f"token-{server.devices_of('bob')[0]}")
    assert again.controller.username == "bob"


def test_a_server_down_at_start_is_resumed_later_with_log_in_and_no_password(desktop, server):
    first = desktop()
    log_in(first)
    in_main_window(first)
    first.close()
    server.stop()

    again = desktop()
    pump(again, lambda: str(again.login_view.login_button.cget("state")) == "normal", "failure")
    assert again.main_view is None
    server.start()  # back, on the same port
    again.login_view.password.set("")
    again.login_view.login_button.invoke()

    in_main_window(again)
    assert len(server.requests_of("login")) == 1  # the first run's only
    assert server.requests_of("resume")[-1]["username"] == "bob"


def test_a_refused_resume_shows_the_login_form_with_what_to_do(desktop, server, config_home):
    first = desktop()
    log_in(first)
    in_main_window(first)
    first.close()
    server.devices.clear()  # revoked meanwhile

    again = desktop()
    pump(again, lambda: server.requests_of("resume"), "the resume")
    pump(again, lambda: "password" in str(again.login_view.message.cget("text")).lower(), "words")

    assert again.main_view is None
    assert str(again.login_view.login_button.cget("state")) == "normal"
    assert tokens(config_home).get(server.fingerprint, "bob") is None  # forgotten


# --- the two-factor code at login --------------------------------------------------------------


def test_the_code_is_asked_for_and_the_login_sent_again_with_it(desktop, server):
    from tk_client.views.dialogs import OtpDialog

    server.otp["bob"] = "654321"
    app = desktop()
    log_in(app)

    pump(app, lambda: isinstance(app.dialog, OtpDialog), "the code prompt")
    prompt = app.dialog
    assert "6-digit code from your authenticator app, or a backup code" in " ".join(
        str(w.cget("text")) for w in prompt.body.winfo_children() if w.winfo_class() == "TLabel"
    )
    prompt.code.set("111111")
    prompt.login_button.invoke()

    pump(app, lambda: isinstance(app.dialog, OtpDialog) and app.dialog is not prompt, "again")
    retry = app.dialog
    assert "not accepted" in str(retry.problem.cget("text"))
    retry.entry.focus_force()
    pump(app, lambda: app.root.focus_get() is retry.entry, "the focus in the code field")
    xdotool(app, "type", "--delay", "15", "654321")
    xdotool(app, "key", "Return")

    in_main_window(app)
    assert [r.get("otp") for r in server.requests_of("login")] == [None, "111111", "654321"]


@pytest.mark.parametrize("answer", ["code", "cancel"])
def test_a_reconnect_that_needs_a_new_code_asks_over_the_main_window(desktop, server, answer):
    from tk_client.events import Phase
    from tk_client.views.dialogs import OtpDialog

    server.otp["bob"] = "654321"
    app = desktop()
    log_in(app, remember=False)  # the password stays in memory for reconnecting
    pump(app, lambda: isinstance(app.dialog, OtpDialog), "the code prompt")
    app.dialog.code.set("654321")
    app.dialog.login_button.invoke()
    in_main_window(app)

    server.otp["bob"] = "222222"  # the code of 30 seconds later
    server.drop_all()
    pump(app, lambda: isinstance(app.dialog, OtpDialog), "the code prompt again")
    assert app.main_view is not None
    if answer == "code":
        app.dialog.code.set("222222")
        app.dialog.login_button.invoke()
        pump(app, lambda: app.controller.phase is Phase.ONLINE, "online again")
        assert app.main_view is not None
    else:
        app.dialog.cancel_button.invoke()
        pump(app, lambda: app.login_view is not None, "the login form")
        assert "Log in again" in str(app.login_view.message.cget("text"))


# --- the Account window ------------------------------------------------------------------------


def test_change_password_in_the_account_window(desktop, server):
    app = desktop()
    log_in(app)
    in_main_window(app)
    account_menu(app)
    section = app.account_window.password

    section.current.set("bob-password")
    section.new.set("short")
    section.repeat.set("short")
    section.button.invoke()
    pump(app, lambda: "too short" in message(section), "the server's rules")

    section.new.set("a longer new password")
    section.repeat.set("a longer new password")
    section.button.invoke()
    pump(app, lambda: "Password changed" in message(section), "the change")
    assert server.users["bob"] == "a longer new password"
    assert app.main_view is not None  # this session stays


def test_turn_two_factor_login_on_then_off(desktop, server):
    from tk_client.views.qr import qr_matrix

    app = desktop()
    log_in(app)
    in_main_window(app)
    account_menu(app)
    section = app.account_window.two_factor

    section.turn_on_button.invoke()
    pump(app, lambda: section.stage == "setup", "the setup")
    uri = server_uri("bob")
    assert section.qr.dark_modules() == sum(map(sum, qr_matrix(uri))) > 0
    assert section.secret_entry.get() == FAKE_SECRET

    section.code.set("000000")
    section.confirm_button.invoke()
    pump(app, lambda: "not right" in message(section), "the refused code")
    section.code.set(server.otp_code)
    section.confirm_button.invoke()
    pump(app, lambda: section.stage == "codes", "the backup codes")
    assert section.codes_text.get("1.0", "end").split() == server.backup_codes["bob"]
    assert app.controller.two_factor is True

    section.done_button.invoke()
    section.off_password.set("bob-password")
    section.off_code.set(server.otp["bob"])
    section.turn_off_button.invoke()
    pump(app, lambda: section.stage == "off", "two-factor login off")
    assert "bob" not in server.otp


def server_uri(username: str) -> str:
    return f"otpauth://totp/Fake:{username}?secret={FAKE_SECRET}&issuer=Fake"


def other_device(server, tmp_path, name: str = "old-laptop"):
    """Bob on another computer, remembered as ``name``: a plain session with its own folder."""
    known = KnownServers(tmp_path / name / "known_servers")
    known.trust(server.address, server.fingerprint)
    session, log = make_session(server.address, known.path)
    session.login("bob", "bob-password", remember=name)
    log.wait_for(LoggedIn)
    return session, log


def test_devices_are_listed_and_one_is_revoked(desktop, server, tmp_path, monkeypatch):
    from tk_client.gui import device_name

    other, other_log = other_device(server, tmp_path)
    try:
        app = desktop()
        log_in(app)
        in_main_window(app)
        account_menu(app)
        section = app.account_window.devices
        tree = section.tree
        pump(app, lambda: len(tree.get_children()) == 2, "the two devices")
        names = {tree.set(i, "name"): i for i in tree.get_children()}
        assert set(names) == {device_name(), "old-laptop"}
        assert tree.set(names[device_name()], "this") == "this device"
        assert tree.set(names["old-laptop"], "this") == ""
        assert tree.set(names["old-laptop"], "online") == "online"

        asked = agree(monkeypatch)
        tree.selection_set(names["old-laptop"])
        app.root.update()
        section.revoke_button.invoke()

        assert "old-laptop" in asked[0]
        other_log.wait_for(Stopped, lambda e: e.reason == "revoked")
        pump(app, lambda: tree.get_children() == (names[device_name()],), "the list refreshed")
        assert "was revoked" in message(section)
    finally:
        other.close()


@pytest.mark.parametrize("where", ["account window", "menu"])
def test_log_out_returns_to_the_login_form_and_forgets_the_saved_login(
    desktop, server, config_home, monkeypatch, where
):
    app = desktop()
    log_in(app)
    in_main_window(app)
    asked = agree(monkeypatch)

    if where == "menu":
        choose(app, "Chat", "Log out")
    else:
        account_menu(app)
        app.account_window.log_out_button.invoke()
    assert len(asked) == 1  # asked first

    pump(app, lambda: app.login_view is not None, "the login form")
    assert app.account_window is None and app.main_view is None
    assert server.devices == {}
    assert tokens(config_home).get(server.fingerprint, "bob") is None
    greeted(app)
    assert str(app.login_view.message.cget("text")) == SESSION_ENDED_MESSAGES["logged_out"]
    assert (server.logins, server.requests_of("resume")) == (1, [])  # not reconnected


def test_log_out_while_offline_says_so_beside_the_button_and_keeps_the_login(
    desktop, server, config_home, monkeypatch
):
    from tk_client.events import Phase

    app = desktop()
    log_in(app)
    in_main_window(app)
    account_menu(app)
    agree(monkeypatch)
    server.stop()  # gone until the end of the test: no reconnect can succeed
    pump(app, lambda: app.controller.phase is not Phase.ONLINE, "the connection lost")

    app.account_window.log_out_button.invoke()

    pump(app, lambda: "Not connected" in message(app.account_window.log_out_section), "words")
    assert app.main_view is not None
    assert tokens(config_home).get(server.fingerprint, "bob") is not None


@pytest.mark.parametrize("reason", ["revoked", "password_changed"])
def test_ended_elsewhere_returns_to_the_login_form_in_words(desktop, server, reason):
    app = desktop()
    log_in(app)
    in_main_window(app)
    account_menu(app)

    server.end_sessions("bob", reason)

    pump(app, lambda: app.login_view is not None, "the login form")
    assert app.account_window is None
    greeted(app)  # the new connection's greeting leaves the words in place
    deadline = time.monotonic() + 1.0
    pump(app, lambda: time.monotonic() > deadline, "a second")
    assert str(app.login_view.message.cget("text")) == SESSION_ENDED_MESSAGES[reason]
    assert (server.logins, server.requests_of("resume")) == (1, [])  # not reconnected


@pytest.mark.parametrize("server", [{"require_2fa": True}], indirect=True)
def test_a_server_that_requires_two_factor_login_opens_the_account_window(desktop, server):
    app = desktop("alice")
    log_in(app, "alice")

    pump(app, lambda: app.account_window is not None, "the Account window")
    window = app.account_window
    pump(app, lambda: window.banner.winfo_ismapped(), "the banner")
    assert str(window.password.button.cget("state")) == "disabled"
    window.two_factor.turn_on_button.invoke()
    pump(app, lambda: window.two_factor.stage == "setup", "the setup")
    window.two_factor.code.set(server.otp_code)
    window.two_factor.confirm_button.invoke()
    pump(app, lambda: not window.banner.winfo_ismapped(), "the banner gone")
    assert str(window.password.button.cget("state")) == "normal"
    kinds = [request["type"] for _, request in server.requests]
    confirmed = kinds.index("otp_confirm")
    pump(app, lambda: "history" in [r["type"] for _, r in server.requests[confirmed:]], "history")


# --- the picture -------------------------------------------------------------------------------


def test_account_window_with_the_qr_code_and_devices_is_saved_as_a_screenshot(
    desktop, server, tmp_path, monkeypatch
):
    from PIL import ImageGrab

    from tk_client import gui

    monkeypatch.setattr(gui, "device_name", lambda: "bob-laptop")  # not the test machine's name
    other, _ = other_device(server, tmp_path, "work-desktop")
    try:
        app = desktop()
        log_in(app)
        in_main_window(app)
        account_menu(app)
        window = app.account_window
        pump(app, lambda: len(window.devices.tree.get_children()) == 2, "the devices")
        window.two_factor.turn_on_button.invoke()
        pump(app, lambda: window.two_factor.stage == "setup", "the QR code")
        window.update_idletasks()
        window.update()

        x, y = window.winfo_rootx(), window.winfo_rooty()
        width, height = window.winfo_width(), window.winfo_height()
        image = ImageGrab.grab(bbox=(x, y, x + width, y + height), xdisplay=os.environ["DISPLAY"])
        SCREENSHOT.parent.mkdir(exist_ok=True)
        image.save(SCREENSHOT)

        assert width > 600 and height > 400
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # drawn
        assert window.two_factor.qr.dark_modules() > 0
    finally:
        other.close()
