"""rooms, join, leave, create_room, invite (PROTOCOL.md 3.2), through the real consumer."""

from __future__ import annotations

import pytest

from chat import services
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def logged_in(name: str, *, remember: str | None = None):
    """``remember``: as a new device of that name, which a private room's messages need
    (``e2e`` objects from the session's device, protocol 4.5)."""
    session = await open_session()
    await session.login(name, remember=remember)
    await session.drain()
    return session


def names(rooms: list[dict]) -> list[str]:
    return [room["name"] for room in rooms]


async def test_rooms_lists_public_rooms_and_own_private_rooms(create_users, run_sync):
    _alice, bob = await create_users("alice", "bob")
    await run_sync(services.create_room, bob, "zoo")
    await run_sync(services.create_room, bob, "bobs-secret", private=True)
    await run_sync(services.create_room, bob, "shared", private=True, members=["alice"])
    session = await logged_in("alice")
    answer = await session.request({"type": "rooms", "id": "r"})
    assert answer["ref"] == "r"
    assert names(answer["rooms"]) == ["lobby", "shared", "zoo"]
    assert answer["rooms"][1] == {
        "name": "shared",
        "private": True,
        "owner": "bob",
        "members": ["alice", "bob"],
    }
    await session.close()


async def test_users_lists_online_and_all_active_accounts(create_users):
    await create_users("alice", "bob")
    await create_users("sleeper", is_active=False)
    session = await logged_in("alice")
    assert await session.request({"type": "users", "id": "u"}) == {
        "type": "users",
        "ref": "u",
        "online": ["alice"],
        "all": ["alice", "bob"],
        "presence_interval": 1,
    }
    await session.close()


async def test_join_a_public_room_answers_rooms_and_tells_the_other_sessions(
    create_users, run_sync
):
    _alice, bob = await create_users("alice", "bob")
    await run_sync(services.create_room, bob, "games")
    laptop = await logged_in("alice")
    phone = await logged_in("alice")
    answer = await laptop.request({"type": "join", "id": "j", "room": "games"})
    assert answer["type"] == "rooms" and answer["ref"] == "j"
    games = next(room for room in answer["rooms"] if room["name"] == "games")
    assert games["members"] == ["alice", "bob"]
    pushed = await phone.find("rooms")
    assert "ref" not in pushed and pushed["rooms"] == answer["rooms"]
    # Both sessions now get the room's messages.
    await laptop.request({"type": "send", "room": "games", "text": "gg"})
    assert (await phone.find("message"))["text"] == "gg"
    assert (await laptop.find("message"))["text"] == "gg"
    await laptop.close()
    await phone.close()


@pytest.mark.parametrize("room", ["bobs-secret", "nowhere"])
async def test_join_a_room_one_cannot_see_is_unknown_room(create_users, run_sync, room):
    _alice, bob = await create_users("alice", "bob")
    await run_sync(services.create_room, bob, "bobs-secret", private=True)
    session = await logged_in("alice")
    answer = await session.request({"type": "join", "id": "j", "room": room})
    assert (answer["code"], answer["ref"]) == ("unknown_room", "j")
    await session.close()


async def test_leave_lobby_is_forbidden(create_users):
    await create_users("alice")
    session = await logged_in("alice")
    answer = await session.request({"type": "leave", "room": "lobby"})
    assert answer["code"] == "forbidden"
    await session.close()


async def test_leaving_a_room_one_is_not_in_changes_nothing(create_users, run_sync):
    _alice, bob = await create_users("alice", "bob")
    await run_sync(services.create_room, bob, "games")
    session = await logged_in("alice")
    answer = await session.request({"type": "leave", "room": "games"})
    assert answer["type"] == "rooms"
    assert next(r for r in answer["rooms"] if r["name"] == "games")["members"] == ["bob"]
    await session.close()


async def test_leaving_a_private_room_tells_remaining_members_and_stops_its_messages(
    create_users, run_sync
):
    _alice, bob = await create_users("alice", "bob")
    await run_sync(services.create_room, bob, "team", private=True, members=["alice"])
    alice_session = await logged_in("alice")
    alice_phone = await logged_in("alice")
    bob_session = await logged_in("bob", remember="laptop")
    answer = await alice_session.request({"type": "leave", "room": "team"})
    assert names(answer["rooms"]) == ["lobby"]
    assert names((await alice_phone.find("rooms"))["rooms"]) == ["lobby"]
    team = next(r for r in (await bob_session.find("rooms"))["rooms"] if r["name"] == "team")
    assert team["members"] == ["bob"]
    sealed = e2e_body(bob_session.device, "still here?")
    await bob_session.request({"type": "send", "room": "team", "e2e": sealed})
    assert (await bob_session.find("message"))["e2e"] == sealed
    for session in (alice_session, alice_phone):
        assert "message" not in [m["type"] for m in await session.drain()]
    for session in (alice_session, alice_phone, bob_session):
        await session.close()


async def test_create_room_owned_by_the_sender_with_members_pushed(create_users):
    await create_users("alice", "bob", "carol")
    alice = await logged_in("alice")
    alice_phone = await logged_in("alice")
    bob = await logged_in("bob", remember="laptop")
    carol = await logged_in("carol")
    answer = await alice.request(
        {"type": "create_room", "id": "c", "room": "plans", "private": True, "members": ["bob"]}
    )
    assert answer["ref"] == "c"
    plans = {"name": "plans", "private": True, "owner": "alice", "members": ["alice", "bob"]}
    assert plans in answer["rooms"]
    assert plans in (await bob.find("rooms"))["rooms"]
    assert plans in (await alice_phone.find("rooms"))["rooms"]
    assert await carol.nothing()
    sealed = e2e_body(bob.device, "in")
    await bob.request({"type": "send", "room": "plans", "e2e": sealed})
    assert (await alice.find("message"))["e2e"] == sealed
    assert (await alice_phone.find("message"))["e2e"] == sealed
    assert await carol.nothing()
    for session in (alice, alice_phone, bob, carol):
        await session.close()


async def test_create_room_defaults_to_public_without_members(create_users):
    await create_users("alice")
    session = await logged_in("alice")
    answer = await session.request({"type": "create_room", "room": "open"})
    room = next(r for r in answer["rooms"] if r["name"] == "open")
    assert room == {"name": "open", "private": False, "owner": "alice", "members": ["alice"]}
    await session.close()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"room": "lobby"}, "room_exists"),
        ({"room": "taken"}, "room_exists"),
        ({"room": "new", "members": ["ghost"]}, "unknown_user"),
        ({"room": "new", "members": ["sleeper"]}, "unknown_user"),
        ({"room": "Bad Name"}, "bad_request"),
        ({"room": "new", "members": ["x"] * 257}, "bad_request"),
    ],
)
async def test_create_room_errors(create_users, run_sync, fields, code):
    _alice, bob = await create_users("alice", "bob")
    await create_users("sleeper", is_active=False)
    await run_sync(services.create_room, bob, "taken", private=True)
    session = await logged_in("alice")
    answer = await session.request({"type": "create_room", "id": "c", **fields})
    assert (answer["code"], answer["ref"]) == (code, "c")
    await session.close()


async def test_invite_adds_a_member_and_tells_them(create_users, run_sync):
    alice, _bob = await create_users("alice", "bob")
    await run_sync(services.create_room, alice, "team", private=True)
    alice_session = await logged_in("alice", remember="laptop")
    bob_session = await logged_in("bob")
    answer = await alice_session.request(
        {"type": "invite", "id": "i", "room": "team", "user": "bob"}
    )
    assert answer["ref"] == "i"
    assert next(r for r in answer["rooms"] if r["name"] == "team")["members"] == ["alice", "bob"]
    pushed = await bob_session.find("rooms")
    assert "team" in names(pushed["rooms"])
    sealed = e2e_body(alice_session.device, "welcome")
    await alice_session.request({"type": "send", "room": "team", "e2e": sealed})
    assert (await bob_session.find("message"))["e2e"] == sealed
    await alice_session.close()
    await bob_session.close()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"room": "lobby", "user": "bob"}, "bad_request"),
        ({"room": "bobs", "user": "carol"}, "unknown_room"),
        ({"room": "nowhere", "user": "bob"}, "unknown_room"),
        ({"room": "mine", "user": "ghost"}, "unknown_user"),
        ({"room": "mine", "user": "sleeper"}, "unknown_user"),
    ],
)
async def test_invite_errors(create_users, run_sync, fields, code):
    alice, bob, _carol = await create_users("alice", "bob", "carol")
    await create_users("sleeper", is_active=False)
    await run_sync(services.create_room, bob, "bobs", private=True)
    await run_sync(services.create_room, alice, "mine", private=True)
    session = await logged_in("alice")
    answer = await session.request({"type": "invite", "id": "i", **fields})
    assert (answer["code"], answer["ref"]) == (code, "i")
    await session.close()


async def test_ping_answers_pong_with_ref(create_users):
    await create_users("alice")
    session = await logged_in("alice")
    assert await session.request({"type": "ping", "id": "p1"}) == {"type": "pong", "ref": "p1"}
    await session.send({"type": "ping"})
    assert await session.recv() == {"type": "pong"}
    await session.close()


async def test_a_failing_handler_answers_internal_and_the_session_goes_on(
    create_users, monkeypatch
):
    await create_users("alice")
    session = await logged_in("alice")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "rooms_for", broken)
    answer = await session.request({"type": "rooms", "id": "r"})
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", "internal", "r")
    assert "boom" not in answer["message"]
    assert (await session.request({"type": "ping"}))["type"] == "pong"
    await session.close()
