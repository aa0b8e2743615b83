"""The terminal client's end-to-end side (docs/protocol.md 4.7-4.9), without a server.

The real controller and the real terminal printer, over a fake session and a fake link
(:mod:`.fake_e2e`, with verifications added here): what each command asks the link to
do, and the lines a user reads on stdout and stderr. The real link against the real
server is tests/tk_client/test_terminal_e2e_live.py.
"""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest

from tk_client import terminal_client
from tk_client.account import DeviceInfo, DevicesListed
from tk_client.controller import ChatController
from tk_client.e2e.engine import Shown
from tk_client.e2e.link import DeviceView, KeysFetched, LockState, OwnDeviceToApprove
from tk_client.e2e.verification import (
    CodesReady,
    VerificationCancelled,
    VerificationRequested,
    VerificationStarted,
    Verified,
)
from tk_client.events import LoggedIn
from tk_client.model import pm_key, room_key
from tk_client.secure import NEEDS_A_DEVICE, PUBLIC_ROOM
from tk_client.terminal_account import AccountDialog, devices_table
from tk_client.terminal_lines import codes_text
from tk_client.terminal_view import TerminalView

from .fake_e2e import FakeLink, sealed
from .test_controller import ROOMS, FakeSession, push

ALICE_KEY = "A" * 43
EMOJI = [
    ("🐶", "Dog"),
    ("🐱", "Cat"),
    ("🦁", "Lion"),
    ("🐎", "Horse"),
    ("🦄", "Unicorn"),
    ("🐷", "Pig"),
    ("🐘", "Elephant"),
]
NUMBER = " ".join(["12345"] * 12)


class VerifyingLink(FakeLink):
    """A fake link that also keeps devices, safety numbers and verifications."""

    def __init__(self, session: Any, user: str, device: str) -> None:
        super().__init__(session, user, device)
        self.approved = True
        self.known: dict[str, list[DeviceView]] = {}
        self.numbers: dict[str, str] = {}
        self.verified: set[str] = set()
        self.changed: set[str] = set()
        self.calls: list[tuple[str, ...]] = []
        self.flows: dict[str, tuple[str, str]] = {}
        self.fetched: list[str] = []

    def devices(self, user: str) -> list[DeviceView]:
        return self.known.get(user, [])

    def safety_number(self, user: str) -> str | None:
        return self.numbers.get(user)

    def start_verification(self, user: str, device: str, kind: str) -> list[Any]:
        if device not in {d.device for d in self.devices(user)}:
            raise ValueError(f"{user} has no device {device}")
        txn = f"t{len(self.flows) + 1}"
        self.flows[txn] = (user, device)
        self.calls.append(("start", user, device, kind))
        return [VerificationStarted(txn, user, device, kind)]

    def peer_of(self, txn: str) -> tuple[str, str] | None:
        return self.flows.get(txn)

    def fetch_keys(self, user: str) -> list[Any]:
        self.fetched.append(user)
        return []

    def accept_verification(self, txn: str) -> list[Any]:
        self.calls.append(("accept", txn))
        return []

    def confirm_verification(self, txn: str) -> list[Any]:
        self.calls.append(("confirm", txn))
        return []

    def cancel_verification(self, txn: str) -> list[Any]:
        self.calls.append(("cancel", txn))
        return []

    def mark_verified(self, user: str) -> None:
        if user not in self.numbers:
            raise ValueError(f"{user}'s keys are not known yet; try again in a moment")
        self.verified.add(user)

    def acknowledge(self, user: str) -> None:
        self.calls.append(("acknowledge", user))
        self.changed.discard(user)

    def reset_identity(self) -> list[Any]:
        self.calls.append(("reset",))
        return []

    def tick(self) -> list[Any]:
        self.calls.append(("tick",))
        return []

    def lock(self, members: Any) -> LockState:
        others = sorted(set(members) - {self.user})
        verified = tuple(u for u in others if u in self.verified)
        changed = tuple(u for u in others if u in self.changed)
        unverified = tuple(u for u in others if u not in self.verified and u not in self.changed)
        return LockState(verified, unverified, changed, ())


def device(user: str, name: str, *, signed: bool = True, here: bool = False) -> DeviceView:
    return DeviceView(user, name, ALICE_KEY, signed, here)


class Terminal:
    """The controller and the printer of one terminal client, and what it printed."""

    def __init__(self, *, with_device: bool = True) -> None:
        self.session = FakeSession()
        self.out, self.err = io.StringIO(), io.StringIO()
        self.view = TerminalView(self.out, self.err)
        self.links: list[VerifyingLink] = []

        def opener(user: str, name: str) -> VerifyingLink:
            self.links.append(VerifyingLink(self.session, user, name))
            return self.links[-1]

        self.controller = ChatController(
            self.session, self.view, e2e_opener=opener, autoload_history=False
        )
        self.view.controller = self.controller
        device_id = "d1" if with_device else None
        self.controller.handle(LoggedIn("me", ROOMS, again=False, device=device_id))
        push(self.controller, {"type": "users", "online": ["me"], "all": ["alice", "bob", "me"]})

    @property
    def link(self) -> VerifyingLink:
        return self.links[-1]

    def type(self, line: str) -> bool:
        return self.controller.submit(line)

    def events(self, *events: Any) -> None:
        """The link reports ``events`` (as it does for a pushed to-device message)."""
        self.link.next_events = list(events)
        push(self.controller, {"type": "devices_changed", "users": []})

    def printed(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def errors(self) -> list[str]:
        return self.err.getvalue().splitlines()


@pytest.fixture
def terminal():
    return Terminal()


# --- /verify, the codes, /confirm -----------------------------------------------------------


def test_verify_prints_the_safety_number_and_asks_alices_signed_device_to_compare(terminal):
    terminal.link.numbers["alice"] = NUMBER
    terminal.link.known["alice"] = [device("alice", "OLD", signed=False), device("alice", "LAP")]

    assert terminal.type("/verify alice")

    printed = "\n".join(terminal.printed())
    assert f"Safety number with alice: {NUMBER}" in printed
    assert "type /verified alice" in printed
    assert terminal.link.calls == [("start", "alice", "LAP", "contact")]
    assert "asked alice's device LAP" in printed


def test_the_codes_are_printed_with_their_names_and_confirm_answers_them(terminal):
    terminal.link.numbers["alice"] = NUMBER
    terminal.link.known["alice"] = [device("alice", "LAP")]
    terminal.type("/verify alice")

    terminal.events(CodesReady("t1", EMOJI, (1234, 5678, 9012)))

    printed = terminal.printed()
    assert "Compare these with the screen of alice:" in printed
    assert "  🐶 Dog   🐱 Cat   🦁 Lion   🐎 Horse   🦄 Unicorn   🐷 Pig   🐘 Elephant" in printed
    assert "  (or the numbers 1234 5678 9012)" in printed
    assert "Type /confirm if alice's screen shows the same, /cancel if not." in printed

    assert terminal.type("/confirm")
    assert terminal.link.calls[-1] == ("confirm", "t1")
    assert "Confirmed; waiting for alice's device LAP to confirm as well." in terminal.printed()

    terminal.events(Verified("t1", "alice", "LAP", "contact"))
    assert "alice is verified (the emoji matched on their device LAP)." in terminal.printed()
    assert terminal.type("/confirm") is False  # nothing is left to confirm
    assert "error: No codes are waiting for your confirmation." in terminal.errors()


def test_confirm_and_cancel_answer_the_latest_verification(terminal):
    terminal.events(
        VerificationRequested("t7", "alice", "LAP", "contact"),
        VerificationRequested("t8", "bob", "PHONE", "contact"),
    )
    terminal.events(CodesReady("t8", EMOJI, (1, 2, 3)), CodesReady("t7", EMOJI, (1, 2, 3)))

    terminal.type("/cancel")

    assert terminal.link.calls == [("cancel", "t7")]
    assert "The verification with alice's device LAP was cancelled." in terminal.printed()
    terminal.type("/confirm")
    assert terminal.link.calls[-1] == ("confirm", "t8")


def test_naming_the_user_picks_their_verification_instead_of_the_latest(terminal):
    terminal.events(
        VerificationRequested("t7", "alice", "LAP", "contact"),
        VerificationRequested("t8", "bob", "PHONE", "contact"),
    )

    assert terminal.type("/accept alice")
    assert terminal.type("/cancel bob")

    assert terminal.link.calls == [("accept", "t7"), ("cancel", "t8")]


def test_codes_of_a_verification_nobody_named_are_still_shown(terminal):
    terminal.events(CodesReady("t9", EMOJI, (1, 2, 3)))

    assert "Compare these with the screen of the other device:" in terminal.printed()
    assert terminal.type("/confirm")
    assert terminal.link.calls == [("confirm", "t9")]


def test_a_request_says_who_asks_and_accept_accepts_it(terminal):
    terminal.events(VerificationRequested("t3", "alice", "LAP", "contact"))

    assert (
        "alice's device LAP asks to verify you by comparing emoji: type /accept (or /cancel)."
        in (terminal.printed())
    )
    assert terminal.type("/accept")
    assert terminal.link.calls == [("accept", "t3")]
    assert terminal.type("/accept") is False  # accepted already
    assert "error: No verification is waiting for you to accept." in terminal.errors()


def test_a_cancellation_by_the_other_side_is_printed_once_and_ends_it(terminal):
    terminal.events(VerificationRequested("t3", "alice", "LAP", "contact"))
    terminal.events(VerificationCancelled("t3", "mismatch"))

    cancelled = VerificationCancelled("t3", "mismatch").text
    assert terminal.printed().count(cancelled) == 1
    assert terminal.type("/cancel") is False


def test_verify_fetches_alices_keys_then_shows_the_number(terminal):
    assert terminal.type("/verify alice")
    assert terminal.link.fetched == ["alice"]

    terminal.link.numbers["alice"] = NUMBER
    terminal.events(KeysFetched(("alice",)))

    assert any(NUMBER in line for line in terminal.printed())


def test_verify_of_someone_without_keys_says_why_in_words(terminal):
    terminal.type("/verify alice")
    terminal.events(KeysFetched(("alice",)))

    assert terminal.errors()[-1].startswith("error: The safety number with alice is not known yet")
    assert "has no encryption key yet" in terminal.errors()[-1]
    assert terminal.link.fetched == ["alice"]  # asked once, not again and again


def test_verify_with_only_the_safety_number_starts_no_comparison(terminal):
    terminal.link.numbers["alice"] = NUMBER
    terminal.link.known["alice"] = [device("alice", "OLD", signed=False)]

    assert terminal.type("/verify alice")

    assert terminal.link.calls == []
    assert any("the safety number is enough" in line for line in terminal.printed())


def test_verified_marks_the_user_and_the_security_line_says_so(terminal):
    terminal.type("/pm alice")
    terminal.link.numbers["alice"] = NUMBER

    assert terminal.type("/verified alice")

    assert terminal.link.verified == {"alice"}
    assert "alice is verified." in terminal.printed()
    assert "* the private chat with alice: end-to-end encrypted; verified" in terminal.errors()


# --- devices, approval, identity -------------------------------------------------------------


def test_a_new_device_of_mine_is_announced_and_approved_by_id_or_by_name(terminal):
    terminal.link.known["me"] = [device("me", "d1", here=True), device("me", "NEW", signed=False)]
    terminal.events(OwnDeviceToApprove("NEW"))
    assert OwnDeviceToApprove("NEW").text in terminal.printed()

    assert terminal.type("/approve NEW")
    assert terminal.link.calls == [("start", "me", "NEW", "device")]
    terminal.events(CodesReady("t1", EMOJI, (1, 2, 3)))
    assert "Compare these with the screen of your device NEW:" in terminal.printed()

    terminal.controller.account.devices = (DeviceInfo("NEW", "phone", "", "", False, False),)
    assert terminal.type("/approve phone")
    assert terminal.link.calls[-1] == ("start", "me", "NEW", "device")


def test_approving_an_unknown_device_says_which_ones_are_known(terminal):
    terminal.link.known["me"] = [device("me", "d1", here=True)]

    assert terminal.type("/approve ghost") is False

    assert (
        "There is no device 'ghost' of yours with encryption keys (known: d1)"
        in (terminal.errors()[-1])
    )
    assert terminal.type("/approve") is False
    assert terminal.errors()[-1].startswith("error: Usage: /approve DEVICE")


def test_devices_of_another_user_are_listed_with_their_keys(terminal):
    terminal.link.known["alice"] = [device("alice", "LAP"), device("alice", "OLD", signed=False)]

    assert terminal.type("/devices alice")

    printed = terminal.printed()
    fingerprint = " ".join(["AAAA"] * 10 + ["AAA"])
    assert "alice's devices (2); alice is not verified (/verify alice):" in printed
    assert f"  LAP  key: {fingerprint}  (signed)" in printed
    assert f"  OLD  key: {fingerprint}  (NOT signed by alice's identity)" in printed


def test_devices_of_a_user_not_fetched_yet_are_fetched_then_listed(terminal):
    assert terminal.type("/devices alice")
    assert terminal.link.fetched == ["alice"]

    terminal.link.known["alice"] = [device("alice", "LAP")]
    terminal.events(KeysFetched(("alice",)))

    assert "alice's devices (1); alice is not verified (/verify alice):" in terminal.printed()


def test_my_devices_table_shows_each_key_and_whether_it_is_approved(terminal):
    terminal.link.known["me"] = [device("me", "d1", here=True), device("me", "d2", signed=False)]
    dialog = AccountDialog(
        terminal.controller, say=terminal.view.say, error=terminal.view.notify, encoding=None
    )
    listed = (
        DeviceInfo("d1", "laptop", "", "", True, True),
        DeviceInfo("d2", "phone", "", "", False, False),
        DeviceInfo("d3", "tablet", "", "", False, False),
    )

    dialog.event(DevicesListed(listed))

    printed = terminal.printed()
    fingerprint = " ".join(["AAAA"] * 10 + ["AAA"])
    assert printed[printed.index("  d1  laptop  -          this device, online") + 1] == (
        f"      key {fingerprint} (approved)"
    )
    assert f"      key {fingerprint} (NOT approved: /approve d2 if it is yours)" in printed
    assert any(line.startswith("      no encryption key known") for line in printed)


def test_the_devices_table_without_end_to_end_has_no_key_lines():
    table = devices_table((DeviceInfo("d1", "laptop", "", "", True, True),))

    assert "key" not in table


def test_acknowledge_accepts_only_a_changed_identity(terminal):
    assert terminal.type("/acknowledge alice") is False
    assert "alice's identity has not changed: there is nothing to accept." in terminal.printed()

    terminal.link.changed.add("alice")
    assert terminal.type("/acknowledge alice")
    assert terminal.link.calls == [("acknowledge", "alice")]


def test_reset_identity_from_a_script_needs_yes(terminal):
    assert terminal.type("/reset-identity") is False
    assert "type /reset-identity yes" in terminal.errors()[-1]
    assert terminal.link.calls == []

    assert terminal.type("/reset-identity yes")
    assert terminal.link.calls == [("reset",)]


def test_reset_identity_on_a_terminal_asks_whether_you_are_sure(terminal):
    dialog = AccountDialog(
        terminal.controller,
        say=terminal.view.say,
        error=terminal.view.notify,
        encoding=None,
        interactive=True,
    )
    terminal.view.on_account_command = dialog.command

    assert terminal.type("/reset-identity")
    assert dialog.question is not None and "[y/N]" in dialog.question.text
    dialog.answer("n")
    assert terminal.link.calls == []
    assert "Nothing was reset." in terminal.printed()

    terminal.type("/reset-identity")
    dialog.answer("yes")
    assert terminal.link.calls == [("reset",)]


# --- words, never a traceback ----------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "/verify alice",
        "/verified alice",
        "/accept",
        "/confirm",
        "/cancel",
        "/approve NEW",
        "/acknowledge alice",
        "/reset-identity yes",
        "/devices alice",
    ],
)
def test_without_a_remembered_device_every_command_says_what_it_needs(line):
    terminal = Terminal(with_device=False)

    assert terminal.type(line) is False

    assert terminal.errors()[-1] == f"error: {NEEDS_A_DEVICE}"


@pytest.mark.parametrize("command", ["verify", "verified", "acknowledge", "devices"])
def test_an_unknown_user_is_answered_in_words(terminal, command):
    assert terminal.type(f"/{command} zed") is False

    assert terminal.errors()[-1] == (
        "error: There is no user named 'zed'. Type /users to see who is here."
    )


def test_verifying_yourself_is_answered_in_words(terminal):
    assert terminal.type("/verify me") is False

    assert terminal.errors()[-1].startswith("error: That is you.")


# --- lines and security lines ----------------------------------------------------------------


def wire_pm(msg_id: int, sender: str, text: str) -> dict[str, Any]:
    return {
        "type": "private",
        "msg_id": msg_id,
        "from": sender,
        "to": "me",
        "ts": "2026-12-04T10:00:00.000Z",
        "e2e": sealed(text),
    }


def test_an_unreadable_message_is_marked_and_printed_again_once_readable(terminal):
    terminal.link.readable = False
    push(terminal.controller, wire_pm(5, "alice", "see you at noon"))

    cannot = [line for line in terminal.printed() if line.startswith("[pm] alice: ")]
    assert len(cannot) == 1
    assert cannot[0].startswith("[pm] alice: (cannot decrypt) ")

    push(terminal.controller, {"type": "to_device", "messages": []})  # its key comes

    assert terminal.printed()[-1] == "[pm] alice: (now readable) see you at noon"


def test_a_readable_message_read_again_is_printed_once(terminal):
    push(terminal.controller, wire_pm(5, "alice", "hello"))
    terminal.events(Shown("pm:alice:me", 5, "alice", "hello"))  # e.g. a key shared again

    assert terminal.printed().count("[pm] alice: hello") == 1


def test_switching_conversation_prints_its_security_once(terminal):
    assert f"* now talking in #lobby ({PUBLIC_ROOM})" in terminal.errors()

    terminal.type("/pm alice")
    terminal.controller.select(room_key("secret"))
    terminal.controller.select(pm_key("alice"))

    errors = terminal.errors()
    assert (
        "* now talking in the private chat with alice (end-to-end encrypted; not verified: alice)"
        in (errors)
    )
    assert "* now talking in #secret (end-to-end encrypted; verified)" in errors


def test_starting_a_private_chat_with_pm_prints_its_security_once(terminal):
    terminal.type("/pm bob hi")
    terminal.type("/pm bob again")

    security = "* the private chat with bob: end-to-end encrypted; not verified: bob"
    assert terminal.errors().count(security) == 1


def test_codes_leave_out_symbols_that_the_output_cannot_show():
    text = codes_text("alice", EMOJI, (1, 2, 3), "ascii")

    assert "  Dog   Cat   Lion   Horse   Unicorn   Pig   Elephant" in text.splitlines()


def test_the_main_loop_ticks_the_verifications(monkeypatch):
    """The terminal's loop calls e2e_tick now and then (idle verifications expire)."""
    ticks = []
    monkeypatch.setattr(terminal_client, "E2E_TICK_SECONDS", 0.0)
    monkeypatch.setattr(ChatController, "e2e_tick", lambda self: ticks.append(1))
    client = terminal_client.TerminalClient.__new__(terminal_client.TerminalClient)
    client.controller = Terminal().controller
    client.view = client.controller.view
    calls = iter([None, None, SimpleNamespace()])

    class Stop(Exception):
        pass

    def next_event():
        try:
            return next(calls)
        except StopIteration:
            raise Stop from None

    client._next = next_event
    client._next_read = lambda: None
    with pytest.raises(Stop):
        client._chat()

    assert len(ticks) >= 3
