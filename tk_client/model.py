"""The conversations as the clients hold them: plain data, no tkinter, no network.

:class:`tk_client.controller.ChatController` fills these from the server's
messages; the views and the terminal printer only read them.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

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

    def find(self, msg_id: int) -> ChatMessage | None:
        return next((m for m in self.messages if m.msg_id == msg_id), None)


@dataclass
class Room:
    name: str
    private: bool = False
    owner: str | None = None
    members: list[str] = field(default_factory=list)
