"""End-to-end file offers (docs/protocol.md 4.12) through the real consumer.

An offer carries ``e2e`` (a Megolm body, opaque to the server) instead of ``name``
and ``sha256``; its ``size`` is the encrypted stream's. The server checks the
``e2e`` object as a message's (4.5), the rest as a 3.3 offer, relays it with
``from`` added, ``id`` removed and ``e2e`` as it came, and then the transfer goes
on exactly as 3.3 (the chunks are opaque bytes to it too).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from chatproto.codes import ErrorCode
from chatproto.errors import MessageError
from chatproto.messages import validate_request
from chatproto.transfer.relay import RecipientStatus, TransferRegistry
from tests.chat.test_transfers import (
    SHA,
    Peer,
    T,
    cancel,
    is_error,
    logged_in,
    offer,
    registry_idle,
    settled,
)
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.inprocess import communicator

pytestmark = pytest.mark.django_db(transaction=True)


async def with_device(name: str) -> Peer:
    """``name`` logged in with a remembered device (an end-to-end session)."""
    session = Peer(communicator())
    await session.connect()
    await session.handshake()
    await session.login(name, remember="laptop")
    return session


def e2e_offer(session: Peer, to: str = "bob", size: int = 116, **extra: Any) -> dict[str, Any]:
    """An end-to-end offer from ``session``'s device: no name, no sha256."""
    message = {
        "type": "file_offer",
        "transfer": T,
        "to": to,
        "size": size,
        "e2e": e2e_body(session.device, "a sealed file plaintext"),
    }
    message.update(extra)
    return message


@pytest.fixture
async def devices(create_users):
    """alice and bob, each logged in with a device; pushes drained; closed afterwards."""
    await create_users("alice", "bob")
    alice = await with_device("alice")
    bob = await with_device("bob")
    await settled(alice, bob)
    yield alice, bob
    for session in (alice, bob):
        await session.close()


async def test_an_e2e_offer_is_relayed_with_from_added_id_removed_and_e2e_unchanged(devices):
    alice, bob = devices
    sent = e2e_offer(alice)
    assert await alice.request({**sent, "id": "o"}) == {"type": "ok", "ref": "o"}
    relayed = await bob.next()
    assert relayed == {**sent, "from": "alice"}
    assert "name" not in relayed and "sha256" not in relayed and "id" not in relayed
    assert await alice.quiet()


async def test_an_e2e_transfer_then_runs_as_in_section_3_3(devices):
    alice, bob = devices
    stream = os.urandom(116)  # one sealed piece of 100 bytes: 100 + 16 (opaque to the server)
    assert (await alice.request(e2e_offer(alice, size=len(stream))))["type"] == "ok"
    assert (await bob.next())["type"] == "file_offer"
    await bob.send({"type": "file_accept", "transfer": T})
    assert await alice.next() == {"type": "file_accept", "transfer": T, "from": "bob"}
    await alice.chunk(0, stream)
    assert (await bob.next_chunk()).data == stream
    await bob.send({"type": "file_ack", "transfer": T, "index": 0})
    assert await alice.next() == {"type": "file_ack", "transfer": T, "index": 0}
    await alice.send({"type": "file_end", "transfer": T})
    assert await bob.next() == {"type": "file_end", "transfer": T}
    await bob.send({"type": "file_done", "transfer": T, "ok": True})
    assert await alice.next() == {"type": "file_done", "transfer": T, "ok": True}
    assert registry_idle()


async def test_an_e2e_transfer_is_held_to_the_offered_encrypted_size(devices):
    alice, bob = devices
    assert (await alice.request(e2e_offer(alice, size=116)))["type"] == "ok"
    await bob.next()
    await bob.send({"type": "file_accept", "transfer": T})
    await alice.next()
    await alice.chunk(0, os.urandom(117))  # one byte over the offer's size
    assert await alice.next() == cancel("size_exceeded")
    assert await bob.next() == cancel("size_exceeded")
    assert registry_idle()


async def test_a_recipient_may_cancel_an_e2e_offer_as_not_verified(devices):
    alice, bob = devices
    assert (await alice.request(e2e_offer(alice)))["type"] == "ok"
    await bob.next()
    await bob.send(cancel("not_verified"))
    assert await alice.next() == cancel("not_verified")
    assert registry_idle()


async def test_plain_offers_keep_working_beside_e2e_ones(devices):
    alice, bob = devices
    assert (await alice.request({**offer(), "id": "p"})) == {"type": "ok", "ref": "p"}
    assert await bob.next() == {**offer(), "from": "alice"}


@pytest.mark.parametrize(
    "fields",
    [{"name": "report.pdf"}, {"sha256": SHA}, {"name": "report.pdf", "sha256": SHA}],
    ids=["e2e and name", "e2e and sha256", "e2e, name and sha256"],
)
async def test_an_offer_with_both_e2e_and_name_or_sha256_is_bad_request(devices, fields):
    alice, bob = devices
    answer = await alice.request({**e2e_offer(alice, **fields), "id": "o"})
    assert is_error(answer, "bad_request", "o")
    assert await bob.quiet()
    assert registry_idle()


@pytest.mark.parametrize("missing", [("name", "sha256"), ("name",), ("sha256",)])
async def test_an_offer_without_e2e_and_without_name_or_sha256_is_bad_request(devices, missing):
    alice, bob = devices
    sent = {k: v for k, v in offer().items() if k not in missing}
    answer = await alice.request({**sent, "id": "o"})
    assert is_error(answer, "bad_request", "o")
    assert await bob.quiet()
    assert registry_idle()


async def test_an_e2e_offer_from_a_session_without_a_device_is_device_required(create_users):
    await create_users("alice", "bob")
    alice = await logged_in("alice")  # no remember: no device
    bob = await with_device("bob")
    await settled(alice, bob)
    sent = {**e2e_offer(alice), "e2e": e2e_body("some-device")}
    answer = await alice.request({**sent, "id": "o"})
    assert is_error(answer, "device_required", "o")
    assert await bob.quiet()
    assert registry_idle()
    await alice.close()
    await bob.close()


async def test_an_e2e_offer_naming_another_device_is_bad_request(devices):
    alice, bob = devices
    sent = {**e2e_offer(alice), "e2e": e2e_body("not-" + alice.device)}
    answer = await alice.request({**sent, "id": "o"})
    assert is_error(answer, "bad_request", "o")
    assert "device" in answer["message"]
    assert await bob.quiet()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"algorithm": "olm.v1"}, "bad_request"),
        ({"session_id": "c2hvcnQ"}, "bad_request"),
        ({"ciphertext": ""}, "bad_request"),
        ({"sender_key": None}, "bad_request"),
        ({"ciphertext": "QUFB" * 22_000}, "too_large"),
    ],
    ids=["algorithm", "session_id", "empty ciphertext", "sender_key", "over 64 KiB"],
)
async def test_a_malformed_e2e_object_is_refused_as_in_section_4_5(devices, change, code):
    alice, bob = devices
    sent = e2e_offer(alice)
    sent["e2e"] = {**sent["e2e"], **change}
    answer = await alice.request({**sent, "id": "o"})
    assert is_error(answer, code, "o")
    assert await bob.quiet()
    assert registry_idle()


async def test_the_encrypted_size_counts_against_max_file_size(devices, chat_settings):
    _alice, _bob = devices
    chat_settings.CHAT_MAX_FILE_SIZE = 1000  # read when the relay's registry is made
    alice = await with_device("alice")
    answer = await alice.request({**e2e_offer(alice, size=1001), "id": "big"})
    assert is_error(answer, "too_large", "big")
    assert (await alice.request({**e2e_offer(alice, size=1000), "id": "fits"}))["type"] == "ok"
    await alice.close()


@pytest.mark.parametrize(
    ("to", "code"),
    [("nobody", "unknown_user"), ("carol", "offline"), ("alice", "bad_request")],
    ids=["no such user", "offline user", "oneself"],
)
async def test_refused_e2e_offers_are_answered_with_the_codes_of_3_3(
    devices, create_users, to, code
):
    alice, bob = devices
    await create_users("carol")
    answer = await alice.request({**e2e_offer(alice, to=to), "id": "o"})
    assert is_error(answer, code, "o")
    assert await bob.quiet()
    assert registry_idle()


# --- the table and the relay, without a server ---------------------------------------------


def sealed_offer(sealed: dict[str, Any], size: int = 32) -> dict[str, Any]:
    return {"type": "file_offer", "transfer": T, "to": "bob", "size": size, "e2e": sealed}


def test_the_table_accepts_an_e2e_offer_without_name_and_sha256():
    sealed = e2e_body("dev")
    request: Any = validate_request({**sealed_offer(sealed), "id": "x"})
    assert (request.name, request.sha256, request.e2e) == (None, None, sealed)


def test_the_table_refuses_both_and_neither_as_bad_request():
    plain = offer()
    both = {**plain, "e2e": e2e_body("dev"), "id": "b"}
    neither = {k: v for k, v in plain.items() if k not in ("name", "sha256")}
    for message in (both, {**neither, "id": "n"}):
        with pytest.raises(MessageError) as caught:
            validate_request(message)
        assert caught.value.code is ErrorCode.BAD_REQUEST


def test_the_relay_forwards_an_e2e_offer_without_name_or_sha256():
    registry = TransferRegistry()
    sealed = e2e_body("dev")
    request = validate_request(sealed_offer(sealed))
    actions = registry.offer(
        request, session="s1", user="alice", now=0.0, recipient=RecipientStatus.ONLINE
    )
    relayed: Any = actions[1]
    assert relayed.message == {**sealed_offer(sealed), "from": "alice"}
