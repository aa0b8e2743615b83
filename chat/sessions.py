"""This process's logged-in sessions: the in-process fan-out, and the heartbeat.

All of it is one object, :class:`SessionRegistry`, owned by the process's
``chat.runtime.ChatRuntime`` (tests make a fresh one).

The registry only knows the sessions of *this* process (presence across
processes is :mod:`chat.presence`, in the cache), indexed by channel name, by
user and by room.

Fan-out
-------
While the process has a session, it has one channel of its own in the layer
group :data:`chat.delivery.PROCESS_GROUP`, read by one task (the *hub*). Each
``chat.fanout`` event that arrives there (a room message, a private message, a
``devices_changed``:
one layer message per process, whatever the number of recipients) is encoded
once and handed, as a :class:`Push`, to each local session it concerns, which
seals it with its own keys and sends it. A session busy answering a request
keeps its pushes until it has answered (see :class:`chat.outbox.Outbox`), so
its own answers come first. Events are handled one at a time, in arrival
order, so what one sender sends arrives in order.

Heartbeat
---------
While the registry holds any session, one task per process beats every
``CHAT_HEARTBEAT_SECONDS``:

- refreshes the process's presence heartbeat;
- prunes the presence of dead processes; who went offline with them is a change
  of this process's presence feed (:func:`chat.presence.reap`,
  :class:`chat.presence_feed.PresenceFeed`);
- ends the sessions of accounts that are no longer active: a safety net for
  changes the channel layer could not carry (a ``manage.py`` process beside a
  server on the in-memory layer, or a change made in SQL);
- reconciles the presence feed's view with the database and the cache, for
  changes no layer message carried (same reason): its sessions get the
  difference as ``presence`` deltas;
- re-adds the process group at every beat and login (a restarted Redis forgets groups),
  and once an hour each session's channel-layer groups,
  since Redis groups expire (channels_redis ``group_expiry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

from chatproto.framing import encode_json

from . import delivery, presence, services
from .presence_feed import PresenceFeed
from .workers import Workers

log = logging.getLogger("chat.sessions")

GROUP_REFRESH_SECONDS = 3600
# A fan-out runs without yielding to the event loop for up to SLICE_SECONDS (checked every
# CHECK_EVERY deliveries), then lets other sessions' requests in. Not more often: while it
# runs, daphne (Twisted) only buffers what it sends, and writes each connection's buffer
# with one system call when the loop comes round; a yield every 16 deliveries halved the
# throughput of a busy server (bench/NOTES.md).
SLICE_SECONDS = 0.02
CHECK_EVERY = 32


@dataclass(frozen=True, slots=True)
class Push:
    """A message for a session, already encoded (``chatproto.framing.encode_json``).

    ``room``: send only if the session is in that room when it sends. ``msg_id``: a
    private message (skipped if the session already had it from the offline queue);
    ``mark_delivered``: the session is the recipient's and the message was queued.
    ``presence_seq``: a ``presence`` delta up to that log position of the presence feed;
    skipped if the session was sent a snapshot at or past it meanwhile (a push deferred
    behind a ``users`` request would otherwise undo part of the newer snapshot).
    """

    plaintext: bytes
    room: str | None = None
    msg_id: int | None = None
    mark_delivered: bool = False
    presence_seq: int | None = None


class Session(Protocol):
    channel_name: str
    username: str
    user_id: int
    rooms: set[str]
    presence_seq: int | None  # the presence feed's log position of what it was last sent

    async def push(self, push: Push) -> None: ...

    async def refresh_groups(self) -> None: ...


class _Slice:
    """How long fan-outs have run since the event loop last ran anything else."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.deliveries = 0

    def restart(self) -> None:
        self.started = time.monotonic()


class SessionRegistry:
    """The logged-in sessions of this process, their fan-out hub and their heartbeat.

    ``slice_seconds`` and ``check_every``: see :data:`SLICE_SECONDS` (tests vary them).
    """

    def __init__(
        self,
        workers: Workers,
        *,
        slice_seconds: float = SLICE_SECONDS,
        check_every: int = CHECK_EVERY,
    ) -> None:
        self.workers = workers
        self.slice_seconds = slice_seconds
        self.check_every = check_every
        self._local: dict[str, Session] = {}
        self._by_user: dict[int, dict[str, Session]] = {}
        self._names: dict[str, int] = {}  # username: how many of its sessions are here
        self._by_room: dict[str, dict[str, Session]] = {}
        self._rooms_of: dict[str, frozenset[str]] = {}
        self._task: asyncio.Task | None = None
        self._hub: _Hub | None = None
        self._slice = _Slice()
        self.presence = PresenceFeed(self)

    # --- the registry --------------------------------------------------------------------------

    async def register(self, session: Session) -> None:
        """A session logged in on this process: it gets pushes from now on.

        Returns once this process's channel is in the process group, so that
        nothing sent after this call can miss the session. Starts the heartbeat.
        """
        self.add(session)
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="chat-heartbeat")
        await self._ensure_hub()

    def add(self, session: Session) -> None:
        """Index ``session`` for the fan-out (:meth:`register` does this and more)."""
        if session.channel_name not in self._local:
            self._names[session.username] = self._names.get(session.username, 0) + 1
        self._local[session.channel_name] = session
        self._by_user.setdefault(session.user_id, {})[session.channel_name] = session
        self.set_rooms(session, session.rooms)

    async def unregister(self, session: Session) -> None:
        """A session ended; the heartbeat and the hub stop with the last one."""
        channel = session.channel_name
        if self._local.pop(channel, None) is None:
            return
        self._index_rooms(session, frozenset())
        del self._rooms_of[channel]
        left = self._names.pop(session.username, 1) - 1
        if left:
            self._names[session.username] = left
        of_user = self._by_user.get(session.user_id)
        if of_user is not None:
            of_user.pop(channel, None)
            if not of_user:
                del self._by_user[session.user_id]
        if self._local:
            return
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.presence.stop()
        hub, self._hub = self._hub, None
        if hub is not None:
            await hub.stop()

    def set_rooms(self, session: Session, rooms: set[str] | frozenset[str]) -> None:
        """The rooms whose messages ``session`` gets (it calls this whenever they change)."""
        if session.channel_name in self._local:
            self._index_rooms(session, rooms)

    def _index_rooms(self, session: Session, rooms: set[str] | frozenset[str]) -> None:
        channel = session.channel_name
        old = self._rooms_of.get(channel, frozenset())
        new = frozenset(rooms)
        for room in old - new:
            members = self._by_room.get(room)
            if members is not None:
                members.pop(channel, None)
                if not members:
                    del self._by_room[room]
        for room in new - old:
            self._by_room.setdefault(room, {})[channel] = session
        self._rooms_of[channel] = new

    def local_sessions(self) -> list[Session]:
        return list(self._local.values())

    def local_count(self) -> int:
        """How many sessions are logged in here (no copy: called at every login)."""
        return len(self._local)

    def has_username(self, username: str) -> bool:
        """Whether ``username`` has a session here (the presence feed never says they left)."""
        return username in self._names

    def in_room(self, room: str) -> list[Session]:
        """The local sessions that get ``room``'s messages."""
        return list(self._by_room.get(room, {}).values())

    def of_user(self, user_id: int) -> list[Session]:
        """The local sessions of one user."""
        return list(self._by_user.get(user_id, {}).values())

    # --- the fan-out ---------------------------------------------------------------------------

    async def fan_out(self, event: dict[str, Any]) -> None:
        """Hand a ``chat.fanout`` event to the local sessions it concerns (see the module doc)."""
        message = event["message"]
        plaintext = encode_json(message)
        kind = event["to"]
        if kind == "room":
            room = event["room"]
            push = Push(plaintext, room=room)
            targets = [(s, push) for s in self._by_room.get(room, {}).values()]
        elif kind == "users":
            msg_id = message.get("msg_id")  # none in a devices_changed
            plain = Push(plaintext, msg_id=msg_id)
            marking = Push(plaintext, msg_id=msg_id, mark_delivered=True)
            recipient = message.get("to") if event.get("queued") else None
            targets = [
                (s, marking if s.username == recipient else plain)
                for user_id in event["users"]
                for s in self._by_user.get(user_id, {}).values()
            ]
        else:
            log.warning("fan-out event for %r dropped: unknown target", kind)
            return
        await self.deliver(targets)

    async def push_to(
        self, sessions: Iterable[Session], plaintext: bytes, presence_seq: int | None = None
    ) -> None:
        """One encoded message to each of ``sessions`` (the presence feed's deltas)."""
        push = Push(plaintext, presence_seq=presence_seq)
        await self.deliver([(s, push) for s in sessions])

    async def deliver(self, targets: Iterable[tuple[Session, Push]]) -> None:
        """Each push to its session, yielding to the loop now and then (see SLICE_SECONDS)."""
        slice_ = self._slice
        for session, push in targets:
            try:
                await session.push(push)
            except Exception:
                log.exception("a push to session channel %s failed", session.channel_name)
            slice_.deliveries += 1
            if slice_.deliveries % self.check_every == 0 and self._slice_over():
                await asyncio.sleep(0)  # let other sessions' requests in during a large fan-out
                slice_.restart()

    def _slice_over(self) -> bool:
        return time.monotonic() - self._slice.started > self.slice_seconds

    def loop_ran(self) -> None:
        """The event loop came round: the next fan-out starts a new slice."""
        self._slice.restart()

    async def _ensure_hub(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        loop = asyncio.get_running_loop()
        hub = self._hub
        fresh = (
            hub is None or hub.loop is not loop or hub.layer is not layer or hub.started.cancelled()
        )
        if fresh:
            hub = self._hub = _Hub(self, layer, loop)
        assert hub is not None
        try:
            await asyncio.shield(hub.started)
            if not fresh:
                # One ZADD per login: the group survives a Redis restarted since the hub joined.
                await hub.refresh()
        except Exception:
            if self._hub is hub:
                self._hub = None  # the next session tries again
            raise

    # --- the heartbeat -------------------------------------------------------------------------

    async def _run(self) -> None:
        interval = settings.CHAT_HEARTBEAT_SECONDS
        beats = 0
        while self._local:
            try:
                await self.beat(
                    refresh_groups=bool(
                        beats and beats % max(1, GROUP_REFRESH_SECONDS // interval) == 0
                    )
                )
            except Exception:
                log.exception("heartbeat failed; retrying in %s s", interval)
            beats += 1
            await asyncio.sleep(interval)

    async def beat(self, *, refresh_groups: bool = False) -> None:
        """One heartbeat (see the module docstring)."""
        await sync_to_async(presence.heartbeat)()
        self.presence.processes = await sync_to_async(presence.live_processes)()
        everyone = await self.workers.database(services.active_usernames)()
        active = set(everyone)
        for session in self.local_sessions():
            if session.username not in active:
                await delivery.to_channel(
                    session.channel_name, {"type": "chat.end", "reason": "deactivated"}
                )
        for name in await sync_to_async(presence.reap)(everyone) or ():
            await self.presence.local_change(name, False)
        await self.presence.reconcile()
        if self._hub is not None:
            await self._hub.refresh()  # every beat: cheap, and the fan-out depends on it
        if refresh_groups:
            for session in self.local_sessions():
                await session.refresh_groups()

    def close(self) -> None:
        """Stop the heartbeat and the hub's tasks (a runtime that is over)."""
        for task in (self._task, *(self._hub.tasks() if self._hub else ())):
            if task is not None and not task.done():
                with contextlib.suppress(RuntimeError):  # its event loop may be closed already
                    task.cancel()
        self._task = self._hub = None
        self.presence.stop()


class _Hub:
    """This process's subscription to the process group, for one event loop and layer."""

    def __init__(
        self, registry: SessionRegistry, layer: BaseChannelLayer, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.registry = registry
        self.layer = layer
        self.loop = loop
        self.channel: str | None = None
        self.started = loop.create_task(self._start(), name="chat-hub-start")
        self.reader: asyncio.Task | None = None
        self.slice_mark = False

    def tasks(self) -> tuple[asyncio.Task | None, ...]:
        return (self.started, self.reader)

    async def _start(self) -> None:
        # The default prefix: channels_redis reads every process-local channel of a layer
        # through one queue and one lock, so a channel of another prefix would stall the others.
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(delivery.PROCESS_GROUP, self.channel)
        self.reader = self.loop.create_task(self._read(), name="chat-hub")

    async def _read(self) -> None:
        assert self.channel is not None
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the process channel failed; reading again in 1 s")
                await asyncio.sleep(1)
                # A restarted Redis has forgotten every group: join the process group again.
                try:
                    await self.refresh()
                except Exception as exc:
                    log.warning("joining the process group again failed (%s)", type(exc).__name__)
                continue
            if event.get("type") == "chat.presence":
                try:
                    await self.registry.presence.receive(event)
                except Exception:  # the cache it confirms against failed
                    log.exception("a presence message could not be applied")
                continue
            if event.get("type") != "chat.fanout":
                log.warning("unexpected event %r on the process channel", event.get("type"))
                continue
            try:
                await self.registry.fan_out(event)
            except Exception:
                log.exception("a fan-out failed")
            if not self.slice_mark:  # the slice ends when the loop next comes round
                self.slice_mark = True
                self.loop.call_soon(self._loop_ran)

    def _loop_ran(self) -> None:
        self.slice_mark = False
        self.registry.loop_ran()

    async def refresh(self) -> None:
        if self.channel is not None:
            await self.layer.group_add(delivery.PROCESS_GROUP, self.channel)

    async def stop(self) -> None:
        for task in self.tasks():
            if task is not None and not task.done():
                task.cancel()
        if self.channel is not None:
            try:
                await self.layer.group_discard(delivery.PROCESS_GROUP, self.channel)
            except Exception as exc:  # the layer's backend is gone; the group entry expires
                log.warning("leaving the process group failed (%s)", type(exc).__name__)
