"""The single-process channel layer (chat.layers): Channels' semantics, cheaper per session."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull

from chat import layers


def make(**config) -> layers.InMemoryChannelLayer:
    return layers.InMemoryChannelLayer(**config)


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
    message = {"type": "t", "payload": ["mutable"]}
    await layer.send("a.inmemory!x", message)
    received = await asyncio.wait_for(receiving, 1)
    assert received == message and received is not message  # a copy, as Channels makes
    assert layer._receivers == {}


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


async def test_groups_reach_every_member_and_expired_messages_are_swept(monkeypatch):
    layer = make(expiry=60)
    for channel in ("a.inmemory!1", "a.inmemory!2"):
        await layer.group_add("g", channel)
    await layer.group_send("g", {"type": "t"})
    assert [len(layer.channels[c]) for c in ("a.inmemory!1", "a.inmemory!2")] == [1, 1]
    later = layers.time.time() + 120
    monkeypatch.setattr(layers.time, "time", lambda: later)
    layer._last_sweep = 0.0
    layer._clean_expired()
    # As in Channels: an expired message empties its channel and drops it from its groups.
    assert layer.channels == {}
    assert layer.groups.get("g", {}) == {}


async def test_the_sweep_runs_at_most_once_a_second(monkeypatch):
    layer = make()
    calls = []
    monkeypatch.setattr(layer, "_remove_from_groups", calls.append)
    layer._clean_expired()
    sweep_at = layer._last_sweep
    layer._clean_expired()
    assert layer._last_sweep == sweep_at
