"""End to end over real sockets: daphne in a subprocess, websocket-client, chatproto.

Each test runs twice: on one process (SQLite, in-memory layer) and on two
processes sharing Redis and PostgreSQL, with the users spread over both
(``on=0`` / ``on=1``), so every delivery below also crosses processes.
"""

from __future__ import annotations

import time

import pytest

from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.sync import SyncClient

pytestmark = pytest.mark.slow  # starts daphne processes


def messages_until(client: SyncClient, kind: str, text: str) -> list[dict]:
    """Every message up to and including the ``kind`` message with ``text`` (a marker)."""
    seen = []
    while True:
        message = client.recv()
        seen.append(message)
        if message["type"] == kind and message.get("text") == text:
            return seen


def test_login_and_lobby_broadcast(deployment):
    alice, alice_client = deployment.register("alice", on=0)
    bob, _ = deployment.register("bob", on=1)
    bob_client = deployment.login(bob, on=1)
    assert any(room["name"] == "lobby" for room in bob_client.request({"type": "rooms"})["rooms"])
    ack = alice_client.request({"type": "send", "room": "lobby", "text": "hello everyone"})
    assert ack["type"] == "ack"
    for client in (alice_client, bob_client):
        message = client.find("message")
        assert (message["msg_id"], message["from"], message["text"]) == (
            ack["msg_id"],
            alice,
            "hello everyone",
        )


def test_private_message_reaches_only_its_recipient(deployment):
    _alice, alice_client = deployment.register("alice", on=0, remember="laptop")
    bob, bob_client = deployment.register("bob", on=1)
    carol, carol_a = deployment.register("carol", on=0)
    carol_b = deployment.login(carol, on=1)
    sealed = e2e_body(alice_client.device, "for bob only")
    ack = alice_client.request({"type": "pm", "to": bob, "e2e": sealed})
    at_bob = bob_client.find("private")
    assert (at_bob["msg_id"], at_bob["e2e"]) == (ack["msg_id"], sealed)
    assert alice_client.find("private")["msg_id"] == ack["msg_id"]
    # A lobby message sent afterwards marks the end: carol's sessions saw no private before it.
    alice_client.request({"type": "send", "room": "lobby", "text": "marker"})
    for client in (carol_a, carol_b):
        seen = messages_until(client, "message", "marker")
        assert [m for m in seen if m["type"] == "private"] == []


def test_offline_private_messages_arrive_at_the_next_login(deployment):
    _alice, alice_client = deployment.register("alice", on=0, remember="laptop")
    bob, bob_client = deployment.register("bob", on=1)
    alice_client.roster.until(lambda roster: bob in roster.online)
    bob_client.close()
    alice_client.roster.until(lambda roster: bob not in roster.online)
    sealed = [e2e_body(alice_client.device, note) for note in ("first", "second")]
    for e2e in sealed:
        alice_client.request({"type": "pm", "to": bob, "e2e": e2e})
    again = deployment.connect(on=1)
    assert (
        again.request(
            {"type": "login", "username": bob, "password": "correct horse battery staple"}
        )["type"]
        == "login_ok"
    )
    assert [again.recv()["e2e"] for _ in sealed] == sealed
    assert again.recv()["type"] == "users"


def test_private_rooms_refuse_non_members(deployment):
    _alice, alice_client = deployment.register("alice", on=0)
    bob, bob_client = deployment.register("bob", on=1, remember="laptop")
    carol, carol_client = deployment.register("carol", on=1, remember="laptop")
    room = f"team{deployment.username('r').split('-')[1]}"
    answer = alice_client.request(
        {"type": "create_room", "room": room, "private": True, "members": [bob]}
    )
    assert answer["type"] == "rooms"
    assert room in [r["name"] for r in bob_client.find("rooms")["rooms"]]
    for request in (
        {"type": "join", "room": room},
        {"type": "send", "room": room, "e2e": e2e_body(carol_client.device, "let me in")},
        {"type": "history", "room": room},
        {"type": "invite", "room": room, "user": carol},
    ):
        refused = carol_client.request(request)
        assert (refused["type"], refused["code"]) == ("error", "unknown_room"), request
    assert room not in [r["name"] for r in carol_client.request({"type": "rooms"})["rooms"]]
    sealed = e2e_body(bob_client.device, "members only")
    bob_client.request({"type": "send", "room": room, "e2e": sealed})
    assert alice_client.find("message")["e2e"] == sealed
    alice_client.request({"type": "send", "room": "lobby", "text": "marker"})
    seen = messages_until(carol_client, "message", "marker")
    assert [m for m in seen if m["type"] == "message" and m["room"] == room] == []


def test_presence_deltas_when_users_come_and_go(deployment):
    _alice, alice_client = deployment.register("alice", on=0)
    bob, bob_client = deployment.register("bob", on=1)
    roster = alice_client.roster.until(lambda roster: bob in roster.online and bob in roster.all)
    bob_client.close()
    went = alice_client.find("presence")
    roster.apply(went)
    assert went["offline"] == [bob] and bob in roster.all
    assert roster.settled(quiet=2.5).is_fresh()


def test_a_burst_of_logins_on_both_processes_is_coalesced(deployment):
    """A burst of 50 logins (over both processes where there are two) reaches a watching
    session as at most elapsed / presence_interval + 2 ``presence``, and its snapshot with
    the deltas applied equals a fresh ``users``."""
    watcher, watcher_client = deployment.register("watcher", on=0)
    registered = [deployment.register(f"burst{n}", on=n) for n in range(10)]
    for _name, client in registered:
        client.close()
    names = [name for name, _client in registered]
    roster = watcher_client.roster.settled(quiet=2.5)
    assert not set(names) & roster.online
    roster.deltas.clear()
    began = time.monotonic()
    clients = [deployment.login(names[n % 10], on=n) for n in range(50)]
    for client in clients[:2]:
        client.close()  # one of five sessions of those users: nobody goes offline
    roster.settled(quiet=roster.interval * 2 + 1.5)
    elapsed = time.monotonic() - began
    assert len(roster.deltas) <= elapsed / roster.interval + 2, (len(roster.deltas), elapsed)
    assert all(any(d[k] for k in ("online", "offline", "added", "removed")) for d in roster.deltas)
    assert set(names) <= roster.online and watcher in roster.online
    assert roster.is_fresh()


def test_history_pages_backwards(deployment):
    alice, alice_client = deployment.register("alice", on=0, remember="laptop")
    bob, bob_client = deployment.register("bob", on=1)
    sealed = [e2e_body(alice_client.device, f"n{i}") for i in range(5)]
    ids = [alice_client.request({"type": "pm", "to": bob, "e2e": e2e})["msg_id"] for e2e in sealed]
    page = bob_client.request({"type": "history", "with": alice, "limit": 3})
    assert [m["msg_id"] for m in page["messages"]] == ids[2:]
    assert page["has_more"] is True
    rest = bob_client.request({"type": "history", "with": alice, "before": ids[2], "limit": 3})
    assert [m["e2e"] for m in rest["messages"]] == sealed[:2]
    assert rest["has_more"] is False


@pytest.mark.parametrize("attack", ["tampered", "replayed"])
def test_a_bad_record_closes_only_that_session(deployment, attack):
    _alice, alice_client = deployment.register("alice", on=0)
    _mallory, mallory_client = deployment.register("mallory", on=1)
    record = mallory_client.send({"type": "ping", "id": "p"})
    assert mallory_client.find("pong")["ref"] == "p"
    if attack == "tampered":
        forged = bytearray(mallory_client.conn.send({"type": "ping"}))
        forged[-1] ^= 0x80
        mallory_client.send_bytes(bytes(forged))
    else:
        mallory_client.send_bytes(record)
    assert mallory_client.wait_closed() == 4002
    assert alice_client.request({"type": "ping"})["type"] == "pong"
    ack = alice_client.request({"type": "send", "room": "lobby", "text": "still here"})
    assert ack["type"] == "ack"


def test_deactivation_ends_a_live_session(deployment):
    _alice, alice_client = deployment.register("alice", on=0)
    bob, bob_client = deployment.register("bob", on=1)
    alice_client.roster.until(lambda roster: bob in roster.online)
    deployment.set_active(bob, False)
    assert bob_client.find("session_ended")["reason"] == "deactivated"
    assert bob_client.wait_closed() == 4003
    alice_client.roster.until(lambda roster: bob not in roster.online | roster.all)
    refused = deployment.connect(on=1)
    answer = refused.request(
        {"type": "login", "username": bob, "password": "correct horse battery staple"}
    )
    assert answer["reason"] == "invalid_credentials"
