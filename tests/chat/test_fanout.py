"""The in-process fan-out: one layer message per process, guarantees kept (PROTOCOL.md 3.2).

Many messages in flight from one session are stored in batches; every session
still gets each sender's messages in order, its own ``ack`` before its own copy,
and its answers before whatever was pushed to it while it was answering.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from chat import delivery, services, sessions
from chat.models import Message
from chat.workers import Workers
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def logged_in(name: str, *, remember: str | None = None):
    """``remember``: as a new device of that name, for private messages (``e2e``, 4.5)."""
    session = await open_session()
    await session.login(name, remember=remember)
    await session.drain()
    return session


async def test_many_messages_in_flight_are_acked_before_each_copy_and_arrive_in_order(
    create_users,
):
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await alice.drain()
    texts = [f"m{i}" for i in range(30)]
    for i, text in enumerate(texts):  # no waiting for answers: batches form on the server
        await alice.send({"type": "send", "id": f"s{i}", "room": "lobby", "text": text})
    seen = [await alice.recv() for _ in range(2 * len(texts))]
    acks = {m["ref"]: m for m in seen if m["type"] == "ack"}
    for i in range(len(texts)):
        own_copy = next(k for k, m in enumerate(seen) if m.get("text") == texts[i])
        ack_at = next(k for k, m in enumerate(seen) if m.get("ref") == f"s{i}")
        assert ack_at < own_copy
        assert seen[own_copy]["msg_id"] == acks[f"s{i}"]["msg_id"]
    ids = [acks[f"s{i}"]["msg_id"] for i in range(len(texts))]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # stored in the order sent
    at_bob = [await bob.recv() for _ in texts]
    assert [m["text"] for m in at_bob] == texts
    assert [m["msg_id"] for m in at_bob] == ids
    await alice.close()
    await bob.close()


async def test_a_refused_message_in_a_batch_does_not_stop_the_others(create_users, run_sync):
    await create_users("alice", "bob")
    await run_sync(services.create_room, (await run_sync(_user, "bob")), "secret", private=True)
    alice = await logged_in("alice", remember="laptop")
    await alice.send({"type": "send", "id": "a", "room": "lobby", "text": "one"})
    await alice.send({"type": "send", "id": "b", "room": "secret", "text": "nope"})
    await alice.send({"type": "pm", "id": "c", "to": "alice", "e2e": e2e_body(alice.device)})
    await alice.send({"type": "pm", "id": "e", "to": "bob", "text": "in clear"})
    await alice.send({"type": "send", "id": "d", "room": "lobby", "text": "two"})
    seen = [await alice.recv() for _ in range(7)]
    answers = {m["ref"]: m for m in seen if "ref" in m}
    assert answers["a"]["type"] == answers["d"]["type"] == "ack"
    assert (answers["b"]["type"], answers["b"]["code"]) == ("error", "unknown_room")
    assert (answers["c"]["type"], answers["c"]["code"]) == ("error", "bad_request")
    assert (answers["e"]["type"], answers["e"]["code"]) == ("error", "e2e_required")
    assert [m["text"] for m in seen if m["type"] == "message"] == ["one", "two"]
    assert await run_sync(lambda: list(Message.objects.values_list("room__name", flat=True))) == [
        "lobby",
        "lobby",
    ]
    await alice.close()


async def test_answers_keep_the_order_of_the_requests(create_users):
    await create_users("alice")
    alice = await logged_in("alice")
    await alice.send({"type": "send", "id": "s", "room": "lobby", "text": "first"})
    await alice.send({"type": "history", "id": "h", "room": "lobby"})
    seen = [await alice.recv() for _ in range(3)]
    refs = [m.get("ref") for m in seen if "ref" in m]
    assert refs == ["s", "h"]
    history = next(m for m in seen if m["type"] == "history")
    assert [m["text"] for m in history["messages"]] == ["first"]  # stored before history ran
    await alice.close()


async def test_pushes_wait_while_the_session_answers_a_request(create_users, monkeypatch):
    """A message pushed while a session's request is being served comes after the answer."""
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await alice.drain()
    started, release = asyncio.Event(), asyncio.Event()
    from chat.consumers import ChatConsumer

    original = ChatConsumer.handle_users

    async def slow_users(self, request):
        started.set()
        await release.wait()
        await original(self, request)

    monkeypatch.setattr(ChatConsumer, "handle_users", slow_users)
    await bob.send({"type": "users", "id": "u"})
    await asyncio.wait_for(started.wait(), 5)
    await alice.request({"type": "send", "room": "lobby", "text": "meanwhile"})
    assert await bob.nothing()  # bob is busy answering: the message waits
    release.set()
    assert (await bob.recv())["ref"] == "u"
    assert (await bob.recv())["text"] == "meanwhile"
    await alice.close()
    await bob.close()


async def test_a_room_message_is_one_layer_message_for_the_process(create_users, monkeypatch):
    await create_users("alice", "bob", "carol")
    sessions_ = [await logged_in(name) for name in ("alice", "bob", "carol")]
    for session in sessions_:
        await session.drain()
    layer = get_channel_layer()
    sent: list[tuple[str, dict]] = []
    original = layer.group_send

    async def counting(group, message):
        sent.append((group, message))
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    await sessions_[0].request({"type": "send", "room": "lobby", "text": "to all"})
    for session in sessions_:
        assert (await session.find("message"))["text"] == "to all"
    assert [group for group, _ in sent] == [delivery.PROCESS_GROUP]
    for session in sessions_:
        await session.close()


async def test_a_session_that_left_a_room_gets_no_more_of_its_messages(create_users, run_sync):
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await alice.request({"type": "create_room", "room": "dev"})
    await bob.request({"type": "join", "room": "dev"})
    await alice.drain()
    await bob.drain()
    await bob.request({"type": "leave", "room": "dev"})
    await alice.request({"type": "send", "room": "dev", "text": "bob left"})
    await alice.request({"type": "send", "room": "lobby", "text": "marker"})
    assert [m["text"] for m in await bob.drain() if m["type"] == "message"] == ["marker"]
    await alice.close()
    await bob.close()


async def test_the_registry_forgets_ended_sessions(create_users, runtime):
    (user,) = await create_users("alice")
    alice = await logged_in("alice")
    assert [s.username for s in runtime.sessions.local_sessions()] == ["alice"]
    assert [s.username for s in runtime.sessions.in_room("lobby")] == ["alice"]
    await alice.close()
    assert runtime.sessions.local_sessions() == []
    assert runtime.sessions.in_room("lobby") == [] and runtime.sessions.of_user(user.pk) == []


def _user(name: str):
    from accounts.models import User

    return User.objects.get(username=name)


class _Recorder:
    """A stand-in session that records the order in which pushes reach it."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.channel_name = self.username = name
        self.user_id = 0
        self.rooms = {"lobby"}
        self.log = log

    async def push(self, push: sessions.Push) -> None:
        self.log.append(self.channel_name)


async def _fan_out_beside_another_task(slice_seconds: float) -> list[str]:
    log: list[str] = []
    registry = sessions.SessionRegistry(Workers(), slice_seconds=slice_seconds, check_every=2)
    for i in range(8):
        registry.add(_Recorder(f"s{i}", log))

    async def other_work() -> None:
        log.append("other")

    other = asyncio.ensure_future(other_work())  # ready to run at the next yield
    message = {"type": "message", "msg_id": 1, "room": "lobby", "from": "a", "text": "x"}
    await registry.fan_out({"to": "room", "room": "lobby", "message": message})
    await other
    return log


async def test_a_long_fan_out_lets_other_work_in_between():
    log = await _fan_out_beside_another_task(slice_seconds=-1)  # always over
    assert log.index("other") == 2  # after the first CHECK_EVERY deliveries


async def test_a_short_fan_out_runs_uninterrupted_so_daphne_can_batch_its_writes():
    log = await _fan_out_beside_another_task(slice_seconds=3600)
    assert log[-1] == "other" and len(log) == 9
