"""Who gets what, across every server process: the one module that talks to the channel layer.

Handlers and services say *what* happened (a room message, a private message,
rooms or users changed, a session must end); this module decides *how* it
reaches the sessions concerned.

Pushes that may go to many sessions (room messages, private messages, presence)
travel as **one layer message per server process**: every process that has
logged-in sessions subscribes one channel of its own to the group
``chat-procs``, and :mod:`chat.sessions` fans each message out to the local
sessions it concerns, encoding the JSON once and sealing it per session. That
replaces one layer message and one consumer wake-up per recipient (the Channels
tutorial's design, ~250 µs of server CPU per delivery before any encryption).

Events for particular sessions stay per session, through each session's own
channel: the group ``user.<id>`` (all of a user's sessions) and the session's
channel name.

Layer events
------------

To the processes (group ``chat-procs``; handled by :mod:`chat.sessions`):

``chat.fanout``         ``to``: ``room`` (``room``: sessions in it) or ``users`` (``users``:
                        ids whose sessions get it; ``queued`` when stored for an offline
                        recipient, whose sessions then mark it delivered); ``message``:
                        the protocol message (a ``private``, or ``devices_changed``)
``chat.presence``       ``online``, ``offline``: a process's net presence changes since its
                        last tick, one message per process per interval, ``origin``: the
                        sender's :class:`chat.presence_feed.PresenceFeed`; or ``added``,
                        ``removed``: accounts that became or stopped being active (sent
                        from wherever the account changed). Each process applies it to its
                        view and pushes its sessions ``presence`` deltas at its next tick

To sessions (handled by :class:`chat.consumers.ChatConsumer`):

``chat.rooms_changed``  the session's rooms changed: re-read them, push ``rooms``
``chat.end``            ``session_ended`` with ``reason``, then close 4003; only the
                        sessions of ``devices`` when it is a list, never ``except``
``chat.to_device``      ``messages``: ``[{"device", "message"}]``, to-device pushes for the
                        user's sessions logged in as that ``device`` (end-to-end
                        encryption, :mod:`chat.e2e_handlers`)
``chat.backup_changed`` ``message``: a ``backup_changed`` push (a new key backup), for the
                        user's sessions but ``exclude`` (:mod:`chat.backup_handlers`)
``chat.transfer``       file transfers, sent by :mod:`chat.transfers` through
                        :func:`to_channel` and :func:`to_user` (its docstring has the fields)

After commit
------------
Services broadcast after their transaction commits (``transaction.on_commit``
with the ``*_sync`` functions below). Run from synchronous code (the admin,
management commands) these send at once. A session's request runs the service
through :func:`collecting` instead, which keeps the broadcasts for the consumer
to send on the event loop after its direct answer: the sender's ``ack`` comes
before the message itself, and no worker thread waits on the loop.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

P = ParamSpec("P")
R = TypeVar("R")

PROCESS_GROUP = "chat-procs"

Broadcast = Callable[[], Awaitable[None]]


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


async def _group_send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, event)


async def room_message(room_name: str, message: dict[str, Any]) -> None:
    """A ``message`` to every logged-in session of every member of the room."""
    await _group_send(
        PROCESS_GROUP, {"type": "chat.fanout", "to": "room", "room": room_name, "message": message}
    )


async def private_message(user_ids: list[int], message: dict[str, Any], *, queued: bool) -> None:
    """A ``private`` to every session of the sender and of the recipient."""
    event = {
        "type": "chat.fanout",
        "to": "users",
        "users": list(dict.fromkeys(user_ids)),
        "message": message,
        "queued": queued,
    }
    await _group_send(PROCESS_GROUP, event)


async def devices_changed(user_ids: list[int], message: dict[str, Any]) -> None:
    """A ``devices_changed`` push to every session of these users (one layer message per
    process, as for private messages)."""
    event = {
        "type": "chat.fanout",
        "to": "users",
        "users": list(dict.fromkeys(user_ids)),
        "message": message,
    }
    await _group_send(PROCESS_GROUP, event)


async def to_device(user_id: int, messages: list[dict[str, Any]]) -> None:
    """To-device pushes (``{"device", "message"}``) to the user's sessions of those devices."""
    await _group_send(user_group(user_id), {"type": "chat.to_device", "messages": messages})


async def backup_changed(user_id: int, message: dict[str, Any], *, exclude: str | None) -> None:
    """A ``backup_changed`` push to the user's sessions but ``exclude`` (the publisher's)."""
    event = {"type": "chat.backup_changed", "message": message, "exclude": exclude}
    await _group_send(user_group(user_id), event)


async def presence_changed(changes: dict[str, Any]) -> None:
    """A process's presence changes (``chat.presence``, see above) to every process."""
    await _group_send(PROCESS_GROUP, {"type": "chat.presence", **changes})


async def accounts_changed(*, added: Sequence[str] = (), removed: Sequence[str] = ()) -> None:
    """Accounts that became active (``added``) or stopped being active (``removed``)."""
    await presence_changed({"origin": None, "added": list(added), "removed": list(removed)})


async def rooms_changed(user_ids: list[int], *, exclude: str | None = None) -> None:
    """Tell these users' sessions (except ``exclude``) to refresh and push their ``rooms``."""
    for user_id in dict.fromkeys(user_ids):
        await _group_send(user_group(user_id), {"type": "chat.rooms_changed", "exclude": exclude})


async def end_sessions(
    user_id: int,
    reason: str,
    devices: Sequence[str] | None = None,
    except_session: str | None = None,
) -> None:
    """End sessions of a user: ``session_ended`` then close 4003. ``devices``: only the
    sessions logged in as one of them (None: all); ``except_session``: a session's channel
    name, which stays."""
    event = {
        "type": "chat.end",
        "reason": reason,
        "devices": None if devices is None else list(devices),
        "except": except_session,
    }
    await _group_send(user_group(user_id), event)


async def to_user(user_id: int, event: dict[str, Any]) -> None:
    """One layer event to every logged-in session of a user (file transfers use it)."""
    await _group_send(user_group(user_id), event)


async def to_channel(channel_name: str, event: dict[str, Any]) -> None:
    """One layer event to one session (the heartbeat's safety net and file transfers use it)."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.send(channel_name, event)


# --- after commit ----------------------------------------------------------------------------

# The outbox of the service call running in this context (a worker thread's call), if any.
# A ContextVar, not module state: its value lives in each call's context.
_OUTBOX: contextvars.ContextVar[list[Broadcast] | None] = contextvars.ContextVar(
    "chat_outbox", default=None
)


def collecting(func: Callable[P, R], outbox: list[Broadcast]) -> Callable[P, R]:
    """``func``, made to append the broadcasts it makes to ``outbox`` instead of sending them.

    For a worker thread of the consumer: the caller sends them with
    :func:`send_collected` on the event loop once it has answered.
    """

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _OUTBOX.set(outbox)
        try:
            return func(*args, **kwargs)
        finally:
            _OUTBOX.reset(token)

    return run


async def send_collected(outbox: list[Broadcast]) -> None:
    """Send the broadcasts :func:`collecting` kept, in the order they were made."""
    while outbox:
        await outbox.pop(0)()


def _after_commit(broadcast: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """The synchronous form of a broadcast, for ``transaction.on_commit`` callbacks."""
    blocking = async_to_sync(broadcast)

    @functools.wraps(broadcast)
    def call(*args: Any, **kwargs: Any) -> None:
        outbox = _OUTBOX.get()
        if outbox is not None:
            outbox.append(functools.partial(broadcast, *args, **kwargs))
        else:
            blocking(*args, **kwargs)

    return call


room_message_sync = _after_commit(room_message)
private_message_sync = _after_commit(private_message)
rooms_changed_sync = _after_commit(rooms_changed)
accounts_changed_sync = _after_commit(accounts_changed)
end_sessions_sync = _after_commit(end_sessions)
devices_changed_sync = _after_commit(devices_changed)
to_device_sync = _after_commit(to_device)
backup_changed_sync = _after_commit(backup_changed)
