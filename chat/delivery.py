"""Who gets what, across every server process: the one module that talks to the channel layer.

Handlers and services say *what* happened (a room message, a private message,
rooms or users changed, a session must end); this module decides *how* it
reaches the sessions concerned. Today that is one channel-layer group per
room (``room.<name>``), one per user (``user.<id>``, so all of a user's
sessions get their private messages) and one of every logged-in session
(``online``), with one ``group_send`` each. A later change can replace that
with one layer message per server process and an in-process fan-out by
changing this module (and :mod:`chat.sessions`) only; the consumer's handlers
for the layer events below stay as they are.

Layer events (handled by :class:`chat.consumers.ChatConsumer`):

``chat.push``           a ready protocol message; ``room`` (only sessions that are in it
                        forward it), ``exclude`` (a channel name that must not get it)
``chat.private``        a ``private`` message; ``queued`` when it was stored for an
                        offline recipient (a session that gets it live marks it delivered)
``chat.rooms_changed``  the session's rooms changed: refresh groups, push ``rooms``
``chat.users``          a ``users`` push
``chat.end``            ``session_ended`` with ``reason``, then close 4003

The ``*_sync`` functions are for synchronous code (``transaction.on_commit``
callbacks of the services, management commands, the admin).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

ONLINE_GROUP = "online"


def room_group(room_name: str) -> str:
    return f"room.{room_name}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


async def _group_send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, event)


async def room_message(room_name: str, message: dict[str, Any]) -> None:
    """A ``message`` to every logged-in session of every member of the room."""
    await _group_send(
        room_group(room_name), {"type": "chat.push", "message": message, "room": room_name}
    )


async def private_message(user_ids: list[int], message: dict[str, Any], *, queued: bool) -> None:
    """A ``private`` to every session of the sender and of the recipient."""
    event = {"type": "chat.private", "message": message, "queued": queued}
    for user_id in dict.fromkeys(user_ids):
        await _group_send(user_group(user_id), event)


async def rooms_changed(user_ids: list[int], *, exclude: str | None = None) -> None:
    """Tell these users' sessions (except ``exclude``) to refresh and push their ``rooms``."""
    for user_id in dict.fromkeys(user_ids):
        await _group_send(user_group(user_id), {"type": "chat.rooms_changed", "exclude": exclude})


async def users_changed(message: dict[str, Any], *, exclude: str | None = None) -> None:
    """A ``users`` push to every logged-in session (except ``exclude``)."""
    await _group_send(ONLINE_GROUP, {"type": "chat.users", "message": message, "exclude": exclude})


async def end_sessions(user_id: int, reason: str) -> None:
    """End every session of a user: ``session_ended`` then close 4003."""
    await _group_send(user_group(user_id), {"type": "chat.end", "reason": reason})


async def to_channel(channel_name: str, event: dict[str, Any]) -> None:
    """One layer event to one session (the heartbeat's safety net uses it)."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.send(channel_name, event)


room_message_sync = async_to_sync(room_message)
private_message_sync = async_to_sync(private_message)
rooms_changed_sync = async_to_sync(rooms_changed)
users_changed_sync = async_to_sync(users_changed)
end_sessions_sync = async_to_sync(end_sessions)
