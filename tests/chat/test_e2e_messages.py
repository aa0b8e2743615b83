"""Messages with an ``e2e`` object instead of ``text`` (docs/protocol.md section 4): stored
through the same at-rest storage, pushed and returned by history as ``e2e``."""

from __future__ import annotations

import pytest

from chat import services
from chat.models import Message, Room
from chat.storage import BodyCipher
from tests.chat.e2e_helpers import E2E, device_session
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_e2e_message_in_a_private_room_round_trips_through_history(create_users, run_sync):
    alice_user, _ = await create_users("alice", "bob")
    await run_sync(services.create_room, alice_user, "team", private=True, members=["bob"])
    alice = await device_session("alice")
    bob = await device_session("bob")
    sealed = alice.sealed()
    ack = await alice.session.request({"type": "send", "room": "team", "e2e": sealed})
    assert ack["type"] == "ack"
    pushed = await bob.session.find("message")
    assert pushed["e2e"] == sealed and "text" not in pushed
    page = await bob.session.request({"type": "history", "room": "team"})
    assert [(m["msg_id"], m["e2e"]) for m in page["messages"]] == [(ack["msg_id"], sealed)]
    assert "text" not in page["messages"][0]
    stored = await run_sync(Message.objects.get, pk=ack["msg_id"])
    assert stored.e2e and E2E["ciphertext"] not in stored.body_encrypted  # encrypted at rest
    assert E2E["ciphertext"] in await run_sync(BodyCipher().decrypt, stored.body_encrypted)
    await alice.close()
    await bob.close()


async def test_an_e2e_private_message_round_trips_through_history(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    sealed = alice.sealed()
    ack = await alice.session.request({"type": "pm", "to": "bob", "e2e": sealed})
    assert ack["type"] == "ack"
    pushed = await bob.session.find("private")
    assert (pushed["from"], pushed["e2e"]) == ("alice", sealed)
    page = await bob.session.request({"type": "history", "with": "alice"})
    assert [m["e2e"] for m in page["messages"]] == [sealed]
    await alice.close()
    await bob.close()


async def test_e2e_in_a_public_room_is_refused(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    answer = await alice.session.request({"type": "send", "room": "lobby", "e2e": alice.sealed()})
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    assert "public" in answer["message"]
    await alice.close()


E2E_REQUIRED = (
    "error",
    "e2e_required",
    "this conversation is end-to-end encrypted; update your client",
)


def refusal(answer: dict) -> tuple[str, str, str]:
    return answer["type"], answer["code"], answer["message"]


async def stored_count(run_sync) -> int:
    return await run_sync(lambda: Message.objects.count())


async def test_a_plain_text_private_message_is_e2e_required_and_nothing_is_stored(
    create_users, run_sync
):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    await bob.session.drain()
    answer = await alice.session.request({"type": "pm", "to": "bob", "text": "in clear"})
    assert refusal(answer) == E2E_REQUIRED
    assert await stored_count(run_sync) == 0
    assert await bob.session.nothing()  # nothing broadcast
    await alice.close()
    await bob.close()


async def test_a_plain_text_private_message_to_an_offline_user_is_not_queued(
    create_users, run_sync
):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    answer = await alice.session.request({"type": "pm", "to": "bob", "text": "for later"})
    assert refusal(answer) == E2E_REQUIRED
    await alice.close()
    bob = await device_session("bob")
    assert "private" not in [m["type"] for m in bob.session.after_login]
    assert await stored_count(run_sync) == 0
    await bob.close()


async def test_plain_text_in_a_private_room_is_e2e_required_and_nothing_is_stored(
    create_users, run_sync
):
    alice_user, _ = await create_users("alice", "bob")
    await run_sync(services.create_room, alice_user, "team", private=True, members=["bob"])
    alice = await device_session("alice")
    bob = await device_session("bob")
    await bob.session.drain()
    answer = await alice.session.request({"type": "send", "room": "team", "text": "in clear"})
    assert refusal(answer) == E2E_REQUIRED
    assert await stored_count(run_sync) == 0
    assert await bob.session.nothing()
    page = await bob.session.request({"type": "history", "room": "team"})
    assert page["messages"] == []
    await alice.close()
    await bob.close()


async def test_plain_text_in_a_public_room_is_still_stored_and_sent(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    ack = await alice.session.request({"type": "send", "room": "lobby", "text": "hello all"})
    assert ack["type"] == "ack"
    pushed = await bob.session.find("message")
    assert (pushed["msg_id"], pushed["text"]) == (ack["msg_id"], "hello all")
    await alice.close()
    await bob.close()


def test_a_refused_message_in_a_batch_leaves_the_others_stored(make_user):
    """The outbox stores a session's messages in batches: a plain text private message in
    the middle of one is refused alone, and stores nothing of its own."""
    alice = make_user("alice")
    make_user("bob")
    sealed = e2e_body("d1")
    results = services.send_messages(
        alice,
        [
            services.Outgoing("public", room="lobby"),
            services.Outgoing("in clear", to="bob"),
            services.Outgoing(None, to="bob", e2e=sealed),
        ],
    )
    assert isinstance(results[1], services.ServiceError)
    assert results[1].code == "e2e_required"
    stored = [results[0]["msg_id"], results[2]["msg_id"]]
    assert sorted(Message.objects.values_list("pk", flat=True)) == stored
    assert not Message.objects.filter(room=None, e2e=False).exists()


def test_refuse_plaintext_spares_public_rooms_only(make_user):
    make_user("alice")
    with pytest.raises(services.ServiceError) as refused:
        services.refuse_plaintext(None)
    assert refused.value.code == "e2e_required"
    with pytest.raises(services.ServiceError):
        services.refuse_plaintext(Room(name="team", private=True))
    services.refuse_plaintext(Room.objects.get(name="lobby"))


async def test_an_e2e_message_must_name_the_sending_sessions_device(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    other = {**alice.sealed(), "device": "not-my-device"}
    answer = await alice.session.request({"type": "pm", "to": "bob", "e2e": other})
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    await alice.close()


async def test_an_e2e_message_from_a_session_without_a_device_is_device_required(create_users):
    await create_users("alice", "bob")
    session = await open_session()
    await session.login("alice")  # no remember: no device
    answer = await session.request({"type": "pm", "to": "bob", "e2e": E2E})
    assert (answer["type"], answer["code"]) == ("error", "device_required")
    assert answer["message"] == "log in with a remembered device to use encrypted conversations"
    await session.close()


async def test_a_session_id_that_is_not_32_bytes_is_refused(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    short = {**alice.sealed(), "session_id": E2E["ciphertext"]}
    answer = await alice.session.request({"type": "pm", "to": "bob", "e2e": short})
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    await alice.close()


def test_the_clients_fake_server_refuses_plain_text_with_the_servers_words():
    """tests/tk_client/fake_server.py mimics this refusal; its words must stay the server's."""
    from tests.tk_client import fake_server

    assert fake_server.E2E_REQUIRED == services.E2E_REQUIRED
