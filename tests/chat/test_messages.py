"""send, pm, offline delivery and history (PROTOCOL.md 3.2), through the real consumer."""

from __future__ import annotations

import re

import pytest

from chat import services
from chat.models import Message, Room
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def logged_in(name: str, *, remember: str | None = None):
    """A session of ``name``; ``remember``: as a new device of that name, which private
    messages need (they carry ``e2e`` objects from the session's device, protocol 4.5)."""
    session = await open_session()
    await session.login(name, remember=remember)
    return session


async def test_send_is_acked_then_reaches_every_member_sender_included(create_users):
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await alice.drain()
    ack = await alice.request({"type": "send", "id": "s1", "room": "lobby", "text": "hello"})
    assert ack["type"] == "ack" and ack["ref"] == "s1"
    assert TS.fullmatch(ack["ts"])
    expected = {
        "type": "message",
        "msg_id": ack["msg_id"],
        "room": "lobby",
        "from": "alice",
        "text": "hello",
        "ts": ack["ts"],
    }
    assert await alice.recv() == expected
    assert await bob.recv() == expected
    await alice.close()
    await bob.close()


async def test_msg_ids_increase_across_rooms_and_conversations(create_users):
    await create_users("alice", "bob")
    alice = await logged_in("alice", remember="laptop")
    await alice.request({"type": "create_room", "room": "ops"})
    ids = []
    for request in (
        {"type": "send", "room": "lobby", "text": "1"},
        {"type": "pm", "to": "bob", "e2e": e2e_body(alice.device, "2")},
        {"type": "send", "room": "ops", "text": "3"},
    ):
        ids.append((await alice.request(request))["msg_id"])
    assert ids == sorted(ids) and len(set(ids)) == 3
    await alice.close()


@pytest.mark.parametrize(
    ("room", "code"),
    [("public-room", "forbidden"), ("secret", "unknown_room"), ("nowhere", "unknown_room")],
)
async def test_send_to_a_room_one_is_not_in(create_users, run_sync, room, code):
    _alice, carol = await create_users("alice", "carol")
    await run_sync(services.create_room, carol, "public-room")
    await run_sync(services.create_room, carol, "secret", private=True)
    session = await logged_in("alice")
    answer = await session.request({"type": "send", "id": "x", "room": room, "text": "hi"})
    assert answer["type"] == "error" and answer["code"] == code and answer["ref"] == "x"
    assert answer["message"]
    await session.close()


@pytest.mark.parametrize(
    ("text", "code"), [("", "bad_request"), ("   \n", "bad_request"), ("x" * 4001, "too_large")]
)
async def test_send_text_bounds(create_users, text, code):
    await create_users("alice")
    session = await logged_in("alice")
    answer = await session.request({"type": "send", "room": "lobby", "text": text})
    assert answer["code"] == code
    await session.close()


async def test_private_message_reaches_recipient_and_sender_sessions_only(create_users):
    await create_users("alice", "bob", "carol")
    alice = await logged_in("alice", remember="laptop")
    alice_phone = await logged_in("alice")
    bob = await logged_in("bob")
    carol = await logged_in("carol")
    for session in (alice, alice_phone, bob, carol):
        await session.drain()
    sealed = e2e_body(alice.device, "psst")
    ack = await alice.request({"type": "pm", "id": "p", "to": "bob", "e2e": sealed})
    expected = {
        "type": "private",
        "msg_id": ack["msg_id"],
        "from": "alice",
        "to": "bob",
        "e2e": sealed,
        "ts": ack["ts"],
    }
    assert await alice.recv() == expected
    assert await alice_phone.recv() == expected
    assert await bob.recv() == expected
    assert await carol.nothing()
    for session in (alice, alice_phone, bob, carol):
        await session.close()


@pytest.mark.parametrize(
    ("to", "code"),
    [("nobody", "unknown_user"), ("sleeper", "unknown_user"), ("alice", "bad_request")],
)
async def test_pm_errors(create_users, to, code):
    await create_users("alice")
    await create_users("sleeper", is_active=False)
    session = await logged_in("alice", remember="laptop")
    sealed = e2e_body(session.device)
    answer = await session.request({"type": "pm", "id": "e", "to": to, "e2e": sealed})
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", code, "e")
    await session.close()


async def test_offline_private_messages_arrive_after_login_ok_oldest_first_then_users(
    create_users, run_sync
):
    await create_users("alice", "bob")
    alice = await logged_in("alice", remember="laptop")
    sealed = [e2e_body(alice.device, f"m{i}") for i in range(3)]
    acks = [await alice.request({"type": "pm", "to": "bob", "e2e": e2e}) for e2e in sealed]
    assert await run_sync(lambda: Message.objects.filter(delivered=False).count()) == 3
    bob = await open_session()
    answer = await bob.request({"type": "login", "username": "bob", "password": "pw"})
    assert answer["type"] == "login_ok"
    queued = [await bob.recv() for _ in range(3)]
    assert [m["e2e"] for m in queued] == sealed
    assert [m["msg_id"] for m in queued] == [a["msg_id"] for a in acks]
    assert {m["type"] for m in queued} == {"private"}
    assert (await bob.recv())["type"] == "users"
    assert await run_sync(lambda: Message.objects.filter(delivered=False).count()) == 0
    await bob.close()
    # Delivered means delivered: the next login gets none of them again.
    again = await open_session()
    await again.login("bob")
    assert [m["type"] for m in again.after_login] == ["users"]
    await again.close()
    await alice.close()


async def test_private_message_to_an_online_user_is_not_queued(create_users, run_sync):
    await create_users("alice", "bob")
    alice = await logged_in("alice", remember="laptop")
    bob = await logged_in("bob")
    sealed = e2e_body(alice.device, "live")
    await alice.request({"type": "pm", "to": "bob", "e2e": sealed})
    assert (await bob.find("private"))["e2e"] == sealed
    assert await run_sync(lambda: Message.objects.filter(delivered=False).count()) == 0
    await alice.close()
    await bob.close()


async def test_bodies_are_stored_encrypted(create_users, run_sync):
    await create_users("alice", "bob")
    alice = await logged_in("alice", remember="laptop")
    await alice.request({"type": "send", "room": "lobby", "text": "the launch code is 1234"})
    await alice.request({"type": "pm", "to": "bob", "e2e": e2e_body(alice.device, "meet at noon")})
    await alice.close()
    stored = await run_sync(lambda: list(Message.objects.values_list("body_encrypted", flat=True)))
    assert len(stored) == 2
    for body in stored:  # an e2e object is stored encrypted at rest too
        assert "launch" not in body and "megolm" not in body


# --- history ---------------------------------------------------------------------------------


async def test_history_pages_backwards_with_before_and_has_more(create_users):
    await create_users("alice")
    alice = await logged_in("alice")
    ids = [
        (await alice.request({"type": "send", "room": "lobby", "text": f"n{i}"}))["msg_id"]
        for i in range(5)
    ]
    await alice.drain()
    page = await alice.request({"type": "history", "id": "h", "room": "lobby", "limit": 2})
    assert page["type"] == "history" and page["ref"] == "h" and page["room"] == "lobby"
    assert [m["msg_id"] for m in page["messages"]] == ids[3:]
    assert page["has_more"] is True
    assert set(page["messages"][0]) == {"msg_id", "room", "from", "text", "ts"}
    older = await alice.request(
        {"type": "history", "room": "lobby", "limit": 2, "before": page["messages"][0]["msg_id"]}
    )
    assert [m["msg_id"] for m in older["messages"]] == ids[1:3]
    assert older["has_more"] is True
    oldest = await alice.request({"type": "history", "room": "lobby", "before": ids[1]})
    assert [m["text"] for m in oldest["messages"]] == ["n0"]
    assert oldest["has_more"] is False
    everything = await alice.request({"type": "history", "room": "lobby"})
    assert [m["text"] for m in everything["messages"]] == ["n0", "n1", "n2", "n3", "n4"]
    assert everything["has_more"] is False
    await alice.close()


async def test_history_with_a_user_holds_the_private_messages_both_ways(create_users):
    await create_users("alice", "bob", "carol")
    alice = await logged_in("alice", remember="laptop")
    bob = await logged_in("bob", remember="laptop")
    hi_bob, hi_alice = e2e_body(alice.device, "hi bob"), e2e_body(bob.device, "hi alice")
    await alice.request({"type": "pm", "to": "bob", "e2e": hi_bob})
    await bob.request({"type": "pm", "to": "alice", "e2e": hi_alice})
    await alice.request({"type": "pm", "to": "carol", "e2e": e2e_body(alice.device, "not bob")})
    await alice.request({"type": "send", "room": "lobby", "text": "public"})
    page = await bob.request({"type": "history", "with": "alice"})
    assert page["with"] == "alice" and "room" not in page
    assert [(m["from"], m["to"], m["e2e"]) for m in page["messages"]] == [
        ("alice", "bob", hi_bob),
        ("bob", "alice", hi_alice),
    ]
    assert set(page["messages"][0]) == {"msg_id", "from", "to", "e2e", "ts"}
    await alice.close()
    await bob.close()


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"room": "secret"}, "unknown_room"),
        ({"room": "public-room"}, "unknown_room"),
        ({"room": "nowhere"}, "unknown_room"),
        ({"with": "nobody"}, "unknown_user"),
        ({"with": "alice"}, "bad_request"),
        ({}, "bad_request"),
        ({"room": "lobby", "with": "bob"}, "bad_request"),
        ({"room": "lobby", "limit": 0}, "bad_request"),
    ],
)
async def test_history_errors(create_users, run_sync, request_fields, code):
    _alice, carol = await create_users("alice", "carol")
    await run_sync(services.create_room, carol, "secret", private=True)
    await run_sync(services.create_room, carol, "public-room")
    session = await logged_in("alice")
    answer = await session.request({"type": "history", "id": "h", **request_fields})
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", code, "h")
    await session.close()


async def test_history_limit_over_100_counts_as_100(create_users, run_sync):
    (alice,) = await create_users("alice")
    await run_sync(
        lambda: [services.send_room_message(alice, "lobby", f"m{i}") for i in range(105)]
    )
    session = await logged_in("alice")
    page = await session.request({"type": "history", "room": "lobby", "limit": 1000})
    assert len(page["messages"]) == 100 and page["has_more"] is True
    default = await session.request({"type": "history", "room": "lobby"})
    assert len(default["messages"]) == 50
    await session.close()


async def test_history_is_shortened_to_fit_one_record(create_users, run_sync):
    (alice,) = await create_users("alice")
    text = "\U0001f600" * 4000  # 16,000 bytes of UTF-8 each
    await run_sync(lambda: [services.send_room_message(alice, "lobby", text) for _ in range(100)])
    session = await logged_in("alice")
    page = await session.request({"type": "history", "room": "lobby", "limit": 100})
    assert 0 < len(page["messages"]) < 100
    assert page["has_more"] is True
    newest = await run_sync(lambda: Message.objects.order_by("-pk").first().pk)
    assert page["messages"][-1]["msg_id"] == newest  # the oldest were dropped, not the newest
    await session.close()


def test_the_lobby_migration_creates_lobby_with_every_user(make_user):
    import importlib

    from django.apps import apps

    from chat.models import Membership

    alice = make_user("alice")
    Room.objects.filter(name="lobby").delete()
    importlib.import_module("chat.migrations.0002_lobby").create_lobby(apps, None)
    lobby = Room.objects.get(name="lobby")
    assert (lobby.private, lobby.owner) == (False, None)
    assert list(Membership.objects.filter(room=lobby).values_list("user", flat=True)) == [alice.pk]
