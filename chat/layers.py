"""The in-memory channel layer of a single-process server, made cheap per session.

Channels' ``InMemoryChannelLayer`` works, but costs what a server with thousands
of mostly idle sessions notices:

- every session waits on its channel through an ``asyncio.Queue`` (four deques,
  about 3 KiB), created by ``receive`` even when nothing is waiting. Here a
  waiting receiver costs one future, and a channel has a deque only while
  messages wait in it;
- every ``receive`` and ``group_send`` sweeps all channels and all group
  memberships for expired entries: thousands of entries looked at per delivered
  event. Expiry is measured in minutes (60 s for messages, a day for group
  memberships), so here the sweep runs at most once a second;
- ``group_send`` starts a task per member and waits for them all; here the
  members are sent to one after the other (``send`` never waits);
- ``channel_capacity`` is kept uncompiled, so the first send fails when it is set
  (the process channel of :mod:`chat.sessions` carries every room message and
  gets a larger capacity).

Everything else (groups, capacity, expiry, ``ChannelFull``) behaves as Channels'
layer does, which this class extends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

SWEEP_SECONDS = 1.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel_capacity: list[Any] = self.compile_capacities(self.channel_capacity)
        # channel -> messages waiting: deque of (expiry, message); only while non-empty
        self.channels: dict[str, collections.deque[tuple[float, dict]]] = {}
        # channel -> receivers waiting, oldest first; only while someone waits
        self._receivers: dict[str, list[asyncio.Future]] = {}
        self._last_sweep = 0.0

    @property
    def receiving_channels(self) -> frozenset[str]:
        """The channels a ``receive`` waits on now (read-only): a server's idle sessions.

        As :attr:`channels` holds a channel only while messages wait in it, this
        holds one only while a receiver waits on it.
        """
        return frozenset(self._receivers)

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        receivers = self._receivers.get(channel)
        while receivers:
            receiver = receivers.pop(0)
            if not receiver.done():
                receiver.set_result(deepcopy(message))
                return
        waiting = self.channels.get(channel)
        if waiting is None:
            waiting = self.channels[channel] = collections.deque()
        if len(waiting) >= self.get_capacity(channel):
            raise ChannelFull(channel)
        waiting.append((time.time() + self.expiry, deepcopy(message)))

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        waiting = self.channels.get(channel)
        if waiting:
            _, message = waiting.popleft()
            if not waiting:
                del self.channels[channel]
            return message
        receiver = asyncio.get_running_loop().create_future()
        self._receivers.setdefault(channel, []).append(receiver)
        try:
            return await receiver
        except asyncio.CancelledError:
            if receiver.done() and not receiver.cancelled():
                # Handed a message, then cancelled before taking it: it waits for the next.
                self.channels.setdefault(channel, collections.deque()).appendleft(
                    (time.time() + self.expiry, receiver.result())
                )
            raise
        finally:
            receivers = self._receivers.get(channel)
            if receivers is not None:
                if receiver in receivers:
                    receivers.remove(receiver)
                if not receivers:
                    del self._receivers[channel]

    async def group_send(self, group: str, message: dict) -> None:
        """As Channels', without a task per member: ``send`` here never waits."""
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            with contextlib.suppress(ChannelFull):  # as Channels does: a full member misses it
                await self.send(channel, message)

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_SECONDS:
            return
        self._last_sweep = now
        wall = time.time()
        for channel, waiting in list(self.channels.items()):
            expired = False
            while waiting and waiting[0][0] < wall:
                waiting.popleft()
                expired = True
            if expired:
                self._remove_from_groups(channel)  # as Channels does: a dead channel leaves
            if not waiting:
                self.channels.pop(channel, None)
        timeout = int(wall) - self.group_expiry
        for members in self.groups.values():
            for name, joined in list(members.items()):
                if joined and joined < timeout:
                    members.pop(name, None)

    async def flush(self) -> None:
        self.channels = {}
        self.groups: dict[str, dict[str, float]] = {}
