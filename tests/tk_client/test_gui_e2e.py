"""End-to-end encryption in the desktop window (PROTOCOL.md 4.7-4.9), under Xvfb.

The window is one device; the other side is a headless peer (:mod:`.e2e_peers`: the same
controller and link without a window). Every test has users of its own: a user key lives
on the server, and the first device of a user makes it. Buttons are pressed with
``invoke()``, as a click would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tk_client.e2e.link import WAIT_FOR_APPROVAL, OwnDeviceToApprove
from tk_client.e2e.verification import CodesReady, VerificationRequested
from tk_client.model import ChatMessage, pm_key, room_key
from tk_client.secure import PUBLIC_ROOM
from tk_client.views import theme
from tk_client.views.verify import ApprovalDialog, VerifyDialog

from .e2e_peers import PeerPool
from .gui_helpers import log_in, pump, shown_text, trust_server
from .helpers import WAIT_SECONDS

pytestmark = pytest.mark.gui

VERIFY_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "verify-dialog.png"


@pytest.fixture
def peers(accounts, tmp_path):
    pool = PeerPool(accounts, tmp_path, "-password", folder=lambda u, d: f"peer-{u}-{d}")
    yield pool.open
    pool.close()


def run(app, peers, condition, what: str, timeout: float = WAIT_SECONDS) -> None:
    """Drive the window (None: none yet) and the peers until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            notices = {p.user: p.view.notices[-4:] for p in peers}
            raise AssertionError(f"waited in vain for {what}; the peers' notices: {notices}")
        if app is not None:
            app.root.update()
        busy = [p.pump_once() for p in peers]
        if not any(busy):
            time.sleep(0.01)


def approved(*peers):
    return lambda: all(p.controller.e2e is not None and p.link.approved for p in peers)


def window_approved(app):
    return lambda: app.controller.e2e is not None and app.controller.e2e.approved


def open_window(open_app, known, address, accounts, user: str):
    trust_server(known, address, accounts)
    app = open_app(user)
    log_in(app, user)
    return app


def last_event(peer, kind):
    return next((e for e in reversed(peer.view.e2e_events) if isinstance(e, kind)), None)


def keys_exchanged(app, peer, bob: str, alice: str) -> None:
    """alice writes to bob first, so each side has fetched the other's keys."""
    run(app, [peer], lambda: window_approved(app)() and approved(peer)(), "both set up")
    assert peer.controller.submit(f"/pm {bob} hello, shall we verify?")
    run(
        app,
        [peer],
        lambda: (
            "hello, shall we verify?"
            in [m.text for m in app.controller.conversation(pm_key(alice)).messages]
            and app.controller.safety_number(alice) is not None
        ),
        "alice's message readable in the window, and her keys",
    )


def compare_emoji(app, peer, alice: str) -> VerifyDialog:
    """Open Verify for alice from the conversation's header and start comparing emoji; the
    peer accepts. Returns the dialog with the codes shown."""
    app.controller.select(pm_key(alice))
    run(app, [peer], lambda: app.main_view.verify_button.winfo_ismapped(), "Verify...")
    app.main_view.verify_button.invoke()
    dialog = next(w for w in app.verification_windows if isinstance(w, VerifyDialog))
    dialog.compare_button.invoke()
    run(app, [peer], lambda: last_event(peer, VerificationRequested), "the request at alice")
    request = last_event(peer, VerificationRequested)
    assert request.kind == "contact"
    peer.controller.accept_verification(request.txn)
    run(
        app,
        [peer],
        lambda: last_event(peer, CodesReady) and dialog.panel.names(),
        "the codes on both sides",
    )
    return dialog


# --- the lock -------------------------------------------------------------------------------


def test_a_private_chat_shows_the_lock_and_the_lobby_says_the_server_reads_it(
    open_app, known, address, accounts, people, peers
):
    alice, bob = people("alice", "bob")
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    run(app, [peer], lambda: window_approved(app)() and approved(peer)(), "both set up")
    view = app.main_view

    app.controller.select(pm_key(alice))
    run(app, [peer], lambda: view.verify_button.winfo_ismapped(), "the lock and Verify...")
    assert str(view.security_label.cget("text")).strip() == (
        f"end-to-end encrypted; not verified: {alice}"
    )
    assert str(view.security_label.cget("image"))  # the padlock
    assert str(view.conversations.tree.item(f"pm:{alice}", "image"))  # a lock in the sidebar too

    app.controller.select(room_key("lobby"))
    pump(app, lambda: str(view.security_label.cget("text")) == PUBLIC_ROOM, "the lobby's words")
    assert not str(view.security_label.cget("image"))
    assert not view.verify_button.winfo_ismapped()
    assert not str(view.conversations.tree.item("room:lobby", "image"))


def test_verify_in_a_private_room_offers_its_members(
    open_app, known, address, accounts, people, peers
):
    alice, bob, carol = people("alice", "bob", "carol")
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    run(app, [peer], lambda: window_approved(app)() and approved(peer)(), "both set up")
    assert peer.controller.submit(f"/create plans {bob} {carol}")
    run(app, [peer], lambda: "plans" in app.controller.rooms, "the room in the window")
    view = app.main_view
    assert str(view.conversations.tree.item("room:plans", "image"))  # the sidebar's lock

    app.controller.select(room_key("plans"))
    run(app, [peer], lambda: view.verify_button.winfo_ismapped(), "Verify...")
    assert str(view.security_label.cget("text")).strip() == (
        f"end-to-end encrypted; not verified: {alice}, {carol}"
    )
    view.verify_button.invoke()
    menu = view.verify_menu
    assert [menu.entrycget(i, "label") for i in range(menu.index("end") + 1)] == [alice, carol]
    menu.invoke(1)
    menu.unpost()
    dialog = app.verification_windows[-1]
    assert isinstance(dialog, VerifyDialog) and dialog.user == carol


def test_the_window_ticks_the_end_to_end_link_every_few_seconds(
    open_app, known, address, accounts, people, monkeypatch
):
    import tk_client.gui

    monkeypatch.setattr(tk_client.gui, "E2E_TICK_MS", 50)
    (bob,) = people("bob")
    app = open_window(open_app, known, address, accounts, bob)
    ticks = []
    monkeypatch.setattr(app.controller, "e2e_tick", lambda: ticks.append(1))
    pump(app, lambda: len(ticks) >= 2, "two ticks")


def test_an_unreadable_line_is_grey_with_its_reason_and_is_replaced_by_the_text(
    open_app, known, address, accounts, people
):
    (bob,) = people("bob")
    app = open_window(open_app, known, address, accounts, bob)
    key = app.controller.current
    line = ChatMessage(
        sender="alice",
        text="waiting for the key to read this message",
        msg_id=10**9,
        encrypted=True,
        unreadable=True,
    )
    app.controller.conversation(key).messages.append(line)
    app.main_view.message_added(key, line)
    text = app.main_view.messages.text
    start = text.search("waiting for the key", "1.0")
    assert "unreadable" in text.tag_names(start)
    assert str(text.tag_cget("unreadable", "foreground")) == theme.FAINT  # grey
    assert str(text.tag_cget("unreadable", "font")) == str(app.main_view.fonts.body_italic)

    line.text, line.unreadable = "the plan is on the wiki", False
    app.main_view.message_changed(key, line)
    shown = shown_text(app)
    assert "the plan is on the wiki" in shown and "waiting for the key" not in shown
    assert "unreadable" not in text.tag_names(text.search("the plan is on", "1.0"))


# --- verifying a contact ----------------------------------------------------------------------


def test_verify_shows_the_safety_number_and_matching_emoji_verify_the_contact(
    open_app, known, address, accounts, people, peers
):
    alice, bob = people("alice", "bob")
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    keys_exchanged(app, peer, bob, alice)

    dialog = compare_emoji(app, peer, alice)
    number = app.controller.safety_number(alice)
    assert dialog.safety_number.split() == number.split()  # 12 groups of 5 digits
    assert len(number.split()) == 12 and all(len(g) == 5 for g in number.split())
    assert number == peer.controller.safety_number(bob)  # what the two people compare
    codes = last_event(peer, CodesReady)
    assert dialog.panel.names() == [name for _, name in codes.emoji]
    assert "not verified" in str(dialog.lock_words.cget("text"))

    dialog.panel.match_button.invoke()
    peer.controller.confirm_verification(codes.txn)
    run(app, [peer], lambda: "is verified" in str(dialog.panel.status.cget("text")), "verified")
    assert str(app.main_view.security_label.cget("text")).strip() == (
        "end-to-end encrypted; verified"
    )
    run(app, [peer], lambda: peer.controller.security(pm_key(bob)).endswith("verified"), "peer")
    assert peer.controller.security(pm_key(bob)) == "end-to-end encrypted; verified"


def test_a_declined_comparison_says_so_in_the_verify_dialog(
    open_app, known, address, accounts, people, peers
):
    alice, bob = people("alice", "bob")
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    keys_exchanged(app, peer, bob, alice)
    app.controller.select(pm_key(alice))
    dialog = app.open_verify(alice)
    dialog.compare_button.invoke()
    assert str(dialog.compare_button.cget("state")) == "disabled"
    run(app, [peer], lambda: last_event(peer, VerificationRequested), "the request at alice")

    peer.controller.cancel_verification(last_event(peer, VerificationRequested).txn)

    run(
        app,
        [peer],
        lambda: "cancelled" in str(dialog.panel.status.cget("text")),
        "the words",
        timeout=5,
    )
    assert str(dialog.compare_button.cget("state")) == "normal"  # try again
    assert "not verified" in app.controller.security(pm_key(alice))


def test_verify_before_any_message_fetches_the_keys_and_shows_the_number(
    open_app, known, address, accounts, people, peers
):
    alice, bob = people("alice", "bob")
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    run(app, [peer], lambda: window_approved(app)() and approved(peer)(), "both set up")
    assert app.controller.safety_number(alice) is None  # nothing exchanged yet

    dialog = app.open_verify(alice)

    run(app, [peer], lambda: dialog.safety_number[:1].isdigit(), "the number, unasked again")
    peer.controller.fetch_keys(bob)  # alice's side of the comparison
    run(app, [peer], lambda: peer.controller.safety_number(bob) is not None, "alice's number")
    assert dialog.safety_number.split() == peer.controller.safety_number(bob).split()


def test_mark_as_verified_after_comparing_the_number(
    open_app, known, address, accounts, people, peers
):
    alice, bob = people("alice", "bob")
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    keys_exchanged(app, peer, bob, alice)
    app.controller.select(pm_key(alice))
    dialog = app.open_verify(alice)

    dialog.mark_button.invoke()

    assert str(app.main_view.security_label.cget("text")).strip() == (
        "end-to-end encrypted; verified"
    )
    assert str(dialog.lock_words.cget("text")) == "end-to-end encrypted; verified"


def test_a_contact_asking_to_verify_opens_a_dialog_to_accept_and_compare(
    open_app, known, address, accounts, people, peers
):
    alice, bob = people("alice", "bob")
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    keys_exchanged(app, peer, bob, alice)

    assert peer.controller.verify_contact(bob)
    run(app, [peer], lambda: app.verification_windows, "the request in the window")
    dialog = app.verification_windows[-1]
    assert isinstance(dialog, ApprovalDialog)
    assert str(dialog.question.cget("text")) == f"{alice} wants to verify you"
    dialog.yes_button.invoke()
    run(app, [peer], lambda: last_event(peer, CodesReady) and dialog.panel.names(), "codes")
    codes = last_event(peer, CodesReady)
    assert dialog.panel.names() == [name for _, name in codes.emoji]

    peer.controller.confirm_verification(codes.txn)
    dialog.panel.match_button.invoke()
    run(app, [peer], lambda: "is verified" in str(dialog.panel.status.cget("text")), "verified")
    app.controller.select(pm_key(alice))
    pump(app, lambda: "; verified" in str(app.main_view.security_label.cget("text")), "lock")


def test_a_changed_identity_can_be_accepted_from_the_verify_dialog(
    open_app, known, address, accounts, people, peers
):
    alice, bob = people("alice", "bob")
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    keys_exchanged(app, peer, bob, alice)
    assert app.controller.mark_verified(alice)
    dialog = app.open_verify(alice)
    assert not dialog.accept_frame.winfo_manager()

    old = app.controller.safety_number(alice)
    assert peer.controller.reset_identity()
    run(
        app,
        [peer],
        lambda: (
            app.controller.safety_number(alice) not in (None, old)
            and dialog.accept_frame.winfo_manager()
        ),
        "the changed identity in the dialog",
    )
    assert "sending paused" in app.controller.security(pm_key(alice))

    dialog.accept_button.invoke()

    assert not dialog.accept_frame.winfo_manager()
    assert "not verified" in app.controller.security(pm_key(alice))


# --- approving a device -------------------------------------------------------------------------


def test_the_window_approves_a_second_device_by_comparing_codes(
    open_app, known, address, accounts, people, peers
):
    (bob,) = people("bob")
    app = open_window(open_app, known, address, accounts, bob)
    run(app, [], window_approved(app), "the window's device set up")
    phone = peers(bob, "phone")
    run(
        app,
        [phone],
        lambda: any(isinstance(w, ApprovalDialog) for w in app.verification_windows),
        "the approval question",
    )
    dialog = app.verification_windows[-1]
    assert str(dialog.question.cget("text")).startswith("Approve the new device ")

    dialog.yes_button.invoke()
    run(app, [phone], lambda: last_event(phone, VerificationRequested), "the request")
    request = last_event(phone, VerificationRequested)
    assert request.kind == "device"
    phone.controller.accept_verification(request.txn)
    run(app, [phone], lambda: last_event(phone, CodesReady) and dialog.panel.names(), "codes")
    codes = last_event(phone, CodesReady)
    assert dialog.panel.names() == [name for _, name in codes.emoji]
    dialog.panel.match_button.invoke()
    phone.controller.confirm_verification(codes.txn)

    run(app, [phone], approved(phone), "the phone approved")
    run(app, [phone], lambda: "is approved" in str(dialog.panel.status.cget("text")), "words")


def test_a_new_window_device_accepts_the_approval_from_the_first_device(
    open_app, known, address, accounts, people, peers
):
    (bob,) = people("bob")
    laptop = peers(bob, "laptop")
    run(None, [laptop], approved(laptop), "the laptop set up")
    app = open_window(open_app, known, address, accounts, bob)
    run(app, [laptop], lambda: last_event(laptop, OwnDeviceToApprove), "the laptop told")
    run(app, [laptop], lambda: WAIT_FOR_APPROVAL in " ".join(shown_text(app).split()), "")
    assert laptop.controller.approve_device(last_event(laptop, OwnDeviceToApprove).device)
    run(app, [laptop], lambda: app.verification_windows, "the request in the window")
    dialog = app.verification_windows[-1]
    assert str(dialog.question.cget("text")).startswith("Your device ")
    assert str(dialog.question.cget("text")).endswith(" asks to approve this one")

    dialog.yes_button.invoke()
    run(app, [laptop], lambda: last_event(laptop, CodesReady) and dialog.panel.names(), "codes")
    codes = last_event(laptop, CodesReady)
    dialog.panel.match_button.invoke()
    laptop.controller.confirm_verification(codes.txn)

    run(app, [laptop], window_approved(app), "the window's device approved")
    run(app, [laptop], lambda: "device was approved" in str(dialog.panel.status.cget("text")), "")


# --- the picture -----------------------------------------------------------------------------


def test_the_verify_dialog_with_emoji_is_saved_as_a_picture(
    open_app, known, address, accounts, people, peers
):
    from PIL import ImageGrab

    # The module's own alice and bob (the other tests make users of their own): short names.
    alice, bob = "alice", "bob"
    app = open_window(open_app, known, address, accounts, bob)
    peer = peers(alice, "laptop")
    keys_exchanged(app, peer, bob, alice)
    dialog = compare_emoji(app, peer, alice)
    run(app, [peer], lambda: dialog.winfo_ismapped(), "the dialog on screen")
    for _ in range(20):
        app.root.update()
        time.sleep(0.02)

    x, y = dialog.winfo_rootx(), dialog.winfo_rooty()
    width, height = dialog.winfo_width(), dialog.winfo_height()
    image = ImageGrab.grab(bbox=(x, y, x + width, y + height), xdisplay=os.environ["DISPLAY"])
    VERIFY_SCREENSHOT.parent.mkdir(exist_ok=True)
    image.save(VERIFY_SCREENSHOT)

    assert width > 400 and height > 300
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # drawn, not blank
    assert len(dialog.panel.names()) == 7
