"""Presence, users pushes and sessions ended by the server."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from accounts import services as accounts
from accounts.models import User
from chat import presence
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def logged_in(name: str):
    session = await open_session()
    await session.login(name)
    await session.drain()
    return session


async def test_users_is_pushed_when_the_first_session_logs_in_and_the_last_ends(create_users):
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    assert await alice.recv() == {
        "type": "users",
        "online": ["alice", "bob"],
        "all": ["alice", "bob"],
    }
    bob_phone = await logged_in("bob")  # not bob's first session: no push
    assert await alice.nothing()
    await bob.close()  # not bob's last session: no push
    assert await alice.nothing()
    await bob_phone.close()
    assert await alice.recv() == {"type": "users", "online": ["alice"], "all": ["alice", "bob"]}
    await alice.close()


async def test_a_new_account_is_pushed_in_users(create_users):
    await create_users("alice")
    alice = await logged_in("alice")
    await create_users("bob")
    assert await alice.recv() == {"type": "users", "online": ["alice"], "all": ["alice", "bob"]}
    await alice.close()


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
    pushed = await bob_session.find("users")
    assert pushed["all"] == ["bob"] and "alice" not in pushed["online"]
    # And alice cannot come back.
    again = await open_session()
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
    assert (await alice.find("users"))["online"] == ["alice"]
    await alice.close()


async def test_heartbeat_pushes_users_when_accounts_changed_without_a_push(
    create_users, run_sync, runtime
):
    await create_users("alice")
    alice = await logged_in("alice")
    await runtime.sessions.beat()
    await run_sync(lambda: User.objects.bulk_create([User(username="zed")]))  # no signals
    await runtime.sessions.beat()
    assert (await alice.find("users"))["all"] == ["alice", "zed"]
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
    users = await alice.find("users")
    assert users["online"] == ["alice"]
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
    assert (await alice.find("users"))["online"] == ["alice"]
    await alice.close()
