"""Which conversations are end-to-end encrypted, and their names in section 4. No tkinter.

Private messages and private rooms are always end to end (docs/protocol.md 4.1); public
rooms are not, and the clients say so. These helpers translate between the controller's
:class:`~tk_client.model.ConversationKey` and section 4's conversation ids, and build the
line shown for an encrypted message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatproto import e2e

from .model import ChatMessage, ConversationKey, Room, message_from_wire, pm_key, room_key

PUBLIC_ROOM = "public room: the server can read it"
NEEDS_A_DEVICE = (
    "Private conversations are end-to-end encrypted and need this computer to be a "
    'remembered device: log in with "Remember me" ticked (--remember NAME in the '
    "terminal client)."
)
CANNOT_READ_HERE = "End-to-end encrypted: log in as a remembered device to read it."
DECRYPTING = "Decrypting... (fetching the sender's keys)"
OLD_PLAIN = "not end-to-end encrypted (sent before encryption was turned on)"


def is_end_to_end(key: ConversationKey, rooms: Mapping[str, Room]) -> bool:
    """True for a private conversation and a private room (4.1)."""
    if key.kind == "pm":
        return True
    room = rooms.get(key.name)
    return room is not None and room.private


def conversation_id(key: ConversationKey, me: str) -> str:
    """Section 4's name of a conversation (what its messages' plaintext carries)."""
    if key.kind == "room":
        return e2e.conversation_id(room=key.name)
    return e2e.conversation_id(pm=(me, key.name))


def key_of(conversation: str, me: str) -> ConversationKey | None:
    """The controller's key for a section 4 conversation id; None if it is not ours."""
    kind, _, rest = conversation.partition(":")
    if kind == "room" and rest:
        return room_key(rest)
    first, _, second = rest.partition(":")
    if kind == "pm" and me in (first, second):
        return pm_key(second if first == me else first)
    return None


def encrypted_line(
    item: Mapping[str, Any], me: str | None, private: bool, text: str, unreadable: bool
) -> ChatMessage | None:
    """The line for a stored encrypted message (pushed or in history); None if malformed."""
    line = message_from_wire({**item, "text": text}, me, private)
    if line is not None:
        line.encrypted, line.unreadable = True, unreadable
    return line
