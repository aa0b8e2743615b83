"""What a login costs the server: a few queries, whatever the number of accounts and rooms."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from chat import room_lists, services
from chat.models import Membership, Room
from chat.room_lists import PublicRooms
from chatproto.framing import encode_json_value
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


def test_loading_accounts_runs_no_chat_code(chat_settings):
    # A post_init receiver would run for every account loaded (every member list).
    assert not post_init.has_listeners(User)


def test_rooms_for_lists_public_rooms_and_the_users_private_ones(make_user):
    alice, bob, carol = (make_user(name) for name in ("alice", "bob", "carol"))
    services.create_room(bob, "zoo", members=["carol"])
    services.create_room(bob, "hideout", private=True, members=["alice"])
    services.create_room(carol, "carols", private=True)
    User.objects.filter(pk=carol.pk).update(is_active=False)  # still listed as a member
    assert services.rooms_for(alice) == [
        {"name": "hideout", "private": True, "owner": "bob", "members": ["alice", "bob"]},
        {"name": "lobby", "private": False, "owner": None, "members": ["alice", "bob", "carol"]},
        {"name": "zoo", "private": False, "owner": "bob", "members": ["bob", "carol"]},
    ]
    assert [room["name"] for room in services.rooms_for(carol)] == ["carols", "lobby", "zoo"]


def test_session_start_takes_the_same_queries_for_ten_accounts_or_a_hundred(make_user):
    def queries_for_a_login(user) -> int:
        with CaptureQueriesContext(connection) as captured:
            start = services.session_start(user)
        assert start is not None and "lobby" in start.room_names
        return len(captured.captured_queries)

    first = make_user("first")
    for i in range(9):
        make_user(f"u{i}")
    few = queries_for_a_login(first)
    for i in range(9, 99):
        make_user(f"u{i}")
    for i in range(5):
        room = Room.objects.create(name=f"r{i}", owner=first)
        Membership.objects.create(room=room, user=first)
    assert queries_for_a_login(first) == few


def test_session_start_refuses_an_account_deactivated_meanwhile(make_user):
    alice = make_user("alice")
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert services.session_start(alice) is None


async def test_deactivating_with_a_plain_save_ends_the_sessions(create_users, run_sync):
    (alice,) = await create_users("alice")
    session = await open_session()
    await session.login("alice")
    await session.drain()

    def deactivate() -> None:
        user = User.objects.get(pk=alice.pk)
        user.is_active = False
        user.save()  # no update_fields: every field written, as the admin does

    await run_sync(deactivate)
    assert (await session.find("session_ended"))["reason"] == "deactivated"
    assert await session.expect_close() == 4003
    await session.close()


def test_saving_other_fields_does_not_read_the_stored_state(make_user):
    alice = make_user("alice")
    with CaptureQueriesContext(connection) as captured:
        alice.save(update_fields=["last_login"])  # what every login does
    assert len(captured.captured_queries) == 1


# --- the process's copy of the public rooms (chat.room_lists) --------------------------------


def _lobby_members(user, public: PublicRooms) -> list[str]:
    start = services.session_start(user, public)
    assert start is not None
    return next(room["members"] for room in start.rooms if room["name"] == "lobby")


def test_a_login_reads_no_public_room_rows_while_nothing_changed(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    public = PublicRooms()
    services.session_start(alice, public)  # builds the copy
    with CaptureQueriesContext(connection) as captured:
        services.session_start(bob, public)
    assert len(captured.captured_queries) < len(_queries_without_a_copy(bob))


def _queries_without_a_copy(user) -> list:
    with CaptureQueriesContext(connection) as captured:
        services.session_start(user)
    return captured.captured_queries


def _make_private(name: str) -> None:
    room = Room.objects.get(name=name)
    room.private = True
    room.save()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda users: services.join_room(users["bob"], "zoo"), id="join"),
        pytest.param(lambda users: services.leave_room(users["carol"], "zoo"), id="leave"),
        pytest.param(
            lambda users: services.create_room(users["bob"], "new", members=["carol"]),
            id="create_room (bulk memberships)",
        ),
        pytest.param(lambda users: users["carol"].delete(), id="account deleted (cascade)"),
        pytest.param(lambda users: Room.objects.filter(name="zoo").delete(), id="room deleted"),
        pytest.param(lambda users: _make_private("zoo"), id="room made private (admin)"),
    ],
)
def test_the_next_login_after_a_change_sees_it(make_user, change):
    users = {name: make_user(name) for name in ("alice", "bob", "carol")}
    services.create_room(users["carol"], "zoo")
    public = PublicRooms()
    services.session_start(users["alice"], public)  # a copy from before the change
    change(users)
    start = services.session_start(users["alice"], public)
    assert start is not None
    assert start.rooms == services.rooms_for(users["alice"])  # as read fresh


def test_a_renamed_account_shows_once_the_copy_is_old(make_user, monkeypatch):
    # No signal tells a rename (a queryset update here): the copy's age bounds it.
    alice, bob = make_user("alice"), make_user("bob")
    public = PublicRooms()
    assert "bob" in _lobby_members(alice, public)
    User.objects.filter(pk=bob.pk).update(username="robert")
    assert "bob" in _lobby_members(alice, public)  # the copy, still young
    monkeypatch.setattr(room_lists, "MAX_AGE", 0.0)
    assert "robert" in _lobby_members(alice, public)


@pytest.mark.parametrize("with_copy", [True, False], ids=["process copy", "read fresh"])
def test_the_encoded_rooms_of_login_ok_are_the_rooms_list_encoded(make_user, with_copy):
    alice, bob = make_user("alice"), make_user("bob")
    services.create_room(bob, "zoo")
    services.create_room(bob, "hideout", private=True, members=["alice"])
    start = services.session_start(alice, PublicRooms() if with_copy else None)
    assert start is not None
    assert [room["name"] for room in start.rooms] == ["hideout", "lobby", "zoo"]
    assert start.rooms_json == [encode_json_value(room) for room in start.rooms]
