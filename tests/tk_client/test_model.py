"""The conversations' data: stored messages in msg_id order, and what is read off the wire."""

from __future__ import annotations

from tk_client.model import (
    ChatMessage,
    Conversation,
    Room,
    message_from_wire,
    room_key,
    rooms_from_wire,
)


def stored(msg_id: int, text: str = "") -> ChatMessage:
    return ChatMessage(sender="alice", text=text or f"m{msg_id}", msg_id=msg_id)


def ids(conversation: Conversation) -> list[int | None]:
    return [m.msg_id for m in conversation.messages]


def test_older_history_goes_to_the_top_and_is_counted_as_such():
    conversation = Conversation(room_key("lobby"), [stored(10), stored(11)])

    assert conversation.merge([stored(8), stored(9)]) == (2, 0)
    assert ids(conversation) == [8, 9, 10, 11]


def test_a_gap_filled_later_counts_as_inside_and_duplicates_are_skipped():
    conversation = Conversation(room_key("lobby"), [stored(1), stored(5)])

    assert conversation.merge([stored(3), stored(5), stored(1)]) == (0, 1)
    assert ids(conversation) == [1, 3, 5]


def test_messages_not_stored_yet_stay_at_the_end():
    sending = ChatMessage(sender="me", text="typed", own=True)
    conversation = Conversation(room_key("lobby"), [stored(1), sending])

    assert conversation.position(2) == 1
    assert conversation.newest_id() == 1 and conversation.oldest_id() == 1


def test_a_stored_message_is_read_with_whether_it_is_ones_own():
    wire = {"from": "me", "text": "hi", "msg_id": 7, "ts": "2026-03-02T10:15:00.000Z"}

    message = message_from_wire(wire, "me", private=True)

    assert message == ChatMessage(
        sender="me", text="hi", ts="2026-03-02T10:15:00.000Z", msg_id=7, own=True, private=True
    )


def test_a_malformed_message_is_skipped():
    assert message_from_wire({"from": "alice", "text": "hi"}, "me", private=False) is None
    assert message_from_wire({"from": "alice", "text": "hi", "msg_id": True}, "me", False) is None


def test_rooms_are_read_by_name_and_entries_without_one_are_skipped():
    rooms = rooms_from_wire(
        [
            {"name": "dev", "private": True, "owner": "alice", "members": ["alice", 3, "me"]},
            {"private": True},
            "lobby",
            {"name": "lobby", "members": None},
        ]
    )

    assert rooms == {
        "dev": Room("dev", private=True, owner="alice", members=["alice", "me"]),
        "lobby": Room("lobby"),
    }
