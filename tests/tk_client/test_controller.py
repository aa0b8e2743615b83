"""The controller without a display or a network: every command, the answers, completion."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tk_client.chat_state import unsent_messages
from tk_client.controller import ChatController, ControllerView
from tk_client.events import (
    Greeted,
    LoggedIn,
    NotConnected,
    Received,
    RequestState,
    RequestStatus,
    RequestUpdate,
)
from tk_client.model import MessageState, pm_key, room_key

from .fake_e2e import FakeLink, sealed

ROOMS = [
    {"name": "lobby", "private": False, "owner": None, "members": ["alice", "bob", "me"]},
    {"name": "dev", "private": False, "owner": "alice", "members": ["alice", "me"]},
    {"name": "random", "private": False, "owner": "bob", "members": ["bob"]},
    {"name": "secret", "private": True, "owner": "me", "members": ["me"]},
]


class FakeSession:
    """Records requests; the test answers them with :meth:`answer`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.ended = False
        self._ids = itertools.count(1)

    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus:
        if self.ended:
            raise NotConnected("the session has ended")
        message = {"type": type_, **fields, "id": f"r{next(self._ids)}"}
        self.requests.append(message)
        return RequestStatus(message["id"], message, RequestState.QUEUED)

    def send_message(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def last(self, type_: str) -> dict[str, Any]:
        return [r for r in self.requests if r["type"] == type_][-1]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["type"] == type_]


class RecordingView(ControllerView):
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.quitted = False
        self.file_for: str | None = None

    def message_added(self, key, message):
        self.calls.append(("added", key, message))

    def message_changed(self, key, message):
        self.calls.append(("changed", key, message))

    def conversation_changed(self, key, older=0):
        self.calls.append(("conversation", key, older))

    def current_changed(self, key):
        self.calls.append(("current", key))

    def users_changed(self, change):
        self.calls.append(("users", change))

    def quit(self):
        self.quitted = True

    def choose_file(self, user):
        self.file_for = user

    def notices(self) -> list[str]:
        return [c[2].text for c in self.calls if c[0] == "added" and c[2].notice]

    def last_notice(self) -> str:
        return self.notices()[-1]


class FakeTransfers:
    def __init__(self) -> None:
        self.offers: list[tuple[str, str]] = []
        self.handled: list[dict] = []

    def offer(self, user: str, path: str, *, end_to_end: bool = False) -> None:
        assert end_to_end
        self.offers.append((user, path))

    def handle(self, message: dict) -> bool:
        self.handled.append(message)
        return True


def answer(controller, session, request, reply, state=RequestState.DONE, **status):
    controller.handle(RequestUpdate(RequestStatus(request["id"], request, state, **status), reply))


def push(controller, message):
    controller.handle(Received(message))


@pytest.fixture
def session():
    return FakeSession()


@pytest.fixture
def view():
    return RecordingView()


@pytest.fixture
def controller(session, view):
    controller = ChatController(
        session, view, e2e_opener=lambda user, device: FakeLink(session, user, device)
    )
    controller.handle(LoggedIn("me", ROOMS, again=False, device="d1"))
    push(
        controller,
        {"type": "users", "online": ["alice", "me"], "all": ["alice", "bob", "carol", "me"]},
    )
    lobby_history = session.last("history")
    answer(
        controller,
        session,
        lobby_history,
        {
            "type": "history",
            "ref": lobby_history["id"],
            "room": "lobby",
            "messages": [],
            "has_more": False,
        },
    )
    view.calls.clear()
    return controller


def wire(msg_id, sender, text, room="lobby"):
    return {
        "type": "message",
        "msg_id": msg_id,
        "room": room,
        "from": sender,
        "text": text,
        "ts": "2026-03-02T10:15:00.000Z",
    }


def texts(controller, key):
    return [m.text for m in controller.conversation(key).messages if not m.notice]


# --- sending text --------------------------------------------------------------------------


def test_login_selects_the_lobby_and_loads_its_history(session, view):
    controller = ChatController(
        session, view, e2e_opener=lambda user, device: FakeLink(session, user, device)
    )
    controller.handle(LoggedIn("me", ROOMS, again=False, device="d1"))

    assert controller.current == room_key("lobby")
    assert session.last("history") == {"type": "history", "limit": 50, "room": "lobby", "id": "r1"}


def test_plain_text_goes_to_the_current_room_and_shows_as_pending(controller, session, view):
    assert controller.submit("hello everyone") is True

    assert session.last("send") == {
        "type": "send",
        "room": "lobby",
        "text": "hello everyone",
        "id": "r2",
    }
    kind, key, message = view.calls[-1]
    assert (kind, key, message.text, message.own) == (
        "added",
        room_key("lobby"),
        "hello everyone",
        True,
    )
    assert message.state is MessageState.QUEUED


def test_ack_marks_the_message_delivered_and_the_echo_is_not_shown_twice(controller, session):
    controller.submit("hi")
    send = session.last("send")

    answer(controller, session, send, None, RequestState.SENT)
    message = controller.conversation(room_key("lobby")).messages[-1]
    assert message.state is MessageState.SENDING

    answer(
        controller,
        session,
        send,
        {"type": "ack", "ref": send["id"], "msg_id": 7, "ts": "2026-03-02T10:15:00.000Z"},
    )
    push(controller, wire(7, "me", "hi"))

    assert message.state is MessageState.DELIVERED and message.msg_id == 7
    assert texts(controller, room_key("lobby")) == ["hi"]


def test_echo_arriving_before_the_ack_is_kept_once(controller, session):
    controller.submit("quick")
    send = session.last("send")

    push(controller, wire(9, "me", "quick"))
    answer(
        controller,
        session,
        send,
        {"type": "ack", "ref": send["id"], "msg_id": 9, "ts": "2026-03-02T10:15:00.000Z"},
    )

    messages = controller.conversation(room_key("lobby")).messages
    assert [(m.text, m.msg_id, m.state) for m in messages] == [("quick", 9, MessageState.DELIVERED)]


def test_failed_send_is_shown_as_not_sent_with_the_reason(controller, session):
    controller.submit("lost")
    send = session.last("send")

    answer(
        controller,
        session,
        send,
        None,
        RequestState.FAILED,
        error="the connection was lost before the server confirmed it",
        uncertain=True,
    )

    message = controller.conversation(room_key("lobby")).messages[-1]
    assert message.state is MessageState.FAILED
    assert "connection was lost" in message.error


def test_double_slash_sends_a_line_starting_with_a_slash(controller, session):
    controller.submit("//shrug")
    assert session.last("send")["text"] == "/shrug"


def test_blank_line_is_not_sent(controller, session):
    assert controller.submit("   ") is False
    assert session.of("send") == []


def test_too_long_text_is_refused_before_sending(controller, session, view):
    controller.handle(Greeted({"type": "greeting", "limits": {"max_text": 10}}, "SHA256:x"))

    assert controller.submit("x" * 11) is False
    assert session.of("send") == []
    assert "11 characters long; the limit is 10" in view.last_notice()


def test_text_in_a_room_one_has_left_is_refused(controller, session, view):
    controller.current = room_key("random")
    assert controller.submit("hi") is False
    assert "/join random" in view.last_notice()


# --- /pm -----------------------------------------------------------------------------------


def test_pm_sends_a_private_message_into_the_private_chat(controller, session):
    assert controller.submit("/pm alice are you there?")

    assert session.last("pm") == {
        "type": "pm",
        "to": "alice",
        "e2e": sealed("are you there?"),
        "id": "r2",
    }
    assert texts(controller, pm_key("alice")) == ["are you there?"]
    assert controller.current == room_key("lobby")


def test_pm_without_text_opens_the_private_chat_and_its_history(controller, session):
    controller.submit("/pm alice")

    assert controller.current == pm_key("alice")
    assert session.last("history") == {"type": "history", "limit": 50, "with": "alice", "id": "r2"}


def test_text_in_a_private_chat_is_a_private_message(controller, session):
    controller.select(pm_key("bob"))
    controller.submit("psst")
    assert session.last("pm") == {"type": "pm", "to": "bob", "e2e": sealed("psst"), "id": "r3"}


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/pm", "Usage: /pm USER [TEXT]"),
        ("/pm me hello", "yourself"),
        ("/pm nobody hi", "no user named 'nobody'"),
        ("/pm bad/name hi", "not a valid username"),
    ],
)
def test_bad_pm_is_answered_with_help(controller, session, view, line, words):
    assert controller.submit(line) is False
    assert words in view.last_notice()
    assert session.of("pm") == []


def test_incoming_private_message_opens_a_chat_with_an_unread_count(controller, view):
    push(
        controller,
        {
            "type": "private",
            "msg_id": 3,
            "from": "alice",
            "to": "me",
            "text": "psst",
            "ts": "2026-03-02T10:15:00.000Z",
        },
    )

    chat = controller.conversation(pm_key("alice"))
    assert [m.text for m in chat.messages] == ["psst"] and chat.messages[0].private
    assert chat.unread == 1
    assert pm_key("alice") in controller.private_chats()


def test_own_private_message_from_another_session_goes_to_the_partners_chat(controller):
    push(
        controller,
        {
            "type": "private",
            "msg_id": 4,
            "from": "me",
            "to": "bob",
            "text": "sent elsewhere",
            "ts": "2026-03-02T10:15:00.000Z",
        },
    )

    chat = controller.conversation(pm_key("bob"))
    assert chat.messages[0].own and chat.unread == 0


# --- /file ---------------------------------------------------------------------------------


def test_file_says_it_is_not_available_without_transfers(controller, view):
    assert controller.submit("/file alice notes.txt") is False
    assert "not available" in view.last_notice()


class DeviceLink:
    """Stands for the end-to-end link of a remembered, approved device."""

    can_send = approved = True


def test_file_hands_the_offer_to_the_transfers(session, view):
    transfers = FakeTransfers()
    controller = ChatController(session, view, transfers=transfers)
    controller.handle(LoggedIn("me", ROOMS, again=False))
    push(controller, {"type": "users", "online": ["alice"], "all": ["alice", "me"]})
    controller.e2e = DeviceLink()  # a remembered device: files go end to end (4.12)

    controller.submit("/file alice /tmp/notes.txt")
    controller.submit("/file alice")

    assert transfers.offers == [("alice", "/tmp/notes.txt")]
    assert view.file_for == "alice"


def test_file_offer_is_declined_when_this_client_cannot_receive(controller, session, view):
    push(
        controller,
        {
            "type": "file_offer",
            "transfer": "ab" * 16,
            "from": "alice",
            "name": "x.pdf",
            "size": 10,
            "sha256": "0" * 64,
        },
    )

    assert session.sent == [{"type": "file_reject", "transfer": "ab" * 16}]
    assert "x.pdf" in view.last_notice() and "declined" in view.last_notice()


# --- rooms ---------------------------------------------------------------------------------


def test_join_of_a_room_one_is_in_just_switches(controller, session):
    controller.submit("/join dev")
    assert controller.current == room_key("dev")
    assert session.of("join") == []


def test_join_asks_the_server_then_switches_to_the_room(controller, session, view):
    controller.submit("/join random")
    join = session.last("join")
    assert join == {"type": "join", "room": "random", "id": join["id"]}

    rooms = [dict(r, members=r["members"] + ["me"]) if r["name"] == "random" else r for r in ROOMS]
    answer(controller, session, join, {"type": "rooms", "ref": join["id"], "rooms": rooms})

    assert controller.current == room_key("random")
    assert "random" in [r.name for r in controller.joined_rooms()]
    assert view.last_notice() == "You joined #random."


def test_join_of_an_unknown_room_suggests_creating_it(controller, session, view):
    controller.submit("/join nowhere")
    join = session.last("join")
    answer(
        controller,
        session,
        join,
        {"type": "error", "ref": join["id"], "code": "unknown_room", "message": "no such room"},
        RequestState.FAILED,
        error="no such room",
        code="unknown_room",
    )

    assert "Could not join #nowhere" in view.last_notice()
    assert "/create nowhere" in view.last_notice()


def test_leave_without_a_room_leaves_the_current_one(controller, session, view):
    controller.select(room_key("dev"))
    controller.submit("/leave")
    leave = session.last("leave")
    assert leave["room"] == "dev"

    rooms = [dict(r, members=["alice"]) if r["name"] == "dev" else r for r in ROOMS]
    answer(controller, session, leave, {"type": "rooms", "ref": leave["id"], "rooms": rooms})

    assert controller.current == room_key("lobby")
    assert "dev" in [r.name for r in controller.other_rooms()]
    assert "You left #dev." in view.notices()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/leave lobby", "cannot be left"),
        ("/leave random", "You are not in #random"),
        ("/leave a b", "Usage: /leave [ROOM]"),
        ("/join", "Usage: /join ROOM"),
        ("/join Bad!", "not a valid room name"),
    ],
)
def test_bad_room_commands_are_answered_with_help(controller, session, view, line, words):
    assert controller.submit(line) is False
    assert words in view.last_notice()
    assert session.of("join") == session.of("leave") == []


def test_create_without_users_makes_a_public_room(controller, session):
    controller.submit("/create news")
    assert session.last("create_room") == {
        "type": "create_room",
        "room": "news",
        "private": False,
        "members": [],
        "id": "r2",
    }


def test_create_with_users_makes_a_private_room_with_them(controller, session, view):
    controller.submit("/create plans alice bob")
    create = session.last("create_room")
    assert (create["private"], create["members"]) == (True, ["alice", "bob"])

    rooms = [
        *ROOMS,
        {"name": "plans", "private": True, "owner": "me", "members": ["alice", "bob", "me"]},
    ]
    answer(controller, session, create, {"type": "rooms", "ref": create["id"], "rooms": rooms})

    assert controller.current == room_key("plans")
    assert "private room #plans, with alice, bob" in view.last_notice()


def test_create_private_flag_makes_a_private_room_with_only_oneself(controller, session):
    controller.submit("/create --private diary")
    create = session.last("create_room")
    assert (create["room"], create["private"], create["members"]) == ("diary", True, [])


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/create", "Usage: /create ROOM [USER...]"),
        ("/create dev", "#dev already exists"),
        ("/create UPPER", "not a valid room name"),
        ("/create team nobody", "no user named 'nobody'"),
    ],
)
def test_bad_create_is_answered_with_help(controller, session, view, line, words):
    assert controller.submit(line) is False
    assert words in view.last_notice()
    assert session.of("create_room") == []


def test_invite_adds_a_user_to_a_private_room(controller, session, view):
    controller.submit("/invite secret alice")
    invite = session.last("invite")
    assert (invite["room"], invite["user"]) == ("secret", "alice")

    answer(controller, session, invite, {"type": "rooms", "ref": invite["id"], "rooms": ROOMS})
    assert view.last_notice() == "alice is now a member of #secret."


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/invite secret", "Usage: /invite ROOM USER"),
        ("/invite dev alice", "#dev is public"),
        ("/invite secret nobody", "no user named 'nobody'"),
    ],
)
def test_bad_invite_is_answered_with_help(controller, session, view, line, words):
    assert controller.submit(line) is False
    assert words in view.last_notice()
    assert session.of("invite") == []


def test_removal_from_the_current_private_room_moves_to_the_lobby(controller, view):
    controller.select(room_key("secret"))
    push(controller, {"type": "rooms", "rooms": [r for r in ROOMS if r["name"] != "secret"]})

    assert controller.current == room_key("lobby")
    assert room_key("secret") not in controller.conversations
    assert view.last_notice() == "You are no longer a member of #secret."


# --- lists, help, quit ---------------------------------------------------------------------


def test_users_lists_online_then_offline(controller, view):
    controller.submit("/users")
    assert view.last_notice() == "Online (2): alice, me\nOffline (2): bob, carol"


def test_the_user_lists_put_online_users_first(controller):
    assert controller.users_by_presence() == (["alice", "me"], ["bob", "carol"])


def test_presence_deltas_keep_users_and_completion_in_step(controller, view):
    # PROTOCOL.md revision 1.1: after the users snapshot, presence deltas apply to it.
    push(
        controller,
        {
            "type": "presence",
            "online": ["bob"],
            "offline": ["alice"],
            "added": ["dan"],
            "removed": ["carol"],
        },
    )

    controller.submit("/users")
    assert view.last_notice() == "Online (2): bob, me\nOffline (2): alice, dan"
    change = [c[1] for c in view.calls if c[0] == "users"][-1]
    assert set(change.moved) == {"alice", "bob", "carol", "dan"}
    assert controller.complete("/pm d", 5).text == "/pm dan "
    assert controller.complete("/pm c", 5) is None


def test_the_private_chat_heading_follows_only_its_partners_presence(controller, view):
    controller.submit("/pm bob")
    view.calls.clear()

    push(
        controller,
        {"type": "presence", "online": ["carol"], "offline": [], "added": [], "removed": []},
    )
    assert ("current", pm_key("bob")) not in view.calls
    push(
        controller,
        {"type": "presence", "online": ["bob"], "offline": [], "added": [], "removed": []},
    )
    assert ("current", pm_key("bob")) in view.calls
    assert "(online)" in controller.title(pm_key("bob"))


def test_a_malformed_presence_is_mended_by_a_fresh_snapshot(controller, session, view):
    push(
        controller,
        {"type": "presence", "online": ["zed", "bob"], "offline": [], "added": [], "removed": []},
    )  # not sorted: nothing of it is applied
    assert controller.users_by_presence() == (["alice", "me"], ["bob", "carol"])

    users = session.last("users")
    answer(
        controller,
        session,
        users,
        {
            "type": "users",
            "ref": users["id"],
            "online": ["bob", "me"],
            "all": ["alice", "bob", "me"],
            "presence_interval": 3,
        },
    )
    assert controller.users_by_presence() == (["bob", "me"], ["alice"])
    assert controller.users.interval == 3


def test_the_terminal_says_who_came_and_went_but_not_the_first_snapshot():
    import io

    from tk_client.terminal_view import TerminalView

    err = io.StringIO()
    terminal = TerminalView(io.StringIO(), err)
    controller = ChatController(FakeSession(), terminal, autoload_history=False)
    terminal.controller = controller
    controller.handle(LoggedIn("me", ROOMS, again=False))
    push(controller, {"type": "users", "online": ["alice", "me"], "all": ["alice", "bob", "me"]})
    assert "is online" not in err.getvalue()

    push(
        controller,
        {"type": "presence", "online": ["bob"], "offline": ["alice"], "added": [], "removed": []},
    )
    assert err.getvalue().splitlines()[-2:] == ["* bob is online", "* alice went offline"]


def test_only_chat_messages_not_yet_answered_count_as_unsent(controller, session):
    controller.submit("hello")
    controller.submit("/pm alice psst")
    controller.submit("/join random")
    requests = [RequestStatus(r["id"], r, RequestState.QUEUED) for r in session.requests]

    unsent = unsent_messages(requests)

    assert [r.message.get("text") or r.message["e2e"] for r in unsent] == [
        "hello",
        sealed("psst"),
    ]


def test_rooms_lists_own_and_other_rooms(controller, view):
    controller.submit("/rooms")
    assert view.last_notice() == (
        "Your rooms: #lobby, #dev, #secret (private)\nOther rooms (/join ROOM): #random"
    )


def test_help_lists_every_command(controller, view):
    controller.submit("/help")
    text = view.last_notice()
    for usage in (
        "/pm USER [TEXT]",
        "/file USER [PATH]",
        "/join ROOM",
        "/leave [ROOM]",
        "/create ROOM [USER...]",
        "/invite ROOM USER",
        "/users",
        "/rooms",
        "/history",
        "/help [COMMAND]",
        "/quit",
    ):
        assert usage in text


def test_help_for_one_command(controller, view):
    controller.submit("/help invite")
    assert view.last_notice() == "Usage: /invite ROOM USER -- add USER to your private room ROOM"


def test_unknown_command_points_to_help(controller, view):
    assert controller.submit("/frobnicate now") is False
    assert view.last_notice() == "Unknown command /frobnicate. Type /help for the list of commands."


def test_quit_asks_the_view_to_quit(controller, view):
    controller.submit("/quit")
    assert view.quitted


def test_request_after_the_session_ended_is_reported(controller, session, view):
    session.ended = True
    assert controller.submit("anyone?") is False
    assert "the session has ended" in view.last_notice()


# --- incoming messages, unread counts, history ---------------------------------------------


def test_message_in_another_room_counts_as_unread_until_selected(controller):
    push(controller, wire(11, "alice", "in dev", room="dev"))
    push(controller, wire(12, "alice", "again", room="dev"))
    assert controller.conversation(room_key("dev")).unread == 2
    assert controller.total_unread() == 2

    controller.select(room_key("dev"))
    assert controller.conversation(room_key("dev")).unread == 0


def test_message_in_the_current_room_is_appended(controller, view):
    push(controller, wire(5, "alice", "hi all"))
    assert view.calls[-1][0] == "added"
    assert controller.conversation(room_key("lobby")).unread == 0


def test_history_command_prepends_older_messages(session, view):
    controller = ChatController(
        session, view, e2e_opener=lambda user, device: FakeLink(session, user, device)
    )
    controller.handle(LoggedIn("me", ROOMS, again=False, device="d1"))
    first = session.last("history")
    answer(
        controller,
        session,
        first,
        {
            "type": "history",
            "ref": first["id"],
            "room": "lobby",
            "messages": [wire(20, "alice", "b"), wire(21, "bob", "c")],
            "has_more": True,
        },
    )
    assert texts(controller, room_key("lobby")) == ["b", "c"]

    controller.submit("/history")
    older = session.last("history")
    assert older["before"] == 20
    answer(
        controller,
        session,
        older,
        {
            "type": "history",
            "ref": older["id"],
            "room": "lobby",
            "messages": [wire(3, "bob", "a")],
            "has_more": False,
        },
    )

    assert texts(controller, room_key("lobby")) == ["a", "b", "c"]
    assert view.calls[-1] == ("conversation", room_key("lobby"), 1)
    controller.submit("/history")
    assert view.last_notice() == "There are no older messages in #lobby."


def test_reconnect_fetches_what_was_missed(controller, session):
    push(controller, wire(30, "alice", "before the outage"))
    controller.handle(LoggedIn("me", ROOMS, again=True))
    refresh = session.last("history")
    assert refresh == {"type": "history", "limit": 50, "room": "lobby", "id": refresh["id"]}

    answer(
        controller,
        session,
        refresh,
        {
            "type": "history",
            "ref": refresh["id"],
            "room": "lobby",
            "messages": [
                wire(30, "alice", "before the outage"),
                wire(31, "bob", "during the outage"),
            ],
            "has_more": True,
        },
    )

    assert texts(controller, room_key("lobby")) == ["before the outage", "during the outage"]
    assert controller.conversation(room_key("lobby")).has_more is False  # paging state kept


# --- completion ----------------------------------------------------------------------------


def test_tab_cycles_through_usernames_after_pm(controller):
    push(controller, {"type": "users", "online": ["alice"], "all": ["alice", "alina", "bob", "me"]})

    first = controller.complete("/pm al", 6)
    second = controller.complete(first.text, first.cursor)
    third = controller.complete(second.text, second.cursor)

    assert [first.text, second.text, third.text] == ["/pm alice ", "/pm alina ", "/pm alice "]
    assert first.candidates == ("alice", "alina")


def test_tab_completes_rooms_after_join_and_users_after_invite(controller):
    assert controller.complete("/join ra", 8).text == "/join random "
    assert controller.complete("/invite se", 10).text == "/invite secret "
    assert controller.complete("/invite secret b", 16).text == "/invite secret bob "
    assert controller.complete("/file ca", 8).text == "/file carol "


def test_tab_after_leave_offers_only_rooms_one_is_in(controller):
    completion = controller.complete("/leave ", 7)
    assert completion.candidates == ("dev", "secret")


def test_tab_completes_commands_and_leaves_plain_text_alone(controller):
    assert controller.complete("/inv", 4).text == "/invite "
    assert controller.complete("hello al", 8) is None
    assert controller.complete("/pm zz", 6) is None


def test_typing_between_tabs_starts_a_new_completion(controller):
    first = controller.complete("/pm a", 5)
    assert first.text == "/pm alice "
    controller.completer.reset()
    assert controller.complete("/pm b", 5).text == "/pm bob "


def test_tab_in_the_middle_of_a_line_keeps_the_rest(controller):
    completion = controller.complete("/pm al hello", 6)
    assert (completion.text, completion.cursor) == ("/pm alice hello", 10)
