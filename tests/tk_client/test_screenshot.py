"""The README's picture: the main window with a conversation, saved as ``docs/screenshot.png``.

A module of its own so that it gets a fresh server: the lobby holds only this
conversation. It checks that what it photographs is really on the screen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.protocol_client.e2e_body import e2e_body

from .gui_helpers import (
    log_in,
    pump,
    shown_text,
    trust_server,
    type_into_input,
    unread,
    xdotool,
)

pytestmark = pytest.mark.gui

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"


def say(app, session, room: str, text: str) -> None:
    """Send as another user and wait until the window shows it (keeps the order natural)."""
    session.request("send", room=room, text=text)
    if app.controller.current.name == room:
        pump(app, lambda: text in shown_text(app), f"'{text}' in the window")


def test_main_window_with_a_conversation_is_saved_as_the_screenshot(
    open_app, others, known, address, accounts
):
    from PIL import ImageGrab

    trust_server(known, address, accounts)
    alice, _ = others("alice", remember="laptop")
    carol, _ = others("carol", remember="laptop")
    app = open_app("bob")
    log_in(app)

    say(app, alice, "lobby", "Morning all! Release 2.4 is on the staging server.")
    say(app, carol, "lobby", "Thanks! I'll run the smoke tests after standup.")
    type_into_input(app, "Great - I'll go through the changelog meanwhile.")
    xdotool(app, "key", "Return")
    pump(app, lambda: "changelog meanwhile" in shown_text(app), "the own message")
    say(app, alice, "lobby", "The database migration takes about two minutes.")
    say(app, alice, "lobby", "Ping me if the login page looks odd.")
    say(app, carol, "lobby", "Will do. Screenshots go in the release thread.")
    alice.request("create_room", room="release", private=True, members=["bob", "carol"])
    # Private messages and private rooms carry e2e objects (the sidebar shows them unread).
    alice.request("pm", to="bob", e2e=e2e_body(alice.device, "the key rotation notes?"))
    chats = app.main_view.conversations.tree
    pump(app, lambda: chats.exists("pm:alice") and chats.exists("room:release"), "the sidebar")
    carol.request("send", room="release", e2e=e2e_body(carol.device, "Checklist in the wiki."))
    pump(app, lambda: unread(app, "room:release") == "1", "the unread count")
    type_into_input(app, "/pm ca")
    xdotool(app, "key", "Tab")
    pump(app, lambda: app.main_view.entry.get() == "/pm carol ", "the completed name")
    xdotool(app, "type", "--delay", "15", "thanks for testing!")

    app.root.update()
    x, y = app.root.winfo_rootx(), app.root.winfo_rooty()
    width, height = app.root.winfo_width(), app.root.winfo_height()
    image = ImageGrab.grab(bbox=(x, y, x + width, y + height), xdisplay=os.environ["DISPLAY"])
    SCREENSHOT.parent.mkdir(exist_ok=True)
    image.save(SCREENSHOT)

    assert image.size == (width, height) == (1120, 720)
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 100  # drawn, not blank
    assert "Screenshots go in the release thread." in shown_text(app)
