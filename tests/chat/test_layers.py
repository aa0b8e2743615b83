"""The single-process channel layer (chat.layers): Channels' semantics, cheaper per session."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.exceptions import ChannelFull

from chat import layers


def make(**config) -> layers.InMemoryChannelLayer:
    return layers.InMemoryChannelLayer(**config)


class Clock:
    """Stands in for the ``time`` module of chat.layers: wall and monotonic time, moved by hand."""

    def __init__(self) -> None:
        self.now = time.time()  # memberships and messages are stamped in wall time

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(layers, "time", clock)
    return clock


async def test_a_message_sent_before_the_receive_waits_for_it():
    layer = make()
    await layer.send("a.inmemory!x", {"type": "t", "n": 1})
    await layer.send("a.inmemory!x", {"type": "t", "n": 2})
    assert (await layer.receive("a.inmemory!x"))["n"] == 1
    assert (await layer.receive("a.inmemory!x"))["n"] == 2
    assert layer.channels == {}  # nothing kept once the channel is empty


async def test_a_waiting_receiver_gets_the_next_message_and_costs_no_queue():
    layer = make()
    receiving = asyncio.ensure_future(layer.receive("a.inmemory!x"))
    await asyncio.sleep(0)
    assert layer.channels == {}
    assert layer.receiving_channels == {"a.inmemory!x"}
    message = {"type": "t", "payload": ["mutable"]}
    await layer.send("a.inmemory!x", message)
    received = await asyncio.wait_for(receiving, 1)
    assert received == message and received is not message  # a copy, as Channels makes
    assert layer.receiving_channels == frozenset()  # nothing kept once nobody waits


async def test_capacity_is_per_channel_pattern_and_full_channels_refuse():
    layer = make(capacity=2, channel_capacity={"big.*": 3})
    for n in range(2):
        await layer.send("small.inmemory!x", {"type": "t", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send("small.inmemory!x", {"type": "t"})
    for n in range(3):
        await layer.send("big.inmemory!x", {"type": "t", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send("big.inmemory!x", {"type": "t"})


async def test_a_receiver_cancelled_after_being_handed_a_message_leaves_it_for_the_next():
    layer = make()
    receiving = asyncio.ensure_future(layer.receive("a.inmemory!x"))
    await asyncio.sleep(0)
    await layer.send("a.inmemory!x", {"type": "t", "n": 1})
    receiving.cancel()  # before the receiver ran again
    with pytest.raises(asyncio.CancelledError):
        await receiving
    assert (await layer.receive("a.inmemory!x"))["n"] == 1


async def test_groups_reach_every_member_and_expired_messages_are_swept(clock):
    layer = make(expiry=60)
    for channel in ("a.inmemory!1", "a.inmemory!2"):
        await layer.group_add("g", channel)
    await layer.group_send("g", {"type": "t"})
    assert [len(layer.channels[c]) for c in ("a.inmemory!1", "a.inmemory!2")] == [1, 1]
    clock.advance(120)
    await layer.group_send("g", {"type": "t"})  # sweeps first
    # As in Channels: an expired message empties its channel and drops it from its groups.
    assert layer.channels == {}
    assert layer.groups.get("g", {}) == {}


async def test_the_sweep_runs_at_most_once_a_second(clock):
    layer = make(expiry=0.25)
    await layer.group_send("idle", {"type": "t"})  # a sweep (the first one)
    await layer.send("a.inmemory!x", {"type": "t"})
    clock.advance(0.5)  # the message expired, but the last sweep was half a second ago
    await layer.group_send("idle", {"type": "t"})
    assert list(layer.channels) == ["a.inmemory!x"]
    clock.advance(layers.SWEEP_SECONDS - 0.5)  # a second since the last sweep
    await layer.group_send("idle", {"type": "t"})
    assert layer.channels == {}
