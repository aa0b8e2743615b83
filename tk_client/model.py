"""The conversations as the clients hold them: plain data, no tkinter, no network.

:class:`tk_client.chat_state.ChatState` (the controller) fills these from the
server's messages, read here by :func:`message_from_wire` and :func:`rooms_from_wire`
and ordered by :meth:`Conversation.merge`; the views and the terminal printer only
read them.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LOBBY = "lobby"


@dataclass(frozen=True, order=True)
class ConversationKey:
    """A room (``kind="room"``) or the private chat with one user (``kind="pm"``)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"#{self.name}" if self.kind == "room" else f"@{self.name}"


def room_key(name: str) -> ConversationKey:
    return ConversationKey("room", name)


def pm_key(user: str) -> ConversationKey:
    return ConversationKey("pm", user)


class MessageState(enum.Enum):
    QUEUED = "queued"  # typed; waiting for the connection
    SENDING = "sending"  # on the wire, no ack yet
    DELIVERED = "delivered"  # stored by the server (ack, or received from it)
    FAILED = "failed"  # not sent, or not known to be sent (see ``error``)


@dataclass
class ChatMessage:
    """One line of a conversation: a message, or a notice from the client (``notice=True``)."""

    sender: str
    text: str
    ts: str | None = None  # the server's UTC time, PROTOCOL.md 3.0
    msg_id: int | None = None
    own: bool = False
    private: bool = False
    state: MessageState = MessageState.DELIVERED
    request_id: str | None = None
    error: str | None = None
    notice: bool = False
    level: str = "info"  # for notices: info or error
    encrypted: bool = False  # end to end (section 4): the server never had the text
    unreadable: bool = False  # encrypted, and ``text`` says why it cannot be shown (4.9)

    @property
    def time(self) -> dt.datetime | None:
        """``ts`` in the local time zone (None for messages not yet stored)."""
        if not self.ts:
            return None
        try:
            stamp = dt.datetime.strptime(self.ts, "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            return None
        return stamp.replace(tzinfo=dt.UTC).astimezone()


@dataclass
class Conversation:
    key: ConversationKey
    messages: list[ChatMessage] = field(default_factory=list)
    unread: int = 0
    has_more: bool | None = None  # None: no history asked for yet
    loading: bool = False

    def oldest_id(self) -> int | None:
        ids = [m.msg_id for m in self.messages if m.msg_id is not None]
        return min(ids) if ids else None

    def newest_id(self) -> int | None:
        ids = [m.msg_id for m in self.messages if m.msg_id is not None]
        return max(ids) if ids else None

    def find(self, msg_id: int) -> ChatMessage | None:
        return next((m for m in self.messages if m.msg_id == msg_id), None)

    def position(self, msg_id: int) -> int:
        """Where a stored message with ``msg_id`` belongs: after every older stored one.

        Messages not stored yet (no ``msg_id``) stay where they are, at the end.
        """
        for index in range(len(self.messages) - 1, -1, -1):
            other = self.messages[index].msg_id
            if other is not None and other < msg_id:
                return index + 1
        return 0

    def merge(self, incoming: Iterable[ChatMessage]) -> tuple[int, int]:
        """Insert stored messages in msg_id order, skipping ones already here.

        Returns how many went to the top and how many inside: a view keeps its
        scroll position for the first kind (older history) and redraws for the second.
        """
        top = inside = 0
        for message in sorted(incoming, key=lambda m: m.msg_id or 0, reverse=True):
            if message.msg_id is None or self.find(message.msg_id) is not None:
                continue
            index = self.position(message.msg_id)
            self.messages.insert(index, message)
            if index == 0:
                top += 1
            else:
                inside += 1
        return top, inside


@dataclass
class Room:
    name: str
    private: bool = False
    owner: str | None = None
    members: list[str] = field(default_factory=list)


# --- from the server's messages (PROTOCOL.md); anything malformed is skipped -----------------


def message_from_wire(message: dict[str, Any], me: str | None, private: bool) -> ChatMessage | None:
    """A stored ``message``/``private`` (pushed, or in a history page); None if malformed."""
    sender, text = message.get("from"), message.get("text")
    msg_id, ts = message.get("msg_id"), message.get("ts")
    if not isinstance(sender, str) or not isinstance(text, str) or type(msg_id) is not int:
        return None
    return ChatMessage(
        sender=sender,
        text=text,
        ts=ts if isinstance(ts, str) else None,
        msg_id=msg_id,
        own=sender == me,
        private=private,
    )


def rooms_from_wire(rooms: Iterable[Any]) -> dict[str, Room]:
    """The ``rooms`` list of a push or an answer, by name; entries without a name skipped."""
    fresh: dict[str, Room] = {}
    for room in rooms:
        if not isinstance(room, dict) or not isinstance(room.get("name"), str):
            continue
        members = room.get("members")
        fresh[room["name"]] = Room(
            name=room["name"],
            private=bool(room.get("private")),
            owner=room.get("owner") if isinstance(room.get("owner"), str) else None,
            members=[m for m in members if isinstance(m, str)] if isinstance(members, list) else [],
        )
    return fresh
