"""The lean consumer's receive loop: Channels' dispatch rules, without a task per frame."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chat.lean_consumer import LeanWebsocketConsumer


class Recorder(LeanWebsocketConsumer):
    """Notes what it handles; a frame ``wait`` holds its dispatch until ``gate`` opens."""

    seen: list[str]
    gate: asyncio.Event
    named: asyncio.Future[str]

    async def connect(self) -> None:
        self.named.set_result(self.channel_name)
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.seen.append(f"frame {text_data} begins")
        if text_data == "wait":
            await self.gate.wait()
        self.seen.append(f"frame {text_data} ends")
        await self.send(text_data=f"did {text_data}")

    async def chat_note(self, event: dict[str, Any]) -> None:
        self.seen.append(f"event {event['n']}")
        await self.send(text_data=f"event {event['n']}")

    async def other_broken(self, event: dict[str, Any]) -> None:
        raise RuntimeError("a handler of a layer event failed")


def recorder() -> tuple[WebsocketCommunicator, list[str], asyncio.Event, asyncio.Future[str]]:
    seen: list[str] = []
    gate = asyncio.Event()
    named: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    app = Recorder.as_asgi()
    Recorder.seen, Recorder.gate, Recorder.named = seen, gate, named  # type: ignore[misc]
    return WebsocketCommunicator(app, "/ws/"), seen, gate, named


@pytest.fixture
def memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def test_frames_and_layer_events_are_handled_in_the_order_they_arrive(memory_layer):
    comm, seen, _gate, named = recorder()
    assert (await comm.connect())[0]
    channel = await named
    await comm.send_to(text_data="one")
    assert await comm.receive_from() == "did one"
    await get_channel_layer().send(channel, {"type": "chat.note", "n": 1})
    assert await comm.receive_from() == "event 1"
    await comm.send_to(text_data="two")
    assert await comm.receive_from() == "did two"
    assert seen == [
        "frame one begins",
        "frame one ends",
        "event 1",
        "frame two begins",
        "frame two ends",
    ]
    await comm.disconnect()


async def test_a_layer_event_waits_for_the_frame_being_handled(memory_layer):
    comm, seen, gate, named = recorder()
    assert (await comm.connect())[0]
    channel = await named
    await comm.send_to(text_data="wait")
    await get_channel_layer().send(channel, {"type": "chat.note", "n": 1})
    for _ in range(50):  # let the layer's reader run: it must not dispatch yet
        await asyncio.sleep(0)
    assert seen == ["frame wait begins"]
    gate.set()
    assert await comm.receive_from() == "did wait"
    assert await comm.receive_from() == "event 1"
    assert seen == ["frame wait begins", "frame wait ends", "event 1"]
    await comm.disconnect()


async def test_a_failing_layer_event_outside_chat_ends_the_consumer_with_its_error(memory_layer):
    comm, _seen, _gate, named = recorder()
    assert (await comm.connect())[0]
    await get_channel_layer().send(await named, {"type": "other.broken"})
    with pytest.raises(RuntimeError, match="a handler of a layer event failed"):
        await comm.receive_output()


async def test_a_failing_chat_event_is_logged_and_the_session_goes_on(memory_layer, caplog):
    comm, _seen, _gate, named = recorder()
    assert (await comm.connect())[0]
    channel = await named
    await get_channel_layer().send(channel, {"type": "chat.note"})  # no "n": KeyError
    await get_channel_layer().send(channel, {"type": "chat.note", "n": 2})
    assert await comm.receive_from() == "event 2"
    assert "chat.note event failed" in caplog.text
    await comm.disconnect()


async def test_disconnect_ends_the_consumer_and_its_layer_reader(memory_layer):
    comm, _seen, _gate, _named = recorder()
    assert (await comm.connect())[0]
    await comm.disconnect()
    assert comm.future.done() and comm.future.exception() is None
    pending = [t for t in asyncio.all_tasks() if "_read_layer" in repr(t.get_coro())]
    assert pending == []


class BrokenLayer:
    """A channel layer whose connection is gone (Redis restarted): receiving fails."""

    extensions: list[str] = []

    async def new_channel(self, prefix: str = "specific.") -> str:
        return "specific.gone!1"

    async def receive(self, channel: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        raise ConnectionError("the layer's connection was lost")


async def test_a_layer_that_fails_to_receive_ends_the_consumer_with_its_error(monkeypatch):
    # The client reconnects and catches up, instead of staying on a session that hears
    # nothing more (tests/hardening/test_faults.py restarts a real Redis).
    monkeypatch.setattr("chat.lean_consumer.get_channel_layer", lambda alias: BrokenLayer())
    comm, _seen, _gate, _named = recorder()
    with pytest.raises(ConnectionError, match="connection was lost"):
        await comm.connect(timeout=1)
        for _ in range(200):  # it ends by itself, not because a timeout cancelled it
            if comm.future.done():
                break
            await asyncio.sleep(0.01)
        comm.future.result()
