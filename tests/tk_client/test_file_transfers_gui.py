"""File transfers in the real desktop window under Xvfb, against a real server.

The window is bob's; alice is a plain session with her own transfer manager.
The offer's prompt, the progress rows and the buttons are the real widgets; the
platform's file dialogs are replaced by functions returning a path in the
test's folder (the dialogs themselves are Tk's, not ours). To see a transfer
mid-way without racing it, the window's acknowledgements are held
(:class:`~tests.tk_client.test_file_transfers.AckGate`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

from tk_client.events import LoggedIn, Received
from tk_client.files import TransferInfo, TransferManager, TransferState, worker
from tk_client.model import pm_key
from tk_client.secure_files import PLAIN_OFFER, SEALED_OFFER
from tk_client.views import transfers as transfer_views
from tk_client.views.transfers import RecipientDialog

from .e2e_peers import FilePeer
from .gui_helpers import log_in, pump, shown_text, trust_server
from .helpers import make_session
from .test_file_transfers import AckGate, Peer, listing, random_file, sha256
from .test_gui_e2e import approved, open_window, run, window_approved

pytestmark = pytest.mark.gui


@pytest.fixture
def alice(accounts, address, config_home):
    """Alice's client without a window: a session and her transfer manager."""
    session, log = make_session(
        address, config_home / "alice_known_servers", expected_fingerprint=accounts.fingerprint
    )
    manager = TransferManager(session)
    session.login("alice", "alice-password")
    log.wait_for(LoggedIn)
    log.wait_for(Received, lambda e: e.message["type"] == "users")
    yield Peer("alice", session, manager, log)
    manager.close()
    session.close()


@pytest.fixture
def window(open_app, known, address, accounts):
    """Bob's logged-in window."""
    trust_server(known, address, accounts)
    app = open_app("bob")
    log_in(app)
    return app


@pytest.fixture
def dialogs(monkeypatch, tmp_path):
    """The platform's file dialogs, answered by the test; records what they were asked."""

    class Dialogs:
        def __init__(self) -> None:
            self.save_as: str | None = None
            self.open_path: str | None = None
            self.asked: list[tuple[str, dict]] = []

        def asksaveasfilename(self, **options):
            self.asked.append(("save", options))
            return self.save_as or ""

        def askopenfilename(self, **options):
            self.asked.append(("open", options))
            return self.open_path or ""

    fake = Dialogs()
    monkeypatch.setattr(transfer_views.filedialog, "asksaveasfilename", fake.asksaveasfilename)
    monkeypatch.setattr(transfer_views.filedialog, "askopenfilename", fake.askopenfilename)
    return fake


def prompt_for(app, transfer: str):
    pump(app, lambda: transfer in app.offer_prompts, "the offer's prompt")
    return app.offer_prompts[transfer]


def row_of(app, transfer: str):
    rows = app.main_view.transfers.rows
    pump(app, lambda: transfer in rows, "the transfer's progress row")
    return rows[transfer]


def test_an_offer_is_prompted_then_saved_where_chosen_with_progress(
    window, alice, dialogs, tmp_path, monkeypatch
):
    monkeypatch.setattr(worker, "REPORT_INTERVAL", 0.0)  # every step shown
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    dialogs.save_as = str(downloads / "quarterly report.pdf")
    gate = AckGate(window.session, allowed=20)
    source = random_file(tmp_path / "report.pdf", 4 * 2**20)  # 64 chunks

    transfer = alice.send("bob", source)
    prompt = prompt_for(window, transfer)
    assert prompt.sender_label.cget("text") == "alice wants to send you a file:"
    assert prompt.name_label.cget("text") == "report.pdf"
    assert prompt.size_label.cget("text") == "4.0 MiB"
    assert prompt.security_label.cget("text") == PLAIN_OFFER  # alice has no device: 3.3

    prompt.accept_button.invoke()

    kind, options = dialogs.asked[0]
    assert (kind, options["initialfile"], options["parent"]) == ("save", "report.pdf", prompt)
    assert not prompt.winfo_exists()
    row = row_of(window, transfer)
    gate.wait_until_holding()  # 20 chunks acknowledged: the row shows where it stands
    pump(window, lambda: "(31%)" in str(row.detail.cget("text")), "progress at 31%")
    assert str(row.detail.cget("text")).startswith("1.2 MiB of 4.0 MiB (31%), ")
    assert "/s" in str(row.detail.cget("text"))  # the rate
    assert 0 < float(row.bar.cget("value")) < 1000
    assert str(row.button.cget("text")) == "Cancel"
    assert row.title.cget("text") == "report.pdf  from alice  (4.0 MiB)"

    gate.open()
    pump(window, lambda: row.over, "the end of the transfer")

    saved = downloads / "quarterly report.pdf"
    assert str(row.detail.cget("text")) == f"Saved as {saved}"
    assert float(row.bar.cget("value")) == 1000
    assert sha256(saved) == sha256(source)
    assert listing(downloads) == ["quarterly report.pdf"]
    assert alice.ended(transfer).stage is TransferState.FINISHED
    pump(window, lambda: "saved as" in shown_text(window), "the notice in the conversation")
    row.button.invoke()  # Dismiss
    assert transfer not in window.main_view.transfers.rows
    assert not window.main_view.transfers.winfo_ismapped()


def test_declining_in_the_prompt_tells_the_sender_and_writes_nothing(
    window, alice, dialogs, tmp_path
):
    transfer = alice.send("bob", random_file(tmp_path / "report.pdf", 10_000))
    prompt = prompt_for(window, transfer)

    prompt.decline_button.invoke()

    ended = alice.ended(transfer)
    assert (ended.stage, ended.reason) == (TransferState.FAILED, "rejected")
    assert dialogs.asked == []  # no save dialog
    assert not prompt.winfo_exists()
    pump(window, lambda: "You declined report.pdf from alice." in shown_text(window))


def test_an_offer_withdrawn_before_the_answer_is_shown_in_its_prompt(
    window, alice, dialogs, tmp_path
):
    transfer = alice.send("bob", random_file(tmp_path / "report.pdf", 10_000))
    prompt = prompt_for(window, transfer)

    alice.manager.cancel(transfer)

    message = "report.pdf from alice was not received: alice cancelled it."
    pump(window, lambda: prompt.problem.cget("text") == message, "the prompt to say so")
    assert not prompt.accept_button.winfo_ismapped()
    assert str(prompt.decline_button.cget("text")) == "Close"
    prompt.decline_button.invoke()
    assert not prompt.winfo_exists()


def test_cancel_in_the_progress_row_stops_the_transfer_and_leaves_nothing(
    window, alice, dialogs, tmp_path
):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    dialogs.save_as = str(downloads / "video.mp4")
    gate = AckGate(window.session, allowed=20)
    transfer = alice.send("bob", random_file(tmp_path / "video.mp4", 4 * 2**20))
    prompt_for(window, transfer).accept_button.invoke()
    row = row_of(window, transfer)
    gate.wait_until_holding()
    assert len(listing(downloads)) == 1  # the hidden temporary file, half written

    row.button.invoke()  # Cancel
    gate.open()

    ended = alice.ended(transfer)
    assert (ended.reason, ended.message) == (
        "cancelled",
        "video.mp4 was not sent to bob: bob cancelled it.",
    )
    pump(window, lambda: row.over, "the row to show the end")
    assert row.detail.cget("text") == "video.mp4 from alice was not received: you cancelled it."
    assert str(row.button.cget("text")) == "Dismiss"
    assert listing(downloads) == []


# --- sending from the window: end to end (4.12), to a peer with a device -------------------


@dataclass
class Sealed:
    """Bob's window and alice's headless client, both fresh users with devices."""

    window: Any
    alice: FilePeer
    bob: str

    def run(self, condition, what: str) -> None:
        run(self.window, [self.alice], condition, what)

    def offered(self) -> TransferInfo:
        self.run(lambda: bool(self.alice.view.offers), "the offer at alice")
        offer = self.alice.view.offers.pop(0)
        assert offer.end_to_end  # a window with a device never sends a plain offer
        return offer


@pytest.fixture
def sealed(open_app, known, address, accounts, people, tmp_path):
    alice_name, bob = people("alice", "bob")
    window = open_window(open_app, known, address, accounts, bob)
    alice = FilePeer(accounts, tmp_path / "alice-laptop", alice_name, "laptop")
    alice.log_in(f"{alice_name}-password")
    pair = Sealed(window, alice, bob)
    pair.run(lambda: window_approved(window)() and approved(alice)(), "both devices set up")
    yield pair
    alice.close()


def test_send_file_in_a_private_chat_offers_the_file_to_the_partner(sealed, dialogs, tmp_path):
    window, alice = sealed.window, sealed.alice
    source = random_file(tmp_path / "photo.jpg", 300_000)
    dialogs.open_path = str(source)
    window.controller.select(pm_key(alice.user))

    window.main_view.send_file_button.invoke()

    offer = sealed.offered()
    assert (offer.peer, offer.name, offer.size) == (sealed.bob, "photo.jpg", 300_000)
    inbox = tmp_path / "alice-inbox"
    inbox.mkdir()
    alice.manager.accept_into(offer.transfer, inbox)
    row = row_of(window, offer.transfer)
    sealed.run(lambda: row.over, "the row to show the end")
    assert row.detail.cget("text") == f"Delivered: {alice.user} has an exact copy."
    assert (inbox / "photo.jpg").read_bytes() == source.read_bytes()
    assert row.title.cget("text") == f"\N{LOCK} photo.jpg  to {alice.user}  (293.0 KiB)"


def test_send_file_in_a_room_asks_for_the_recipient(sealed, dialogs, tmp_path):
    window, alice = sealed.window, sealed.alice
    dialogs.open_path = str(random_file(tmp_path / "notes.txt", 1000))

    window.main_view.send_file_button.invoke()

    pump(window, lambda: isinstance(window.recipient_dialog, RecipientDialog), "who gets it")
    dialog = window.recipient_dialog
    assert alice.user in list(dialog.combo.cget("values"))
    dialog.user.set(alice.user)
    dialog.send_button.invoke()

    offer = sealed.offered()
    assert (offer.peer, offer.name) == (sealed.bob, "notes.txt")
    alice.manager.decline(offer.transfer)


def test_file_command_without_a_path_opens_the_file_dialog(sealed, dialogs, tmp_path):
    window, alice = sealed.window, sealed.alice
    dialogs.open_path = str(random_file(tmp_path / "notes.txt", 1000))

    assert window.controller.submit(f"/file {alice.user}")

    assert dialogs.asked[0][0] == "open"
    offer = sealed.offered()
    assert (offer.peer, offer.name) == (sealed.bob, "notes.txt")
    alice.manager.decline(offer.transfer)


def test_an_end_to_end_offer_shows_its_decrypted_name_with_the_lock(sealed, dialogs, tmp_path):
    """The server relays no name (4.12): the prompt's name comes from the decrypted offer."""
    window, alice = sealed.window, sealed.alice
    source = random_file(tmp_path / "budget 2027.xlsx", 70_000)
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    dialogs.save_as = str(downloads / "budget.xlsx")

    assert alice.controller.send_file(sealed.bob, str(source))
    sealed.run(lambda: bool(window.offer_prompts), "the offer's prompt")
    transfer, prompt = next(iter(window.offer_prompts.items()))

    assert prompt.name_label.cget("text") == "budget 2027.xlsx"
    assert prompt.size_label.cget("text") == "68.4 KiB"
    assert prompt.security_label.cget("text") == SEALED_OFFER
    prompt.accept_button.invoke()
    row = row_of(window, transfer)
    sealed.run(lambda: row.over, "the end of the transfer")
    assert sha256(downloads / "budget.xlsx") == sha256(source)


def test_a_file_dropped_on_the_window_is_offered(sealed, tmp_path):
    """tkdnd's own XDND handlers, with the dropped paths served as a real X selection."""
    window, alice = sealed.window, sealed.alice
    folder = tmp_path / "with space"
    folder.mkdir()
    source = random_file(folder / "drawing.svg", 5000)
    window.controller.select(pm_key(alice.user))
    assert window.drop_enabled
    tcl = window.root.tk
    source_widget = window.main_view.hint  # any widget of ours can own the selection
    uris = f"file://{source.as_posix().replace(' ', '%20')}\r\n"
    handler = window.root.register(
        lambda offset, length: uris[int(offset) : int(offset) + int(length)]
    )
    tcl.call(
        "selection",
        "handle",
        "-selection",
        "XdndSelection",
        "-type",
        "text/uri-list",
        source_widget,
        handler,
    )
    tcl.call("selection", "own", "-selection", "XdndSelection", source_widget)
    target = window.main_view.messages.text
    x, y = target.winfo_rootx() + 40, target.winfo_rooty() + 40

    tcl.call("tkdnd::xdnd::HandleXdndEnter", target, source_widget, ("text/uri-list",), 0)
    tcl.call("tkdnd::xdnd::HandleXdndPosition", target, x, y, 0, source_widget)
    tcl.call("tkdnd::xdnd::HandleXdndDrop", 0)

    offer = sealed.offered()
    assert (offer.peer, offer.name, offer.size) == (sealed.bob, "drawing.svg", 5000)
    alice.manager.decline(offer.transfer)
    assert os.path.exists(source)
