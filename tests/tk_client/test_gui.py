"""The real desktop window under Xvfb, against a real server.

The window runs in this process on a private display; keys are typed with
xdotool (real X key events through the X server) or ``event_generate``. Other
users are plain :class:`ChatSession` objects. The fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.protocol_client.e2e_body import e2e_body
from tk_client.e2e.megolm import Undecryptable
from tk_client.events import Received, RequestUpdate

from .gui_helpers import (
    log_in,
    pump,
    shown_text,
    trust_server,
    type_into_input,
    unread,
    xdotool,
)
from .helpers import WAIT_SECONDS

pytestmark = pytest.mark.gui

OTHER_KEY = "SHA256:" + "Q" * 43  # a pinned key that the server does not hold


# --- chatting --------------------------------------------------------------------------------


def test_typed_message_arrives_at_another_client(open_app, others, known, address, accounts):
    trust_server(known, address, accounts)
    _alice, alice_log = others("alice")
    app = open_app("bob")
    log_in(app)

    type_into_input(app, "hello from the desktop")
    xdotool(app, "key", "Return")

    received = alice_log.wait_for(
        Received, lambda e: e.message.get("text") == "hello from the desktop"
    )
    assert (received.message["type"], received.message["from"]) == ("message", "bob")
    assert app.main_view.entry.get() == ""
    pump(app, lambda: "hello from the desktop" in shown_text(app), "the own message in the view")


def test_incoming_private_message_is_shown_as_private(open_app, others, known, address, accounts):
    trust_server(known, address, accounts)
    app = open_app("bob")
    log_in(app)
    alice, _ = others("alice", remember="laptop")

    # An e2e object whose key bob's device never got: shown as a line that says why.
    alice.request("pm", to="bob", e2e=e2e_body(alice.device, "can you check the notes?"))

    chats = app.main_view.conversations.tree
    pump(app, lambda: chats.exists("pm:alice"), "the private chat in the list")
    assert unread(app, "pm:alice") == "1"  # one unread message
    chats.selection_set("pm:alice")
    reasons = [reason.text("alice") for reason in Undecryptable]
    pump(app, lambda: any(r in shown_text(app) for r in reasons), "the message's line")
    assert app.main_view.badge.winfo_ismapped()  # the PRIVATE badge in the heading
    assert app.main_view.title_label.cget("text") == "alice"
    assert unread(app, "pm:alice") == ""  # read now


def test_tab_completes_a_username_and_up_recalls_the_last_line(
    open_app, others, known, address, accounts, people
):
    alice, bob = people("alice", "bob")  # bob's first device: it may send at once
    trust_server(known, address, accounts)
    others(alice)
    app = open_app(bob)
    log_in(app, bob)

    type_into_input(app, f"/pm {alice[:-1]}")
    xdotool(app, "key", "Tab")
    pump(app, lambda: app.main_view.entry.get() == f"/pm {alice} ", "the completed name")

    xdotool(app, "type", "--delay", "15", "lunch?")
    xdotool(app, "key", "Return")
    pump(app, lambda: app.main_view.entry.get() == "", "the line to be sent")
    xdotool(app, "key", "Up")
    pump(app, lambda: app.main_view.entry.get() == f"/pm {alice} lunch?", "the recalled line")


def test_wrong_password_is_explained_in_the_login_window(open_app, known, address, accounts):
    trust_server(known, address, accounts)
    app = open_app("carol")
    pump(app, lambda: str(app.login_view.register_button.cget("state")) == "normal", "greeting")

    app.login_view.password.set("not her password")
    app.login_view.login_button.invoke()

    pump(app, lambda: app.login_view.message.cget("text") == "Wrong username or password.")
    assert app.main_view is None


# --- trust -------------------------------------------------------------------------------------


def test_first_connection_asks_to_trust_the_fingerprint(open_app, known, address, accounts):
    from tk_client.views.dialogs import TrustDialog

    app = open_app("bob")

    pump(app, lambda: isinstance(app.dialog, TrustDialog), "the trust dialog")
    dialog = app.dialog
    assert dialog.fingerprint == accounts.fingerprint
    assert known.get(address) is None

    dialog.trust_button.invoke()

    assert known.get(address) == accounts.fingerprint
    pump(app, lambda: "Test server" in app.login_view.greeting.cget("text"), "the greeting")


def test_changed_key_is_refused_in_a_dialog(open_app, known, address, accounts):
    from tk_client.views.dialogs import KeyChangedDialog

    known.trust(address, OTHER_KEY)
    app = open_app("bob")

    pump(app, lambda: isinstance(app.dialog, KeyChangedDialog), "the changed-key dialog")
    dialog = app.dialog
    texts = [w.cget("text") for w in dialog.body.winfo_children() if w.winfo_class() == "TLabel"]
    fields = [w.get() for w in dialog.body.winfo_children() if w.winfo_class() == "TEntry"]
    assert "The server's key has changed!" in texts[0]
    assert OTHER_KEY in fields and accounts.fingerprint in fields
    assert any("manage.py server_key" in text for text in texts)
    assert str(dialog.accept_button.cget("state")) == "disabled"

    dialog.typed.set(OTHER_KEY)  # the old key is not the new one
    assert str(dialog.accept_button.cget("state")) == "disabled"
    assert "not the fingerprint" in dialog.problem.cget("text")

    dialog.close_button.invoke()

    pump(app, lambda: "key changed" in app.login_view.message.cget("text"), "the refusal")
    assert known.get(address) == OTHER_KEY
    assert app.main_view is None


def test_changed_key_is_accepted_only_by_entering_the_new_fingerprint(
    open_app, known, address, accounts
):
    from tk_client.views.dialogs import KeyChangedDialog

    known.trust(address, OTHER_KEY)
    app = open_app("bob")
    pump(app, lambda: isinstance(app.dialog, KeyChangedDialog), "the changed-key dialog")
    dialog = app.dialog

    dialog.typed.set("  " + accounts.fingerprint + "\n")  # pasted, with white space
    assert str(dialog.accept_button.cget("state")) == "normal"
    dialog.accept_button.invoke()

    assert known.get(address) == accounts.fingerprint
    pump(app, lambda: "Test server" in app.login_view.greeting.cget("text"), "the greeting")
    log_in(app)


# --- history and outages -------------------------------------------------------------------------


def test_scrolling_to_the_top_loads_older_messages(open_app, others, known, address, accounts):
    trust_server(known, address, accounts)
    writers = [others(name) for name in ("alice", "carol", "dave")]
    alice, alice_log = writers[0]
    created = alice.request("create_room", room="archive", private=False, members=[])
    alice_log.wait_for(RequestUpdate, lambda e: e.request.id == created.id and e.answer)
    for session, log in writers[1:]:
        joined = session.request("join", room="archive")
        log.wait_for(RequestUpdate, lambda e, j=joined: e.request.id == j.id and e.answer)
    # 60 messages from three writers, one at a time: within the server's rate per user.
    for n in range(60):
        session, log = writers[n % 3]
        sent = session.request("send", room="archive", text=f"archived message {n}")
        ack = log.wait_for(RequestUpdate, lambda e, s=sent: e.request.id == s.id and e.answer)
        assert ack.answer["type"] == "ack"
    app = open_app("bob")
    log_in(app)

    type_into_input(app, "/join archive")
    xdotool(app, "key", "Return")
    pump(app, lambda: "archived message 59" in shown_text(app).splitlines(), "the newest")
    assert "archived message 9" not in shown_text(app).splitlines()  # one page of 50 so far

    app.main_view.messages.text.yview_moveto(0)

    pump(app, lambda: "archived message 0" in shown_text(app).splitlines(), "the oldest")
    pump(app, lambda: "This is the beginning of #archive." in shown_text(app), "the beginning")


def test_an_outage_is_shown_and_what_was_typed_is_sent_after_it(
    open_app, others, known, address, accounts
):
    trust_server(known, address, accounts)
    app = open_app("bob")
    log_in(app)
    status = app.main_view.status_label

    accounts.stop()
    try:
        pump(app, lambda: "Reconnecting" in status.cget("text"), "the reconnecting status")
        type_into_input(app, "written while the server was down")
        xdotool(app, "key", "Return")
        pump(app, lambda: "waiting for the connection" in shown_text(app), "the queued message")
    finally:
        accounts.start()

    pump(app, lambda: "Connected" in status.cget("text"), "the reconnection", timeout=120)
    pump(app, lambda: "waiting for the connection" not in shown_text(app), "the delivery")
    alice, alice_log = others("alice")
    history = alice.request("history", room="lobby", limit=10)
    answer = alice_log.wait_for(
        RequestUpdate, lambda e: e.request.id == history.id and e.answer
    ).answer
    assert "written while the server was down" in [m["text"] for m in answer["messages"]]


# --- keyboard and mouse ----------------------------------------------------------------------


def test_double_click_on_a_user_starts_a_private_message(
    open_app, others, known, address, accounts
):
    trust_server(known, address, accounts)
    others("alice")
    app = open_app("bob")
    log_in(app)
    users = app.main_view.users.tree
    pump(app, lambda: users.exists("user:alice"), "alice in the list of users")

    pump(app, lambda: users.bbox("user:alice") != "", "alice's row to be drawn")
    x, y, width, height = users.bbox("user:alice")
    left, top = users.winfo_rootx() + x + width // 3, users.winfo_rooty() + y + height // 2
    xdotool(app, "mousemove", str(left), str(top), "click", "--repeat", "2", "--delay", "60", "1")

    pump(app, lambda: app.main_view.entry.get() == "/pm alice ", "the started command")
    assert app.root.focus_get() is app.main_view.entry


def test_ctrl_q_quits(open_app, known, address, accounts):
    import tkinter as tk

    trust_server(known, address, accounts)
    app = open_app("bob")
    log_in(app)
    app.main_view.entry.focus_force()
    pump(app, lambda: app.root.focus_get() is app.main_view.entry, "the focus")

    process = subprocess.Popen(["xdotool", "key", "ctrl+q"], env=dict(os.environ))
    while not app.closed:
        try:
            app.root.update()
        except tk.TclError:
            break
        time.sleep(0.02)
    process.wait(timeout=WAIT_SECONDS)

    assert app.closed and app.session is None


def test_ctrl_c_in_the_terminal_closes_the_installed_desktop_client(display, tmp_path):
    import signal

    from .test_cli import PROJECT_DIR, as_in_a_shell, console_script

    script = console_script(tmp_path, "chat-desktop", "tk_client.gui")
    process = subprocess.Popen(
        [sys.executable, script, "--server", "127.0.0.1:9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ) | {"PYTHONPATH": str(PROJECT_DIR)},
        start_new_session=True,
        preexec_fn=as_in_a_shell,
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        # Its window (class Chat; the tests' own windows are class Tk) shows: Tk's loop runs.
        while subprocess.run(
            ["xdotool", "search", "--class", "^Chat$"], capture_output=True, env=dict(os.environ)
        ).returncode:
            assert time.monotonic() < deadline and process.poll() is None, "no window"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=WAIT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, err
    assert "Traceback" not in err
