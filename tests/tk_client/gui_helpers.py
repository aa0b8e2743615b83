"""Driving the real window in tests: run Tk's loop until something shows, type real keys."""

from __future__ import annotations

import os
import subprocess
import time

from .helpers import WAIT_SECONDS


def pump(app, condition, what: str = "the window to update", timeout: float = WAIT_SECONDS):
    """Run Tk's event loop until ``condition()`` holds (fails, never skips, if it does not)."""
    deadline = time.monotonic() + timeout
    while True:
        app.root.update()
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"waited in vain for {what}")
        time.sleep(0.02)


def xdotool(app, *args: str) -> None:
    """Run xdotool on the test display while Tk keeps handling events."""
    process = subprocess.Popen(["xdotool", *args], env=dict(os.environ))
    pump(app, lambda: process.poll() is not None, f"xdotool {args[0]}")
    assert process.returncode == 0


def log_in(app, username: str = "bob") -> None:
    """Log in through the login window (password typed into its field, Enter pressed)."""
    pump(app, lambda: str(app.login_view.register_button.cget("state")) == "normal", "the greeting")
    app.login_view.password.set(f"{username}-password")
    app.login_view.password_entry.focus_force()
    app.login_view.password_entry.event_generate("<Return>", when="tail")
    pump(app, lambda: app.main_view is not None, "the main window")
    pump(app, lambda: app.controller.all_users, "the list of users")


def shown_text(app) -> str:
    return app.main_view.messages.text.get("1.0", "end")


def type_into_input(app, text: str) -> None:
    """Type ``text`` into the input line with real key events."""
    entry = app.main_view.entry
    entry.focus_force()
    pump(app, lambda: app.root.focus_get() is entry, "the input line to have the focus")
    xdotool(app, "type", "--delay", "15", text)


def trust_server(known, address, server) -> None:
    known.trust(address, server.fingerprint)


def unread(app, iid: str) -> str:
    """The unread count shown for a conversation ("" when none).

    ``str()``: Tk may hand back a number for "1", depending on how it stored it.
    """
    return str(app.main_view.conversations.tree.set(iid, "unread"))
