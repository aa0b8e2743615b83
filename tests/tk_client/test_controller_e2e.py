"""The controller and end-to-end conversations (docs/protocol.md section 4), over a fake link.

Private messages and private rooms are always sent encrypted and never as text; public
rooms stay plain and say so; encrypted messages show their text, or why not, and the
line changes in place when the key arrives. The real link and engine are tested in
tests/tk_client/e2e/ and against the real server in tests/e2e/.
"""

from __future__ import annotations

import pytest

from tk_client.controller import ChatController
from tk_client.e2e.engine import Notice
from tk_client.e2e.verification import CodesReady
from tk_client.events import LoggedIn, RequestState, RequestStatus, RequestUpdate
from tk_client.model import MessageState, pm_key, room_key
from tk_client.secure import DECRYPTING, NEEDS_A_DEVICE, PUBLIC_ROOM

from .fake_e2e import FakeLink, sealed
from .test_controller import ROOMS, FakeSession, RecordingView, answer, push

SECRET_ROOM = room_key("secret")


@pytest.fixture
def session():
    return FakeSession()


@pytest.fixture
def view():
    class View(RecordingView):
        def __init__(self) -> None:
            super().__init__()
            self.e2e_events: list[object] = []

        def e2e_event(self, event):
            self.e2e_events.append(event)

    return View()


@pytest.fixture
def links():
    return []


@pytest.fixture
def controller(session, view, links):
    def opener(user, device):
        links.append(FakeLink(session, user, device))
        return links[-1]

    controller = ChatController(session, view, e2e_opener=opener, autoload_history=False)
    controller.handle(LoggedIn("me", ROOMS, again=False, device="d1"))
    push(controller, {"type": "users", "online": ["me"], "all": ["alice", "bob", "me"]})
    return controller


def lines(controller, key):
    return [(m.text, m.encrypted, m.unreadable) for m in controller.conversation(key).messages]


def test_a_private_message_leaves_encrypted_and_never_as_text(controller, session):
    controller.submit("/pm alice the code is 1234")

    sent = session.last("pm")
    assert "text" not in sent
    assert sent["e2e"] == sealed("the code is 1234")
    assert lines(controller, pm_key("alice")) == [("the code is 1234", True, False)]


def test_a_private_room_message_leaves_encrypted_and_a_public_one_as_text(controller, session):
    controller.select(SECRET_ROOM)
    controller.submit("only us")
    controller.select(room_key("lobby"))
    controller.submit("hello all")

    assert [(r.get("room"), r.get("text"), r.get("e2e")) for r in session.of("send")] == [
        ("secret", None, sealed("only us")),
        ("lobby", "hello all", None),
    ]


def test_without_a_remembered_device_private_conversations_are_refused_not_sent_plain(
    session, view
):
    controller = ChatController(session, view, e2e_opener=lambda u, d: FakeLink(session, u, d))
    controller.handle(LoggedIn("me", ROOMS, again=False))  # no device: no link

    assert controller.submit("/pm alice hi") is False

    assert session.of("pm") == []
    assert view.last_notice() == NEEDS_A_DEVICE


def test_a_message_waiting_for_keys_shows_queued_then_follows_its_request(
    controller, session, links
):
    links[0].hold_sends = True
    controller.submit("/pm alice later")
    line = controller.conversation(pm_key("alice")).messages[-1]
    assert (line.state, session.of("pm")) == (MessageState.QUEUED, [])

    links[0].release()
    request = session.last("pm")
    answer(controller, session, request, {"type": "ack", "ref": request["id"], "msg_id": 9})

    assert (line.state, line.msg_id) == (MessageState.DELIVERED, 9)


def test_a_changed_verified_identity_stops_the_message_with_words(controller, session, links, view):
    links[0].blocked = {"alice"}

    assert controller.submit("/pm alice hi") is False

    assert session.of("pm") == []
    assert "acknowledge the change" in view.last_notice()
    assert lines(controller, pm_key("alice")) == []


def test_an_encrypted_private_message_shows_its_text(controller):
    push(
        controller,
        {
            "type": "private",
            "msg_id": 5,
            "from": "alice",
            "to": "me",
            "ts": "2026-12-04T10:00:00.000Z",
            "e2e": sealed("psst"),
        },
    )

    assert lines(controller, pm_key("alice")) == [("psst", True, False)]


def test_an_unreadable_message_says_why_and_becomes_readable_when_its_key_arrives(
    controller, links, view
):
    links[0].readable = False
    push(
        controller,
        {"type": "message", "msg_id": 7, "room": "secret", "from": "alice", "e2e": sealed("x")},
    )
    assert lines(controller, SECRET_ROOM) == [
        ("Waiting for the key from alice's device. Asked your other devices.", True, True)
    ]

    push(controller, {"type": "to_device", "seq": 1, "from": "alice", "from_device": "a"})

    assert lines(controller, SECRET_ROOM) == [("x", True, False)]
    assert view.calls[-1][0] == "changed"


def test_a_message_whose_sender_is_being_looked_up_shows_a_placeholder_until_it_reads(
    controller, links
):
    links[0].quiet = True
    push(
        controller,
        {"type": "private", "msg_id": 8, "from": "alice", "to": "me", "e2e": sealed("hi")},
    )
    assert lines(controller, pm_key("alice")) == [(DECRYPTING, True, True)]

    push(controller, {"type": "to_device", "seq": 1, "from": "alice", "from_device": "a"})

    assert lines(controller, pm_key("alice")) == [("hi", True, False)]


def test_encrypted_history_is_decrypted_and_old_plain_messages_are_marked(controller, session):
    controller.select(pm_key("alice"))
    controller.load_older()
    request = session.last("history")
    answer(
        controller,
        session,
        request,
        {
            "type": "history",
            "ref": request["id"],
            "with": "alice",
            "has_more": False,
            "messages": [
                {"msg_id": 1, "from": "alice", "to": "me", "text": "from before"},
                {"msg_id": 2, "from": "alice", "to": "me", "e2e": sealed("now secret")},
            ],
        },
    )

    messages = controller.conversation(pm_key("alice")).messages
    assert [(m.text, m.encrypted) for m in messages] == [
        ("from before", False),
        ("now secret", True),
    ]
    assert "not end-to-end encrypted" in (messages[0].error or "")


def test_the_links_own_requests_are_answered_to_the_link(controller, session, links):
    status = links[0].ask("keys_query", users=["alice"])
    reply = {"type": "keys", "ref": status.id, "users": {}}

    controller.handle(
        RequestUpdate(RequestStatus(status.id, status.message, RequestState.DONE), reply)
    )

    assert links[0].answers[-1][1] == reply


def test_each_conversation_says_what_protects_it(controller):
    assert controller.security(room_key("lobby")) == PUBLIC_ROOM
    assert controller.security(pm_key("alice")) == "end-to-end encrypted; not verified: alice"
    assert controller.security(SECRET_ROOM) == "end-to-end encrypted; verified"


def test_a_reconnect_catches_the_same_link_up_again(controller, links):
    controller.handle(LoggedIn("me", ROOMS, again=True, device="d1"))

    assert len(links) == 1
    assert links[0].logins == 2


def test_verification_events_reach_the_view_and_notices_the_conversation(controller, view, links):
    codes = CodesReady("t1", [("🐶", "Dog")], (1, 2, 3))
    links[0].next_events = [codes, Notice("alice's identity changed")]

    push(controller, {"type": "devices_changed", "users": ["alice"], "version": 3})

    assert view.e2e_events == [codes]
    assert view.last_notice() == "alice's identity changed"
