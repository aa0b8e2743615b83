"""The key directory (docs/protocol.md section 4): keys_upload, user_key_publish,
keys_query, keys_claim, device_list_changes, through the real consumer."""

from __future__ import annotations

import asyncio

import pytest

from chat import e2e_services
from chat.models import OneTimeKey
from chatproto.e2e import device_keys_payload
from tests.chat.e2e_helpers import SigningKey, device_session, resumed
from tests.chatproto.helpers import OLM_BODY
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def test_uploaded_device_keys_are_what_keys_query_hands_out(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob", keys=False)
    keys = alice.device_keys()
    assert (await alice.upload(device_keys=keys))["one_time_keys"] == 0
    answer = await bob.session.request({"type": "keys_query", "users": ["alice", "nobody"]})
    assert answer["type"] == "keys"
    entry = answer["users"]["alice"]
    assert entry["devices"] == [keys]
    assert entry["user_key"] is None
    assert entry["version"] > 0
    assert "nobody" not in answer["users"]
    await alice.close()
    await bob.close()


async def test_device_keys_with_a_bad_device_signature_are_refused(create_users):
    await create_users("alice")
    alice = await device_session("alice", keys=False)
    forged = {**alice.device_keys(), "curve25519": SigningKey().public}  # not what was signed
    answer = await alice.upload(device_keys=forged)
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    other = {**alice.device_keys(), "device": "someone-else"}
    assert (await alice.upload(device_keys=other))["code"] == "bad_request"
    await alice.close()


async def test_a_user_signature_is_checked_against_the_published_user_key(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    user_key = SigningKey()
    published = await alice.session.request(
        {"type": "user_key_publish", "user_key": alice.user_key(user_key)}
    )
    assert published["type"] == "ok"
    wrong = await alice.upload(device_keys=alice.device_keys(user_key=SigningKey()))
    assert (wrong["type"], wrong["code"]) == ("error", "bad_request")
    signed = alice.device_keys(user_key=user_key)
    assert (await alice.upload(device_keys=signed))["type"] == "keys_uploaded"
    answer = await alice.session.request({"type": "keys_query", "users": ["alice"]})
    assert answer["users"]["alice"]["devices"] == [signed]
    assert answer["users"]["alice"]["user_key"] == alice.user_key(user_key)
    await alice.close()


async def test_a_device_cannot_change_its_identity_keys(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    alice.identity = SigningKey()
    answer = await alice.upload(device_keys=alice.device_keys())
    assert (answer["type"], answer["code"]) == ("error", "conflict")
    await alice.close()


async def test_user_key_publish_without_reset_keeps_the_key_and_reset_bumps_the_version(
    create_users,
):
    await create_users("alice")
    alice = await device_session("alice")
    first, second = SigningKey(), SigningKey()
    publish = {"type": "user_key_publish", "user_key": alice.user_key(first)}
    assert (await alice.session.request(publish))["type"] == "ok"
    assert (await alice.session.request(publish))["code"] == "conflict"  # a key exists
    replace = {"type": "user_key_publish", "user_key": alice.user_key(second, version=2)}
    assert (await alice.session.request(replace))["code"] == "conflict"
    stale = {**replace, "reset": True, "user_key": alice.user_key(second, version=1)}
    assert (await alice.session.request(stale))["code"] == "bad_request"
    assert (await alice.session.request({**replace, "reset": True}))["type"] == "ok"
    answer = await alice.session.request({"type": "keys_query", "users": ["alice"]})
    assert answer["users"]["alice"]["user_key"]["version"] == 2
    assert answer["users"]["alice"]["user_key"]["ed25519"] == second.public
    await alice.close()


async def test_one_time_keys_are_claimed_once_each_then_the_fallback_key(create_users):
    await create_users("alice", "bob", "carol")
    alice = await device_session("alice")
    fallback = alice.one_time_key("fallback-1")
    uploaded = await alice.upload(one_time_keys=[alice.one_time_key("k1")], fallback_key=fallback)
    assert uploaded["one_time_keys"] == 1
    bob = await device_session("bob")
    carol = await device_session("carol")
    claim = {"type": "keys_claim", "devices": [{"user": "alice", "device": alice.device}]}
    answers = await asyncio.gather(bob.session.request(claim), carol.session.request(claim))
    keys = sorted((a["keys"][0] for a in answers), key=lambda k: k["fallback"])
    assert [(k["key_id"], k["fallback"]) for k in keys] == [("k1", False), ("fallback-1", True)]
    assert keys[1]["key"] == fallback["key"] and keys[1]["signature"] == fallback["signature"]
    assert keys[0]["user"] == "alice" and keys[0]["device"] == alice.device
    again = await bob.session.request(claim)
    assert [(k["key_id"], k["fallback"]) for k in again["keys"]] == [("fallback-1", True)]
    for device in (alice, bob, carol):
        await device.close()


async def test_a_device_without_keys_is_absent_from_a_claim(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob", keys=False)
    claim = {"type": "keys_claim", "devices": [{"user": "bob", "device": bob.device}]}
    assert (await alice.session.request(claim))["keys"] == []
    await alice.close()
    await bob.close()


async def test_one_user_claiming_past_their_rate_is_refused_and_takes_no_key(
    create_users, monkeypatch, run_sync
):
    # Unlimited, one user could claim every device's one-time keys, leaving all of them to
    # fall back on their fallback keys.
    monkeypatch.setattr(e2e_services, "KEYS_CLAIM_RATE", (3, 3_600))
    await create_users("alice", "bob", "carol")
    alice = await device_session("alice")
    alice_phone = await device_session("alice", "phone")
    for device in (alice, alice_phone):
        keys = [device.one_time_key(f"k{i}") for i in range(3)]
        await device.upload(one_time_keys=keys)
    bob, carol = await device_session("bob"), await device_session("carol")
    both = {
        "type": "keys_claim",
        "devices": [{"user": "alice", "device": d.device} for d in (alice, alice_phone)],
    }
    assert len((await bob.session.request(both))["keys"]) == 2
    refused = await bob.session.request(both)  # 2 more keys, with 1 left of bob's 3
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    assert refused["retry_after"] >= 1 and "too fast" in refused["message"]
    assert await run_sync(OneTimeKey.objects.count) == 4  # the refused claim took none
    one = {"type": "keys_claim", "devices": both["devices"][:1]}
    assert len((await bob.session.request(one))["keys"]) == 1  # the refusal cost nothing
    assert len((await carol.session.request(both))["keys"]) == 2  # each claimer's own limit
    for device in (alice, alice_phone, bob, carol):
        await device.close()


def test_the_claim_rate_lets_a_client_share_a_room_key_with_a_1000_device_room_twice():
    from chat.limits import LimitCounters
    from chatproto.e2e import MAX_KEYS_CLAIM_DEVICES

    counters = LimitCounters()
    for _ in range(2):
        e2e_services.admit_claim(counters, 1, MAX_KEYS_CLAIM_DEVICES, now=0.0)
    with pytest.raises(e2e_services.ServiceError) as refused:
        e2e_services.admit_claim(counters, 1, MAX_KEYS_CLAIM_DEVICES, now=0.0)
    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after == 1_800  # 1,000 of the 2,000 an hour


def test_a_claim_that_loses_the_race_for_a_key_takes_the_next_one(make_user, monkeypatch):
    """Two claims read the same oldest key; the other one deletes it first. The loser's
    DELETE finds no row, so it takes the next key: each key goes out once."""
    from accounts import devices
    from chat.models import DeviceKeys

    alice = make_user("alice")
    device = devices.remember_device(alice, "laptop", "127.0.0.1").device
    fallback = {"key_id": "fb", "key": "k", "signature": "s"}
    keys = DeviceKeys.objects.create(device_id=device, user=alice, keys={}, fallback_key=fallback)
    OneTimeKey.objects.bulk_create(
        [
            OneTimeKey(
                device=keys, key_id=f"k{i}", key={"key_id": f"k{i}", "key": "k", "signature": "s"}
            )
            for i in range(2)
        ]
    )
    read = e2e_services.oldest_one_time_key
    rival: list[dict] = []

    def read_then_lose_the_race(device_id: str):
        candidate = read(device_id)
        if not rival:  # the other claim runs in full between our read and our delete
            monkeypatch.setattr(e2e_services, "oldest_one_time_key", read)
            rival.extend(e2e_services.claim_keys([("alice", device)]))
        return candidate

    monkeypatch.setattr(e2e_services, "oldest_one_time_key", read_then_lose_the_race)
    ours = e2e_services.claim_keys([("alice", device)])
    assert [k["key_id"] for k in rival] == ["k0"]
    assert [(k["key_id"], k["fallback"]) for k in ours] == [("k1", False)]
    assert not OneTimeKey.objects.exists()
    last = e2e_services.claim_keys([("alice", device)])
    assert [(k["key_id"], k["fallback"]) for k in last] == [("fb", True)]


async def test_device_list_changes_since_a_version_name_the_contacts_who_changed(
    create_users, run_sync
):
    from chat import services

    alice_user, _, _ = await create_users("alice", "bob", "carol")
    await run_sync(services.create_room, alice_user, "team", private=True, members=["bob"])
    alice = await device_session("alice")
    first = await alice.session.request({"type": "device_list_changes", "since": 0})
    assert first["users"] == ["alice"]
    since = first["version"]
    bob = await device_session("bob")
    carol = await device_session("carol")  # no conversation with alice: not her contact
    changes = await alice.session.request({"type": "device_list_changes", "since": since})
    assert changes["users"] == ["bob"]
    assert changes["version"] > since
    latest = await alice.session.request(
        {"type": "device_list_changes", "since": changes["version"]}
    )
    assert latest["users"] == []
    for device in (alice, bob, carol):
        await device.close()


async def test_a_contacts_new_device_is_pushed_as_devices_changed(create_users, run_sync):
    from chat import services

    alice_user, _ = await create_users("alice", "bob")
    await run_sync(services.create_room, alice_user, "team", private=True, members=["bob"])
    alice = await device_session("alice")
    bob = await device_session("bob")
    own = await alice.session.find("devices_changed")  # her own keys' upload, first
    assert own["users"] == ["alice"]
    pushed = await alice.session.find("devices_changed")
    assert pushed["users"] == ["bob"]
    assert pushed["version"] > own["version"]
    await alice.close()
    await bob.close()


@pytest.mark.parametrize(
    "request_",
    [
        {"type": "keys_upload"},
        {"type": "keys_query", "users": ["alice"]},
        {"type": "keys_claim", "devices": [{"user": "alice", "device": "d"}]},
        {"type": "device_list_changes", "since": 0},
        {"type": "to_device", "messages": [{"user": "alice", "device": "d", "body": OLM_BODY}]},
        {"type": "to_device_ack", "upto": 1, "id": "a1"},
    ],
    ids=lambda r: r["type"],
)
async def test_a_session_without_a_device_gets_device_required(create_users, request_):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")  # no remember: no device
    answer = await session.request(request_)
    assert (answer["type"], answer["code"]) == ("error", "device_required")
    await session.close()


async def test_a_user_signature_before_any_user_key_is_published_is_refused(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    answer = await alice.upload(device_keys=alice.device_keys(user_key=SigningKey()))
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    await alice.close()


async def test_an_identity_reset_removes_the_user_signatures_of_the_users_devices(create_users):
    await create_users("alice")
    laptop = await device_session("alice")
    phone = await device_session("alice", "phone")
    first, second = SigningKey(), SigningKey()
    await laptop.session.request({"type": "user_key_publish", "user_key": laptop.user_key(first)})
    for device in (laptop, phone):
        assert (await device.upload(device_keys=device.device_keys(first)))["type"] == (
            "keys_uploaded"
        )
    reset = {"type": "user_key_publish", "reset": True, "user_key": phone.user_key(second, 2)}
    assert (await phone.session.request(reset))["type"] == "ok"
    answer = await phone.session.request({"type": "keys_query", "users": ["alice"]})
    devices = answer["users"]["alice"]["devices"]
    assert [sorted(d["signatures"]) for d in devices] == [["device"], ["device"]]
    assert sorted(d["device"] for d in devices) == sorted([laptop.device, phone.device])
    resigned = phone.device_keys(second)
    assert (await phone.upload(device_keys=resigned))["type"] == "keys_uploaded"
    for device in (laptop, phone):
        await device.close()


async def test_a_reused_key_id_with_another_key_is_conflict_and_the_same_key_is_ignored(
    create_users,
):
    await create_users("alice")
    alice = await device_session("alice")
    key = alice.one_time_key("k1")
    assert (await alice.upload(one_time_keys=[key]))["one_time_keys"] == 1
    assert (await alice.upload(one_time_keys=[key]))["one_time_keys"] == 1  # a retry
    other = alice.one_time_key("k1")
    answer = await alice.upload(one_time_keys=[alice.one_time_key("k2"), other])
    assert (answer["type"], answer["code"]) == ("error", "conflict")
    assert (await alice.upload())["one_time_keys"] == 1  # the refused upload stored nothing
    await alice.close()


async def test_more_than_100_unclaimed_one_time_keys_is_bad_request(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    first = [alice.one_time_key(f"a{i}") for i in range(60)]
    assert (await alice.upload(one_time_keys=first))["one_time_keys"] == 60
    again = [*first, *(alice.one_time_key(f"b{i}") for i in range(40))]
    assert (await alice.upload(one_time_keys=again))["one_time_keys"] == 100
    answer = await alice.upload(one_time_keys=[alice.one_time_key("c")])
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    await alice.close()


async def test_device_keys_or_a_user_key_over_4096_bytes_are_too_large(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    padded = {**alice.device_keys(), "note": "x" * 4_096}
    answer = await alice.upload(device_keys=padded)
    assert (answer["type"], answer["code"]) == ("error", "too_large")
    user_key = {**alice.user_key(SigningKey()), "note": "x" * 4_096}
    answer = await alice.session.request({"type": "user_key_publish", "user_key": user_key})
    assert (answer["type"], answer["code"]) == ("error", "too_large")
    await alice.close()


async def test_deactivating_or_deleting_an_account_with_keys_tells_its_contacts(
    create_users, run_sync
):
    _, bob_user, carol_user = await create_users("alice", "bob", "carol")
    alice = await device_session("alice")
    for name in ("bob", "carol"):
        other = await device_session(name)
        await other.session.request({"type": "pm", "to": "alice", "e2e": other.sealed()})
        await other.close()
    before = await alice.session.request({"type": "device_list_changes", "since": 0})
    await alice.session.drain()  # the pushes of the uploads above
    bob_user.is_active = False
    await run_sync(bob_user.save)
    pushed = await alice.session.find("devices_changed")
    assert pushed["users"] == ["bob"] and pushed["version"] > before["version"]
    changes = await alice.session.request(
        {"type": "device_list_changes", "since": before["version"]}
    )
    assert changes["users"] == ["bob"]
    answer = await alice.session.request({"type": "keys_query", "users": ["bob", "carol"]})
    assert list(answer["users"]) == ["carol"]
    await run_sync(carol_user.delete)
    assert (await alice.session.find("devices_changed"))["users"] == ["carol"]
    await alice.close()


async def test_a_contact_offline_when_an_account_was_deleted_learns_it_from_the_change_log(
    create_users, run_sync
):
    # The deletion takes the account's rooms and messages (what made it a contact) and its
    # own change-log row: a contact who missed the push must still find it named.
    from chat import services

    alice_user, _, carol_user, _ = await create_users("alice", "bob", "carol", "dave")
    await run_sync(services.create_room, alice_user, "team", private=True, members=["carol"])
    alice, dave = await device_session("alice"), await device_session("dave")
    bob = await device_session("bob")
    await bob.session.request({"type": "pm", "to": "carol", "e2e": bob.sealed()})
    carol = await device_session("carol")
    await carol.close()
    since = [
        (await device.session.request({"type": "device_list_changes", "since": 0}))["version"]
        for device in (alice, bob, dave)
    ]
    await alice.close()  # offline when carol's account goes
    await run_sync(carol_user.delete)
    alice = await resumed(alice)
    for device, version, named in ((alice, since[0], ["carol"]), (bob, since[1], ["carol"])):
        changes = await device.session.request({"type": "device_list_changes", "since": version})
        assert changes["users"] == named and changes["version"] > version
    latest = await alice.session.request(
        {"type": "device_list_changes", "since": changes["version"]}
    )
    assert latest["users"] == []
    stranger = await dave.session.request({"type": "device_list_changes", "since": since[2]})
    assert stranger["users"] == []  # never carol's contact
    for device in (alice, bob, dave):
        await device.close()


async def test_only_a_new_user_signature_announces_re_uploaded_device_keys(create_users):
    # Each announcement makes every contact query keys again: a device re-uploading its
    # keys with some other field changed must not be able to make its contacts do so.
    await create_users("alice")
    alice = await device_session("alice")
    user_key = SigningKey()
    await alice.session.request({"type": "user_key_publish", "user_key": alice.user_key(user_key)})
    before = await alice.session.request({"type": "device_list_changes", "since": 0})

    renamed = {k: v for k, v in alice.device_keys().items() if k != "signatures"}
    renamed["label"] = "work laptop"  # a field the server does not know: signed, stored
    renamed["signatures"] = {"device": alice.identity.sign(device_keys_payload(renamed))}
    assert (await alice.upload(device_keys=renamed))["type"] == "keys_uploaded"
    quiet = await alice.session.request({"type": "device_list_changes", "since": before["version"]})
    assert quiet["users"] == [] and quiet["version"] == before["version"]

    assert (await alice.upload(device_keys=alice.device_keys(user_key=user_key)))[
        "type"
    ] == "keys_uploaded"
    signed = await alice.session.request(
        {"type": "device_list_changes", "since": before["version"]}
    )
    assert signed["users"] == ["alice"]
    await alice.close()
