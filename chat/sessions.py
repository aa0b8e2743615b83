"""This process's logged-in sessions, and the heartbeat that keeps shared presence true.

The registry only knows the sessions of *this* process (presence across
processes is :mod:`chat.presence`, in the cache). While it holds any session,
one task per process beats every ``CHAT_HEARTBEAT_SECONDS``:

- refreshes the process's presence heartbeat;
- prunes the presence of dead processes and pushes ``users`` if someone went
  offline with them (:func:`chat.presence.reap`);
- ends the sessions of accounts that are no longer active: a safety net for
  changes the channel layer could not carry (a ``manage.py`` process beside a
  server on the in-memory layer, or a change made in SQL);
- pushes ``users`` to its sessions when the active accounts changed without a
  push reaching them (same reason);
- once an hour, re-adds each session's channel-layer groups, since Redis
  groups expire (channels_redis ``group_expiry``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings

from . import delivery, presence, services

log = logging.getLogger("chat.sessions")

GROUP_REFRESH_SECONDS = 3600


class Session(Protocol):
    channel_name: str
    username: str

    async def refresh_groups(self) -> None: ...


_local: dict[str, Session] = {}
_task: asyncio.Task | None = None
_last_all: list[str] | None = None


def register(session: Session) -> None:
    """A session logged in on this process; starts the heartbeat if it is not running."""
    global _task, _last_all
    _local[session.channel_name] = session
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _last_all = None
        _task = loop.create_task(_run(), name="chat-heartbeat")


def unregister(session: Session) -> None:
    """A session ended; the heartbeat stops with the last one (nothing left to keep alive)."""
    _local.pop(session.channel_name, None)
    if not _local and _task is not None and not _task.done():
        _task.cancel()


def local_sessions() -> list[Session]:
    return list(_local.values())


def users_seen(all_users: list[str]) -> None:
    """A ``users`` push reached this process: its ``all`` needs no push from the heartbeat."""
    global _last_all
    _last_all = list(all_users)


async def _run() -> None:
    interval = settings.CHAT_HEARTBEAT_SECONDS
    beats = 0
    while _local:
        try:
            await beat(
                refresh_groups=beats and beats % max(1, GROUP_REFRESH_SECONDS // interval) == 0
            )
        except Exception:
            log.exception("heartbeat failed; retrying in %s s", interval)
        beats += 1
        await asyncio.sleep(interval)


async def beat(*, refresh_groups: bool = False) -> None:
    """One heartbeat (see the module docstring)."""
    global _last_all
    await sync_to_async(presence.heartbeat)()
    everyone = await database_sync_to_async(services.active_usernames)()
    active = set(everyone)
    for session in local_sessions():
        if session.username not in active:
            await delivery.to_channel(
                session.channel_name, {"type": "chat.end", "reason": "deactivated"}
            )
    went_offline = await sync_to_async(presence.reap)(everyone)
    if went_offline:
        message = await database_sync_to_async(services.users_message)()
        await delivery.users_changed(message)
    elif _last_all is not None and everyone != _last_all:
        message = await database_sync_to_async(services.users_message)()
        for session in local_sessions():
            await delivery.to_channel(
                session.channel_name, {"type": "chat.users", "message": message, "exclude": None}
            )
    _last_all = everyone
    if refresh_groups:
        for session in local_sessions():
            await session.refresh_groups()
