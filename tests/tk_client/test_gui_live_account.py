"""Issue 13's newcomer, from the desktop client alone, against the real server (daphne in a
subprocess): log in once, restart and be logged in without the password, turn on two-factor
login with a code computed as an authenticator app would (pyotp), see the devices and revoke
one. The same steps against the fake server, one rule at a time, are in test_gui_account.py."""

from __future__ import annotations

import os
import stat

import pyotp
import pytest

from tk_client.address import parse_address
from tk_client.device_tokens import DeviceTokens
from tk_client.events import LoggedIn, Stopped
from tk_client.known_servers import KnownServers

from .gui_helpers import pump
from .helpers import make_session
from .test_gui_account import account_menu, agree, in_main_window, message

pytestmark = pytest.mark.gui

PASSWORD = "erin-password"


@pytest.fixture(scope="module")
def server(live_server):
    live_server.create_user("erin", PASSWORD)
    return live_server


@pytest.fixture
def address(server):
    return parse_address(server.url)


@pytest.fixture
def desktop(display, config_home, server, address):
    """Open the desktop client on the live server, its key already trusted; closed after."""
    import gc
    import tkinter as tk

    from tk_client.gui import App

    known = KnownServers(config_home / "known_servers")
    known.trust(address, server.fingerprint)
    opened = []

    def open_():
        app = App(
            tk.Tk(),
            known_servers=known,
            config_folder=config_home,
            server=address.key,
            username="erin",
        )
        opened.append(app)
        return app

    yield open_
    for app in opened:
        app.close()
    gc.collect()  # Tk objects collected here, on Tk's thread


def test_a_newcomer_stays_logged_in_turns_on_two_factor_login_and_revokes_a_device(
    desktop, server, address, config_home, tmp_path, monkeypatch
):
    # Log in once, with "Remember me" as it comes (ticked).
    first = desktop()
    pump(first, lambda: "Log in" in str(first.login_view.login_button.cget("text")), "the form")
    pump(first, lambda: str(first.login_view.greeting.cget("text")) != "", "the greeting")
    assert first.login_view.remember.get() is True
    first.login_view.password.set(PASSWORD)
    first.login_view.login_button.invoke()
    in_main_window(first)
    first.close()
    tokens = DeviceTokens(config_home)
    assert tokens.get(server.fingerprint, "erin") is not None
    assert stat.S_IMODE(os.stat(tokens.path).st_mode) == 0o600
    assert PASSWORD.encode() not in tokens.path.read_bytes()

    # Restart: logged in without typing the password.
    app = desktop()
    in_main_window(app)
    assert app.controller.username == "erin"
    assert app.login_view is None  # no form was shown: nothing was typed

    # Turn on two-factor login with the code an authenticator app would show.
    account_menu(app)
    two_factor = app.account_window.two_factor
    two_factor.turn_on_button.invoke()
    pump(app, lambda: two_factor.stage == "setup", "the QR code and the secret")
    secret = two_factor.secret_entry.get()
    assert two_factor.qr.dark_modules() > 0
    two_factor.code.set(pyotp.TOTP(secret).now())
    two_factor.confirm_button.invoke()
    pump(app, lambda: two_factor.stage == "codes", "the backup codes")
    backup_codes = two_factor.codes_text.get("1.0", "end").split()
    assert len(backup_codes) == 10
    two_factor.done_button.invoke()

    # Another computer of erin's logs in, which now needs a code (a backup code here).
    known = KnownServers(tmp_path / "phone" / "known_servers")
    known.trust(address, server.fingerprint)
    phone, phone_log = make_session(address, known.path)
    try:
        phone.login("erin", PASSWORD, remember="phone", otp=backup_codes[0])
        phone_log.wait_for(LoggedIn)

        # See the devices and revoke the phone.
        devices = app.account_window.devices
        tree = devices.tree
        devices.refresh_button.invoke()
        pump(app, lambda: len(tree.get_children()) == 2, "both devices")
        rows = {tree.set(item, "name"): item for item in tree.get_children()}
        assert tree.set(rows["phone"], "online") == "online"
        this = next(item for item in tree.get_children() if tree.set(item, "this"))
        assert tree.set(this, "name") != "phone"
        asked = agree(monkeypatch)
        tree.selection_set(rows["phone"])
        app.root.update()
        devices.revoke_button.invoke()
        assert "phone" in asked[0]
        phone_log.wait_for(Stopped, lambda e: e.reason == "revoked")
        pump(app, lambda: tree.get_children() == (this,), "the list without the phone")
        assert "was revoked" in message(devices)
    finally:
        phone.close()

    # This computer's saved login still works, and asks no code: the device passed it.
    app.close()
    again = desktop()
    in_main_window(again)
