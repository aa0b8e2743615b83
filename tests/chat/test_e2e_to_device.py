"""The to-device relay (docs/protocol.md section 4): live delivery, the queue of an offline
device, delivery at its next login, deletion on acknowledgement, and a revoked device."""

from __future__ import annotations

import pytest

from chat import e2e_services
from chat.models import DeviceKeys, ToDeviceMessage
from chatproto.unpadded_b64 import encode as encode_b64
from tests.chat.e2e_helpers import device_session, resumed, to_device_after_login
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)

OLM = {"algorithm": "olm.v1", "sender_key": "A" * 43, "type": 0, "ciphertext": "AwgA"}


def to(device, body=OLM) -> dict:
    return {"user": device.username, "device": device.device, "body": body}


async def test_a_to_device_message_reaches_the_target_devices_live_session(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    bob_phone = await device_session("bob", "phone")
    sent = await alice.session.request({"type": "to_device", "messages": [to(bob)]})
    assert sent["type"] == "ok"
    pushed = await bob.session.find("to_device")
    assert pushed == {
        "type": "to_device",
        "seq": 1,
        "from": "alice",
        "from_device": alice.device,
        "body": OLM,
    }
    assert not [m for m in await bob_phone.session.drain() if m["type"] == "to_device"]
    for device in (alice, bob, bob_phone):
        await device.close()


async def test_an_offline_devices_messages_wait_for_its_login_and_go_on_ack(create_users, run_sync):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    await bob.close()  # offline now
    bodies = [{**OLM, "ciphertext": f"AAA{i}"} for i in range(3)]
    sent = await alice.session.request(
        {"type": "to_device", "messages": [to(bob, body) for body in bodies]}
    )
    assert sent["type"] == "ok"
    bob = await resumed(bob)
    queued = await to_device_after_login(bob)
    assert [(m["seq"], m["body"]) for m in queued] == [
        (1, bodies[0]),
        (2, bodies[1]),
        (3, bodies[2]),
    ]
    await bob.close()
    bob = await resumed(bob)  # not acknowledged: all three again
    assert [m["seq"] for m in await to_device_after_login(bob)] == [1, 2, 3]
    await bob.session.send({"type": "to_device_ack", "upto": 2})
    await bob.session.request({"type": "ping"})  # the ack is done before the answer to this
    left = await run_sync(lambda: list(ToDeviceMessage.objects.values_list("seq", flat=True)))
    assert left == [3]
    await bob.close()
    bob = await resumed(bob)
    assert [m["seq"] for m in await to_device_after_login(bob)] == [3]
    await alice.close()
    await bob.close()


async def test_a_long_queue_goes_out_at_login_in_pages_in_order_and_complete(
    create_users, monkeypatch
):
    # A full queue (10,000 messages of up to 16 KiB) read in one query held it all in memory.
    pages: list[tuple[int, int]] = []
    read_page = e2e_services.queued_to_device

    def counted(device: str, after: int, limit: int) -> list[dict]:
        page = read_page(device, after, limit)
        pages.append((after, len(page)))
        return page

    monkeypatch.setattr(e2e_services, "queued_to_device", counted)
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    await bob.close()
    count = 2 * e2e_services.TO_DEVICE_PAGE + 50
    bodies = [{**OLM, "ciphertext": encode_b64(i.to_bytes(2, "big"))} for i in range(count)]
    sent = await alice.session.request(
        {"type": "to_device", "messages": [to(bob, body) for body in bodies]}
    )
    assert sent["type"] == "ok", sent
    pages.clear()  # bob's first login read one empty page
    bob = await resumed(bob)
    queued = await to_device_after_login(bob)  # none before users, all of them after
    assert [(m["seq"], m["body"]) for m in queued] == [
        (i + 1, body) for i, body in enumerate(bodies)
    ]
    size = e2e_services.TO_DEVICE_PAGE
    assert pages == [(0, size), (size, size), (2 * size, 50)]
    await alice.close()
    await bob.close()


async def test_a_batch_with_an_unknown_device_is_refused_whole(create_users, run_sync):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    stray = {"user": "bob", "device": "no-such-device", "body": OLM}
    sent = await alice.session.request({"type": "to_device", "messages": [to(bob), stray]})
    assert (sent["type"], sent["code"]) == ("error", "unknown_device")
    assert "no-such-device" in sent["message"]
    assert await run_sync(ToDeviceMessage.objects.count) == 0
    await alice.close()
    await bob.close()


async def test_a_batch_with_an_unknown_or_inactive_user_is_unknown_user(create_users, run_sync):
    _, _, carol_user = await create_users("alice", "bob", "carol")
    alice = await device_session("alice")
    bob = await device_session("bob")
    carol = await device_session("carol")
    await carol.close()
    nobody = {"user": "nobody", "device": bob.device, "body": OLM}
    sent = await alice.session.request({"type": "to_device", "messages": [to(bob), nobody]})
    assert (sent["type"], sent["code"]) == ("error", "unknown_user")
    assert "nobody" in sent["message"]
    carol_user.is_active = False
    await run_sync(carol_user.save)
    sent = await alice.session.request({"type": "to_device", "messages": [to(bob), to(carol)]})
    assert (sent["type"], sent["code"]) == ("error", "unknown_user")
    assert await run_sync(ToDeviceMessage.objects.count) == 0
    await alice.close()
    await bob.close()


async def test_a_device_without_keys_is_unknown_device(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob", keys=False)
    sent = await alice.session.request({"type": "to_device", "messages": [to(bob)]})
    assert (sent["type"], sent["code"]) == ("error", "unknown_device")
    await alice.close()
    await bob.close()


async def test_a_revoked_devices_keys_and_queue_go_with_it(create_users, run_sync):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    bob_phone = await device_session("bob", "phone")
    await bob_phone.upload(one_time_keys=[bob_phone.one_time_key("k1")])
    await bob_phone.close()
    await alice.session.request({"type": "to_device", "messages": [to(bob_phone)]})
    assert await run_sync(ToDeviceMessage.objects.count) == 1
    before = await bob.session.request({"type": "device_list_changes", "since": 0})
    revoked = await bob.session.request({"type": "revoke", "device": bob_phone.device})
    assert revoked["type"] == "ok"
    assert await run_sync(ToDeviceMessage.objects.count) == 0
    remaining = await run_sync(lambda: list(DeviceKeys.objects.values_list("pk", flat=True)))
    assert bob_phone.device not in remaining
    answer = await alice.session.request({"type": "keys_query", "users": ["bob"]})
    assert [d["device"] for d in answer["users"]["bob"]["devices"]] == [bob.device]
    after = await bob.session.request({"type": "device_list_changes", "since": before["version"]})
    assert after["users"] == ["bob"]
    await alice.close()
    await bob.close()


async def test_a_full_queue_refuses_more_and_keeps_what_it_holds(create_users, monkeypatch):
    # Dropping the oldest would let anyone push out the room keys a device has not fetched.
    monkeypatch.setattr(e2e_services, "MAX_QUEUED_TO_DEVICE", 2)
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    await bob.close()
    bodies = [{**OLM, "ciphertext": f"AAA{i}"} for i in range(3)]
    sent = await alice.session.request(
        {"type": "to_device", "messages": [to(bob, body) for body in bodies[:2]]}
    )
    assert sent["type"] == "ok"
    refused = await alice.session.request({"type": "to_device", "messages": [to(bob, bodies[2])]})
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    assert refused["retry_after"] >= 1
    bob = await resumed(bob)
    queued = [(m["seq"], m["body"]) for m in await to_device_after_login(bob)]
    assert queued == [(1, bodies[0]), (2, bodies[1])]
    await alice.close()
    await bob.close()


async def test_one_user_fills_at_most_their_share_of_a_devices_queue(create_users, monkeypatch):
    monkeypatch.setattr(e2e_services, "MAX_QUEUED_FROM_ONE_USER", 1)
    await create_users("alice", "bob", "carol")
    alice, carol = await device_session("alice"), await device_session("carol")
    bob = await device_session("bob")
    await bob.close()
    assert (await alice.session.request({"type": "to_device", "messages": [to(bob)]}))[
        "type"
    ] == "ok"
    flood = await alice.session.request({"type": "to_device", "messages": [to(bob)]})
    assert flood["code"] == "rate_limited"
    assert (await carol.session.request({"type": "to_device", "messages": [to(bob)]}))[
        "type"
    ] == "ok"
    await alice.close()
    await carol.close()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({**OLM, "extra": 1}, id="another field"),
        pytest.param({k: v for k, v in OLM.items() if k != "type"}, id="a field missing"),
        pytest.param({**OLM, "algorithm": "megolm.v1"}, id="another algorithm"),
        pytest.param({**OLM, "type": 2}, id="another message type"),
        pytest.param({**OLM, "type": True}, id="a boolean type"),
        pytest.param({**OLM, "sender_key": "AAAA"}, id="a short key"),
        pytest.param({**OLM, "ciphertext": {"deep": [[[[1]]]]}}, id="nested, not base64"),
    ],
)
async def test_a_to_device_body_is_exactly_the_olm_envelope(create_users, body):
    await create_users("alice", "bob")
    alice, bob = await device_session("alice"), await device_session("bob")
    refused = await alice.session.request({"type": "to_device", "messages": [to(bob, body)]})
    assert refused["type"] == "error" and refused["code"] == "bad_request"
    assert all(m["type"] != "to_device" for m in await bob.session.drain())
    await alice.close()
    await bob.close()


async def test_an_ack_from_a_session_without_a_device_is_device_required(create_users):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")  # no remember: no device
    await session.send({"type": "to_device_ack", "upto": 1})
    error = await session.find("error")
    assert error["code"] == "device_required" and "ref" not in error
    await session.close()
