""":class:`chat.presence_feed.PresenceFeed` on its own: fakes for the registry and the
sessions, the test's cache (shared, like Redis, by every feed built here)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache

from chat import presence
from chat.presence_feed import PresenceFeed, _SortedSet
from chatproto.framing import decode_plaintext


class FakeSession:
    def __init__(self, username: str, presence_seq: int | None = 0) -> None:
        self.username = username
        self.channel_name = f"{username}-channel"
        self.presence_seq = presence_seq


class FakeRegistry:
    """What the feed needs of :class:`chat.sessions.SessionRegistry`; records the pushes."""

    def __init__(self, *sessions: FakeSession) -> None:
        self.sessions = list(sessions)
        self.pushed: list[tuple[str, dict[str, Any]]] = []
        self.seqs: list[int | None] = []

    def local_sessions(self) -> list[FakeSession]:
        return list(self.sessions)

    def local_count(self) -> int:
        return len(self.sessions)

    def has_username(self, username: str) -> bool:
        return any(s.username == username for s in self.sessions)

    async def push_to(self, sessions, plaintext: bytes, presence_seq: int | None = None) -> None:
        self.pushed += [(s.username, decode_plaintext(plaintext)) for s in sessions]
        self.seqs.append(presence_seq)


def delta(online=(), offline=(), added=(), removed=()) -> dict:
    return {
        "type": "presence",
        "online": list(online),
        "offline": list(offline),
        "added": list(added),
        "removed": list(removed),
    }


def feed_with_view(registry: FakeRegistry, online=(), everyone=()) -> PresenceFeed:
    """A feed whose view is already read (no database)."""
    feed = PresenceFeed(registry)  # type: ignore[arg-type]
    feed.online = _SortedSet(online)
    feed.all = _SortedSet(everyone)
    return feed


def test_the_interval_counts_the_sessions_without_copying_them(chat_settings):
    class Counting(FakeRegistry):
        def local_sessions(self):
            raise AssertionError("interval() copied the sessions")

    feed = PresenceFeed(Counting(*(FakeSession(f"u{n}") for n in range(600))))  # type: ignore[arg-type]
    chat_settings.CHAT_PRESENCE_INTERVAL = 0
    assert feed.interval() == 2


def test_the_first_sessions_of_a_big_organisation_are_told_the_interval_of_its_share(
    chat_settings,
):
    # 5,000 active accounts on one process: the first session is told what 5,000 would be
    # (a session keeps what it was told, and all of them may log in now), not 1 s.
    chat_settings.CHAT_PRESENCE_INTERVAL = 0
    everyone = [f"u{n:04}" for n in range(5_000)]
    feed = feed_with_view(FakeRegistry(FakeSession("u0000")), everyone=everyone)
    assert feed.interval() == 10

    feed.processes = 2  # the heartbeat counted two live processes: half the accounts each
    assert feed.interval() == 5

    small = feed_with_view(FakeRegistry(FakeSession("u0")), everyone=everyone[:400])
    assert small.interval() == 1


def test_more_sessions_than_the_share_still_lengthen_the_interval(chat_settings):
    chat_settings.CHAT_PRESENCE_INTERVAL = 0
    registry = FakeRegistry(*(FakeSession(f"u{n % 10}") for n in range(1_200)))
    feed = feed_with_view(registry, everyone=[f"u{n}" for n in range(10)])
    assert feed.interval() == 3


def test_the_heartbeat_counts_the_live_processes(chat_settings):
    presence.heartbeat("one")
    presence.heartbeat("two")
    assert presence.live_processes() == 2

    cache.delete(presence.process_key("two"))  # its heartbeat expired: it died
    assert presence.live_processes() == 1


async def test_a_failed_publish_is_retried_and_the_local_sessions_still_get_their_push(
    chat_settings, monkeypatch
):
    from chat import delivery

    async def redis_down(changes):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(delivery, "presence_changed", redis_down)
    registry = FakeRegistry(FakeSession("alice"))
    feed = feed_with_view(registry, online=["alice"], everyone=["alice", "bob"])
    feed._start()  # a tick is running: changes wait for it
    await feed.local_change("bob", True)
    try:
        for _ in range(100):  # the tick comes within the interval (1 s)
            if registry.pushed:
                break
            await asyncio.sleep(0.05)
        assert registry.pushed == [("alice", delta(online=["bob"]))]
        assert feed._pending == {"bob": (False, True)}  # published at the next tick
    finally:
        feed.stop()


async def test_stopping_publishes_what_was_pending_instead_of_keeping_it(
    chat_settings, monkeypatch
):
    from chat import delivery

    published: list[dict] = []

    async def publish(changes):
        published.append(changes)

    monkeypatch.setattr(delivery, "presence_changed", publish)
    feed = feed_with_view(FakeRegistry(FakeSession("alice")), ["alice"], ["alice", "bob"])
    feed._start()
    await feed.local_change("bob", True)  # waits for the tick
    feed.stop()
    assert feed._pending == {}
    await asyncio.sleep(0.01)
    assert [(p["online"], p["offline"]) for p in published] == [(["bob"], [])]


@pytest.mark.parametrize("offline_first", [True, False])
async def test_a_user_back_on_another_process_within_the_interval_stays_online(
    chat_settings, monkeypatch, offline_first
):
    """Alice's last session ends on A; she logs in on B (her first session again) before A's
    tick. B's view had her online still; whatever order A's and B's messages arrive in, she
    ends up online everywhere, her own session on B included."""
    from chat import delivery

    published: list[dict] = []

    async def publish(changes):
        published.append(changes)

    monkeypatch.setattr(delivery, "presence_changed", publish)
    everyone = ["alice", "bob"]
    a = feed_with_view(FakeRegistry(), ["alice", "bob"], everyone)
    b_registry = FakeRegistry(FakeSession("bob"))
    b = feed_with_view(b_registry, ["alice", "bob"], everyone)
    c = feed_with_view(FakeRegistry(FakeSession("bob")), ["alice", "bob"], everyone)
    await sync_to_async(presence.session_started)("alice", "alice-on-a", "process-a")

    assert await sync_to_async(presence.session_ended)("alice", "alice-on-a")
    await a.local_change("alice", False)
    b_registry.sessions.append(FakeSession("alice"))
    assert await sync_to_async(presence.session_started)("alice", "alice-on-b", "process-b")
    await b.local_change("alice", True)
    await asyncio.sleep(0.01)  # no tick runs: each published at once

    from_a = [p for p in published if p["origin"] == a.origin]
    from_b = [p for p in published if p["origin"] == b.origin]
    assert [p["offline"] for p in from_a] == [["alice"]]
    assert [p["online"] for p in from_b] == [["alice"]]  # the fact, though B's view had it
    order = from_a + from_b if offline_first else from_b + from_a
    for feed in (a, b, c):
        for message in order:
            await feed.receive(message)
    assert all("alice" in feed.online for feed in (a, b, c))  # type: ignore[operator]


async def test_a_user_with_a_session_here_is_never_set_offline(chat_settings):
    """Even if the cache does not have the session yet (it is recorded after it registers)."""
    feed = feed_with_view(FakeRegistry(FakeSession("alice")), ["alice"], ["alice"])
    await feed.receive({"origin": "elsewhere", "online": [], "offline": ["alice"]})
    assert "alice" in feed.online  # type: ignore[operator]


async def test_messages_received_while_the_view_is_first_read_are_applied_after(chat_settings):
    read = asyncio.Event()

    class SlowDatabase:
        def database(self, func):
            async def call():
                await read.wait()
                return {"online": ["alice"], "all": ["alice", "bob"]}

            return call

    registry = FakeRegistry(FakeSession("alice"))
    registry.workers = SlowDatabase()  # type: ignore[attr-defined]
    feed = PresenceFeed(registry)  # type: ignore[arg-type]
    snapshot = asyncio.ensure_future(feed.snapshot(registry.sessions[0]))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    await sync_to_async(presence.session_started)("bob", "bob-elsewhere", "process-b")
    await feed.receive({"origin": "process-b", "online": ["bob"], "offline": []})
    await feed.receive({"origin": None, "added": ["carol"], "removed": []})
    read.set()
    users = decode_plaintext(await snapshot)
    feed.stop()
    assert (users["online"], users["all"]) == (["alice", "bob"], ["alice", "bob", "carol"])


async def test_a_delta_deferred_behind_a_newer_snapshot_is_not_sent(chat_settings):
    """A tick's push waits for the session's lock (a ``users`` request holds it); the
    snapshot that request sends already has the change, and a later one: the delta, sent
    after it, would undo the later change for good."""
    from chat.outbox import Outbox
    from chat.sessions import Push

    registry = FakeRegistry(FakeSession("alice"))
    feed = feed_with_view(registry, ["alice"], ["alice", "bob"])
    await feed.local_change("bob", True)  # position 0 -> 1
    await feed.push()
    assert registry.pushed == [("alice", delta(online=["bob"]))]
    assert registry.seqs == [1]  # the position the delta reaches

    class Writer:
        presence_seq: int | None = 0
        rooms: set[str] = set()
        sent: list[bytes] = []

        async def send_plaintext(self, plaintext: bytes) -> bool:
            self.sent.append(plaintext)
            return True

    writer = Writer()
    outbox = Outbox(writer, SimpleNamespace(workers=None))  # type: ignore[arg-type]
    async with outbox.lock:  # the users request
        await outbox.push(Push(b"stale delta", presence_seq=1))
        await outbox.push(Push(b"newer delta", presence_seq=3))
        writer.presence_seq = 2  # its snapshot
    assert writer.sent == [b"newer delta"]


async def test_what_stopping_could_not_publish_is_dropped(chat_settings, monkeypatch):
    from chat import delivery

    async def redis_down(changes):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(delivery, "presence_changed", redis_down)
    feed = feed_with_view(FakeRegistry(FakeSession("alice")), ["alice"], ["alice", "bob"])
    feed._start()
    await feed.local_change("bob", True)
    feed.stop()
    await asyncio.sleep(0.01)
    assert feed._pending == {}  # not kept to go out much later


async def test_each_session_is_pushed_at_the_interval_its_snapshot_told_it(chat_settings):
    """The process's interval grows as sessions come (issue 12's review item 7): a session
    told 1 s still gets its changes each second, one told 2 s at most every 2 s."""
    chat_settings.CHAT_PRESENCE_INTERVAL = 0
    alice, bob = FakeSession("alice", None), FakeSession("bob", None)
    registry = FakeRegistry(alice)
    feed = feed_with_view(registry, ["alice"], ["alice", "bob", "carol", "dave"])
    try:
        assert decode_plaintext(await feed.snapshot(alice))["presence_interval"] == 1
        registry.sessions += [FakeSession(f"u{n}", None) for n in range(600)]
        registry.sessions.append(bob)
        assert decode_plaintext(await feed.snapshot(bob))["presence_interval"] == 2

        await feed.local_change("carol", True)
        await feed.push(100.0)
        assert registry.pushed == [
            ("alice", delta(online=["carol"])),
            ("bob", delta(online=["carol"])),
        ]
        registry.pushed.clear()

        await feed.local_change("dave", True)
        await feed.push(101.0)
        assert registry.pushed == [("alice", delta(online=["dave"]))]  # bob's turn is at 102
        registry.pushed.clear()

        await feed.push(102.0)
        assert registry.pushed == [("bob", delta(online=["dave"]))]
        assert feed._period == 1  # the tick keeps alice's cadence
    finally:
        feed.stop()


async def test_a_session_told_a_shorter_interval_brings_the_tick_round_sooner(chat_settings):
    chat_settings.CHAT_PRESENCE_INTERVAL = 0
    registry = FakeRegistry()
    feed = feed_with_view(registry, [], ["alice"])
    feed._period = 4  # the tick of a process that had many sessions
    alice = FakeSession("alice", None)
    registry.sessions.append(alice)
    try:
        assert decode_plaintext(await feed.snapshot(alice))["presence_interval"] == 1
        assert feed._period == 1
        assert feed._rescheduled.is_set()
    finally:
        feed.stop()


async def test_a_tick_without_changes_does_not_walk_the_sessions(chat_settings):
    class Watched(FakeRegistry):
        walks = 0

        def local_sessions(self):
            self.walks += 1
            return super().local_sessions()

    chat_settings.CHAT_PRESENCE_INTERVAL = 0
    alice = FakeSession("alice", None)
    registry = Watched(alice)
    feed = feed_with_view(registry, ["alice"], ["alice", "bob"])
    try:
        await feed.snapshot(alice)
        await feed.push(100.0)
        await feed.push(101.0)
        assert registry.walks == 0
        assert registry.pushed == []

        await feed.local_change("bob", True)
        await feed.push(102.0)
        assert registry.walks == 1
        assert registry.pushed == [("alice", delta(online=["bob"]))]
    finally:
        feed.stop()


def test_the_view_keeps_each_name_encoded_beside_it_in_order():
    names = _SortedSet(["carol", "alice"])
    names.set("bob", True)
    names.set("zoë", True)
    names.set("carol", False)
    assert names.ordered == ["alice", "bob", "zoë"]
    assert names.encoded == [json.dumps(n, ensure_ascii=False).encode() for n in names.ordered]
