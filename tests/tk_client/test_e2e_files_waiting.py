"""An end-to-end offer that waits for its room key (protocol.md 4.12, 4.9): one line says
so until the offer is shown or refused; an offer that ends while it waits (cancelled,
expired, the connection lost) is dropped by the manager, the link and the engine; at most
MAX_WAITING_OFFERS of one sender (MAX_WAITING_TOTAL in all) wait at once, past which a new
one is refused at once."""

from __future__ import annotations

from typing import Any

from chatproto.e2e_files import FileFacts
from tk_client.controller import ChatController
from tk_client.e2e.files import FileOfferRefused, FileOfferVerified, FileOfferWaiting
from tk_client.e2e.megolm import Undecryptable
from tk_client.events import LoggedIn, Phase, PhaseChanged
from tk_client.files import TransferManager
from tk_client.files.events import SealedOfferArrived, SealedOfferEnded
from tk_client.files.manager import MAX_WAITING_OFFERS, MAX_WAITING_TOTAL, TOO_MANY_WAITING

from .test_e2e_files import OTHER, GlueTransfers, ManagerSession, T, sealed_offer

WAITING = "A file from alice is waiting for its key: asked your other devices."


# -- the manager -----------------------------------------------------------------------------


def test_a_waiting_offer_cancelled_by_its_sender_is_reported_as_ended():
    session = ManagerSession()
    manager = TransferManager(session)
    session.relay(sealed_offer())
    session.next_event(SealedOfferArrived)

    session.relay({"type": "file_cancel", "transfer": T, "reason": "expired"})

    assert session.next_event(SealedOfferEnded) == SealedOfferEnded(T, "alice", "expired")
    manager.close()


def test_waiting_offers_end_with_the_connection():
    session = ManagerSession()
    manager = TransferManager(session)
    session.relay(sealed_offer())
    session.relay(sealed_offer(OTHER))

    for hook in session.hooks:
        hook(PhaseChanged(Phase.RECONNECTING))

    ended = {session.next_event(SealedOfferEnded), session.next_event(SealedOfferEnded)}
    assert ended == {
        SealedOfferEnded(T, "alice", "disconnected"),
        SealedOfferEnded(OTHER, "alice", "disconnected"),
    }
    manager.close()


def test_past_the_limit_a_new_waiting_offer_is_refused_at_once():
    session = ManagerSession()
    manager = TransferManager(session)
    for n in range(MAX_WAITING_OFFERS):
        session.relay(sealed_offer(f"{n:032x}"))
    extra = "f" * 32

    session.relay(sealed_offer(extra))

    assert session.sent == [{"type": "file_cancel", "transfer": extra, "reason": TOO_MANY_WAITING}]
    ended = session.next_event(SealedOfferEnded)
    assert ended == SealedOfferEnded(extra, "alice", TOO_MANY_WAITING)
    manager.refuse_offer(f"{0:032x}")  # one settled: room for the next
    session.relay(sealed_offer(extra))
    assert len(session.sent) == 2  # the refusal of the first, nothing more for the new one
    manager.close()


def test_one_senders_waiting_offers_leave_room_for_the_others():
    """A user whose offers' keys never come cannot stop everyone else's files: the limit
    is per sender (as 3.3's 8 open transfers), with a bound on them all."""
    session = ManagerSession()
    manager = TransferManager(session)
    for n in range(MAX_WAITING_OFFERS):
        session.relay({**sealed_offer(f"{n:032x}"), "from": "mallory"})
        session.next_event(SealedOfferArrived)

    session.relay(sealed_offer("f" * 32))  # alice's

    assert session.sent == []
    assert session.next_event(SealedOfferArrived).transfer == "f" * 32
    manager.close()


def test_waiting_offers_are_bounded_whoever_sends_them():
    session = ManagerSession()
    manager = TransferManager(session)
    for n in range(MAX_WAITING_TOTAL):
        session.relay({**sealed_offer(f"{n:032x}"), "from": f"user{n % 64}"})
    session.sent.clear()

    session.relay({**sealed_offer("f" * 32), "from": "someone"})

    assert session.sent == [
        {"type": "file_cancel", "transfer": "f" * 32, "reason": TOO_MANY_WAITING}
    ]
    manager.close()


# -- the controller (both clients) ----------------------------------------------------------


class WaitingLink:
    """Stands for the E2ELink: an offer waits for its key; records what it drops."""

    approved = can_send = True

    def __init__(self) -> None:
        self.dropped: list[str] = []

    def open_file_offer(self, offer: dict[str, Any]) -> list[Any]:
        return [FileOfferWaiting(offer["transfer"], offer["from"], Undecryptable.KEY_NOT_RECEIVED)]

    def drop_file_offer(self, transfer: str) -> None:
        self.dropped.append(transfer)


def waiting_controller():
    from .test_controller import ROOMS, FakeSession, RecordingView

    transfers, view, link = GlueTransfers(), RecordingView(), WaitingLink()
    controller = ChatController(FakeSession(), view, transfers=transfers)
    controller.handle(LoggedIn("bob", ROOMS, again=False))
    controller.e2e = link
    controller.handle(SealedOfferArrived(sealed_offer()))
    return controller, transfers, view, link


def lines(controller: ChatController) -> list[str]:
    return [m.text for m in controller.conversation(controller.current).messages if m.notice]


def test_a_waiting_offer_shows_one_line_that_gives_way_to_the_offer():
    controller, transfers, view, _ = waiting_controller()
    assert view.last_notice() == WAITING
    controller.handle(SealedOfferArrived(sealed_offer()))  # the same offer again: no new line
    assert view.notices().count(WAITING) == 1

    facts = FileFacts("a.txt", 3, "ab" * 32, bytes(32))
    controller._e2e_events([FileOfferVerified(T, "alice", facts)])

    assert transfers.calls == [("verified", T, "a.txt")]
    assert WAITING not in lines(controller)
    assert view.calls[-1][0] == "conversation"  # redrawn without the line


def test_a_waiting_offer_refused_when_its_key_came_turns_its_line_into_the_refusal():
    controller, transfers, view, _ = waiting_controller()
    notices = len(view.notices())

    controller._e2e_events([FileOfferRefused(T, "alice")])

    refusal = "A file from alice could not be verified and was refused."
    assert transfers.calls == [("refused", T)]
    assert WAITING not in lines(controller) and refusal in lines(controller)
    assert len(view.notices()) == notices  # changed in place, not added
    assert view.calls[-1][0] == "changed" and view.calls[-1][2].level == "error"


def test_a_waiting_offer_that_ends_is_dropped_by_the_link_and_its_line_says_why():
    controller, _, _, link = waiting_controller()

    controller.handle(SealedOfferEnded(T, "alice", "cancelled"))

    assert link.dropped == [T]
    assert lines(controller)[-1] == "A file from alice was not received: cancelled."
    controller._e2e_events([FileOfferRefused(T, "alice")])  # late: a fresh notice, no crash


def test_an_offer_refused_for_too_many_waiting_is_said_in_words():
    controller, _, view, _ = waiting_controller()

    controller.handle(SealedOfferEnded(OTHER, "carol", TOO_MANY_WAITING))

    assert view.last_notice().startswith("A file from carol was not received: the recipient")


def test_the_terminal_prints_a_waiting_line_and_then_what_became_of_it():
    """A terminal cannot change a printed line: the new words follow it."""
    import io

    from tk_client.terminal_view import TerminalView

    out, err = io.StringIO(), io.StringIO()
    controller, _, _, _ = waiting_controller()
    view = TerminalView(out, err)
    key, line = controller._waiting_offers[T]
    view.message_added(key, line)

    controller.view = view
    controller._e2e_events([FileOfferRefused(T, "alice")])

    printed = out.getvalue() + err.getvalue()
    assert WAITING in printed
    assert "A file from alice could not be verified and was refused." in printed
