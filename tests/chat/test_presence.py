"""Presence: the ``users`` snapshot, ``presence`` deltas (revision 1.1), sessions ended by
the server."""

from __future__ import annotations

import asyncio

import pytest
from django.core.cache import cache

from accounts import services as accounts
from accounts.models import User
from chat import presence
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def logged_in(name: str):
    session = await open_session(watch_presence=True)
    await session.login(name)
    await session.drain()
    return session


async def online_now(session, wait: float = 3.0) -> list[str]:
    """``online`` of a fresh ``users``, once it has stopped changing (at most ``wait`` s)."""
    last = None
    for _ in range(int(wait / 0.1)):
        online = (await session.request({"type": "users", "id": "now"}))["online"]
        if online == last:
            return online
        last = online
        await asyncio.sleep(0.1)
    return last


def delta(online=(), offline=(), added=(), removed=()) -> dict:
    return {
        "type": "presence",
        "online": list(online),
        "offline": list(offline),
        "added": list(added),
        "removed": list(removed),
    }


@pytest.fixture
def by_hand(chat_settings, runtime):
    """A presence interval no test waits for: the test pushes with ``push()`` itself."""
    chat_settings.CHAT_PRESENCE_INTERVAL = 60
    return runtime.sessions.presence.push


def applied(users: dict, deltas: list[dict]) -> dict:
    """A ``users`` snapshot with ``presence`` deltas applied as PROTOCOL.md 3.2 says."""
    online, everyone = set(users["online"]), set(users["all"])
    for d in deltas:
        everyone |= set(d["added"])
        everyone -= set(d["removed"])
        online -= set(d["removed"])
        online |= set(d["online"])
        online -= set(d["offline"])
    return {"online": sorted(online), "all": sorted(everyone)}


async def test_users_after_login_is_the_snapshot_with_the_presence_interval(create_users):
    await create_users("alice", "bob")
    alice = await open_session(watch_presence=True)
    await alice.login("alice")
    assert alice.after_login[-1] == {
        "type": "users",
        "online": ["alice"],
        "all": ["alice", "bob"],
        "presence_interval": 1,
    }
    await alice.close()


async def test_a_delta_when_the_first_session_logs_in_and_the_last_ends(create_users, by_hand):
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await by_hand()
    assert await alice.recv() == delta(online=["bob"])
    assert await bob.nothing()  # bob's snapshot had himself online already
    bob_phone = await logged_in("bob")  # not bob's first session: nothing to tell
    await bob.close()  # not bob's last session either
    await by_hand()
    assert await alice.nothing()
    await bob_phone.close()
    await by_hand()
    assert await alice.recv() == delta(offline=["bob"])
    await alice.close()


async def test_only_net_changes_reach_a_session(create_users, by_hand):
    """Who came and went, or went and came back, between two deltas is not mentioned."""
    await create_users("alice", "bob", "carol")
    alice = await logged_in("alice")
    carol = await logged_in("carol")
    await by_hand()
    assert await alice.recv() == delta(online=["carol"])
    bob = await logged_in("bob")
    await bob.close()  # came and went
    await carol.close()
    carol = await logged_in("carol")  # went and came back
    await by_hand()
    assert await alice.nothing()
    await carol.close()
    await alice.close()


async def test_a_session_that_logged_in_mid_interval_gets_the_changes_since_its_snapshot(
    create_users, by_hand
):
    await create_users("alice", "bob", "carol")
    alice = await logged_in("alice")
    bob = await logged_in("bob")  # in alice's next delta; already in carol's snapshot
    carol = await open_session(watch_presence=True)
    await carol.login("carol")
    assert carol.after_login[-1]["online"] == ["alice", "bob", "carol"]
    await bob.close()
    await by_hand()
    assert await alice.recv() == delta(online=["carol"])  # bob came and went for alice
    assert await carol.recv() == delta(offline=["bob"])
    await carol.close()
    await alice.close()


async def test_a_new_account_is_added_and_a_deactivated_one_removed(
    create_users, run_sync, by_hand
):
    await create_users("alice")
    watcher = await logged_in("alice")
    (bob,) = await create_users("bob")
    bob_session = await logged_in("bob")
    await by_hand()
    assert await watcher.recv() == delta(online=["bob"], added=["bob"])
    await run_sync(accounts.set_active, bob, False)
    assert (await bob_session.find("session_ended"))["reason"] == "deactivated"
    await bob_session.close()
    await by_hand()
    assert await watcher.recv() == delta(offline=["bob"], removed=["bob"])
    await watcher.close()


async def test_a_burst_of_logins_is_coalesced_and_the_deltas_keep_the_snapshot_true(
    create_users, chat_settings
):
    """50 logins reach a watching session as at most elapsed / interval + 2 ``presence``
    messages, and its snapshot with the deltas applied equals a fresh ``users``."""
    names = [f"user{n:02d}" for n in range(50)]
    await create_users("watcher", *names)
    watcher = await open_session(watch_presence=True)
    began = asyncio.get_running_loop().time()
    await watcher.login("watcher")
    snapshot = watcher.after_login[-1]
    others = [await logged_in(name) for name in names]
    for session in others[::7]:
        await session.close()
    await asyncio.sleep(2.5)  # two intervals and more: every change has been pushed
    elapsed = asyncio.get_running_loop().time() - began
    deltas = await watcher.drain()
    assert deltas and all(m["type"] == "presence" for m in deltas), deltas
    assert len(deltas) <= elapsed / 1 + 2, (len(deltas), elapsed)
    assert all(any(d[k] for k in ("online", "offline", "added", "removed")) for d in deltas)
    fresh = await watcher.request({"type": "users", "id": "fresh"})
    assert applied(snapshot, deltas) == {"online": fresh["online"], "all": fresh["all"]}
    assert len(fresh["online"]) == 1 + 50 - len(others[::7])
    for session in others:
        await session.close()
    await watcher.close()


async def test_deactivation_ends_every_session_of_the_user_with_4003(create_users, run_sync):
    alice, _bob = await create_users("alice", "bob")
    alice_laptop = await logged_in("alice")
    alice_phone = await logged_in("alice")
    bob_session = await logged_in("bob")
    await alice_laptop.drain()
    await run_sync(accounts.set_active, alice, False)
    for session in (alice_laptop, alice_phone):
        assert await session.find("session_ended") == {
            "type": "session_ended",
            "reason": "deactivated",
        }
        assert await session.expect_close() == 4003
        await session.close()
    pushed = await bob_session.find("presence")
    assert pushed["removed"] == ["alice"] and "alice" not in pushed["online"]
    # And alice cannot come back.
    again = await open_session(watch_presence=True)
    answer = await again.request({"type": "login", "username": "alice", "password": "pw"})
    assert answer["reason"] == "invalid_credentials"
    await again.close()
    await bob_session.close()


async def test_deleting_an_account_ends_its_sessions(create_users, run_sync):
    alice, _bob = await create_users("alice", "bob")
    alice_session = await logged_in("alice")
    await run_sync(alice.delete)
    assert await alice_session.find("session_ended") == {
        "type": "session_ended",
        "reason": "ended_by_admin",
    }
    assert await alice_session.expect_close() == 4003
    await alice_session.close()


async def test_heartbeat_ends_sessions_of_accounts_deactivated_behind_its_back(
    create_users, run_sync, runtime
):
    """A change no layer message announced (a manage.py process on the in-memory layer, SQL)."""
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await alice.drain()
    await run_sync(lambda: User.objects.filter(username="bob").update(is_active=False))
    await runtime.sessions.beat()
    assert (await bob.find("session_ended"))["reason"] == "deactivated"
    assert await bob.expect_close() == 4003
    await bob.close()
    assert (await alice.find("presence"))["removed"] == ["bob"]
    await alice.close()


async def test_heartbeat_tells_of_accounts_that_changed_without_a_layer_message(
    create_users, run_sync, runtime
):
    await create_users("alice")
    alice = await logged_in("alice")
    await runtime.sessions.beat()
    await run_sync(lambda: User.objects.bulk_create([User(username="zed")]))  # no signals
    await runtime.sessions.beat()
    assert (await alice.find("presence"))["added"] == ["zed"]
    await alice.close()


# --- presence in the cache -------------------------------------------------------------------


def test_first_and_last_sessions_are_reported(chat_settings):
    assert presence.session_started("alice", "s1") is True
    assert presence.session_started("alice", "s2") is False
    assert presence.online(["alice", "bob"]) == {"alice"}
    assert presence.session_ended("alice", "s1") is False
    assert presence.session_ended("alice", "s2") is True
    assert presence.online(["alice"]) == set()


def test_sessions_of_a_dead_process_stop_counting_and_are_reaped(chat_settings):
    presence.session_started("alice", "s1", process_id="dead-process")
    presence.session_started("bob", "s2", process_id="dead-process")
    presence.session_started("bob", "s3")  # bob also has a session on a live process
    assert presence.online(["alice", "bob"]) == {"alice", "bob"}
    cache.delete("presence:proc:dead-process")  # its heartbeat expired
    assert presence.online(["alice", "bob"]) == {"bob"}
    assert presence.reap(["alice", "bob"]) == {"alice"}
    assert presence.reap(["alice", "bob"]) is None  # nothing left to do
    # A new session after the death is a first session again.
    assert presence.session_started("alice", "s4") is True


async def test_a_push_to_a_client_that_just_went_away_does_not_skip_the_cleanup(
    create_users, monkeypatch
):
    """daphne raises on a send after the peer closed; the consumer must still clean up."""
    from chat.consumers import ChatConsumer

    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await alice.drain()
    original = ChatConsumer.send

    async def send(self, *args, **kwargs):
        if self.username == "bob":
            raise RuntimeError("Attempt to send on a closed protocol")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(ChatConsumer, "send", send)
    await alice.request({"type": "send", "room": "lobby", "text": "anyone?"})
    await bob.close()  # the disconnect that follows; the consumer must still be alive for it
    assert await online_now(alice) == ["alice"]
    await alice.close()


async def test_a_failing_layer_event_does_not_end_the_consumer(create_users, monkeypatch):
    from chat import services

    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await alice.drain()

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(services, "member_room_names", broken)
    await alice.request({"type": "create_room", "room": "new", "members": ["bob"]})
    assert await bob.nothing()  # bob's rooms_changed failed, and was logged
    monkeypatch.undo()
    assert (await bob.request({"type": "ping"}))["type"] == "pong"
    await bob.close()
    assert await online_now(alice) == ["alice"]
    await alice.close()


async def test_a_process_publishes_one_layer_message_per_interval_not_one_per_login(
    create_users, monkeypatch
):
    from channels.layers import get_channel_layer

    names = [f"user{n:02d}" for n in range(30)]
    await create_users("watcher", *names)
    watcher = await logged_in("watcher")
    layer = get_channel_layer()
    published: list[dict] = []
    original = layer.group_send

    async def counting(group, event):
        if event["type"] == "chat.presence":
            published.append(event)
        await original(group, event)

    monkeypatch.setattr(layer, "group_send", counting)
    began = asyncio.get_running_loop().time()
    others = [await logged_in(name) for name in names]
    await asyncio.sleep(1.5)
    elapsed = asyncio.get_running_loop().time() - began
    assert 1 <= len(published) <= elapsed / 1 + 2, (len(published), elapsed)
    assert sorted(n for event in published for n in event["online"]) == names
    for session in others:
        await session.close()
    await watcher.close()


def test_the_interval_keeps_presence_within_a_tenth_of_a_process_delivery_capacity(
    chat_settings,
):
    from chat.presence_feed import interval_for

    chat_settings.CHAT_PRESENCE_INTERVAL = 0  # chosen by the server
    assert [interval_for(n) for n in (0, 1, 500, 501, 5_000, 30_000, 10**6)] == [
        1,
        1,
        1,
        2,
        10,
        60,
        60,
    ]
    chat_settings.CHAT_PRESENCE_INTERVAL = 7  # fixed by the operator (or a test)
    assert interval_for(10**6) == 7
