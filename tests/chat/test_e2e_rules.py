"""Rules of docs/protocol.md section 4 that the server tests did not check yet, one test
each, through the real consumer (see docs/e2e-rule-tests.md for the whole mapping)."""

from __future__ import annotations

import pytest

from chat import services
from chat.models import DeviceKeys, Message, OneTimeKey
from tests.chat.e2e_helpers import SigningKey, device_session, resumed
from tests.chatproto.helpers import OLM_BODY
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def version_of(device) -> int:
    """The server's key version now, as ``device_list_changes`` says it."""
    return (await device.session.request({"type": "device_list_changes", "since": 0}))["version"]


# --- 4 (introduction): Olm and Megolm are the clients' -------------------------------------


@pytest.mark.parametrize("package", ["chat", "accounts", "chatsite", "chatproto"])
def test_the_server_never_imports_vodozemac(package):
    from tests.import_rules import imported_modules, package_sources

    importing = sorted(
        module
        for module, source in package_sources(package).items()
        if any(name.split(".")[0] == "vodozemac" for name in imported_modules(source, module))
    )
    assert importing == []


# --- 4.2: devices and their states -----------------------------------------------------------


async def test_user_key_publish_from_a_session_without_a_device_is_device_required(create_users):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")  # no remember: no device
    user_key = {"user": "alice", "ed25519": SigningKey().public, "version": 1}
    user_key["signatures"] = {"device": SigningKey().sign(b"anything")}
    answer = await session.request({"type": "user_key_publish", "user_key": user_key})
    assert (answer["type"], answer["code"]) == ("error", "device_required")
    await session.close()


async def test_a_device_without_keys_is_in_devices_but_not_in_keys(create_users):
    await create_users("alice")
    laptop = await device_session("alice")
    phone = await device_session("alice", "phone", keys=False)
    listed = await laptop.session.request({"type": "devices"})
    assert phone.device in [d["device"] for d in listed["devices"]]
    answer = await laptop.session.request({"type": "keys_query", "users": ["alice"]})
    assert [d["device"] for d in answer["users"]["alice"]["devices"]] == [laptop.device]
    await laptop.close()
    await phone.close()


@pytest.mark.parametrize("how", ["logout", "change_password", "admin"])
async def test_a_device_revoked_by_logout_a_password_change_or_the_admin_loses_its_keys(
    create_users, run_sync, how
):
    await create_users("alice")
    laptop = await device_session("alice")
    phone = await device_session("alice", "phone")
    await phone.upload(one_time_keys=[phone.one_time_key("k1")])
    since = await version_of(laptop)
    if how == "logout":
        assert (await phone.session.request({"type": "logout"}))["type"] == "ok"
        assert (await phone.session.find("session_ended"))["reason"] == "logged_out"
    elif how == "admin":  # the admin deletes the device (the admin site, or a set password)
        from accounts.models import Device

        await run_sync(Device.objects.filter(pk=phone.device).delete)
    else:
        change = {"type": "change_password", "password": "pw", "new_password": "a new pass 4 me"}
        assert (await laptop.session.request(change))["type"] == "ok"
    stored = await run_sync(lambda: list(DeviceKeys.objects.values_list("device_id", flat=True)))
    assert stored == [laptop.device]
    assert await run_sync(OneTimeKey.objects.filter(device_id=phone.device).count) == 0
    changes = await laptop.session.request({"type": "device_list_changes", "since": since})
    assert changes["users"] == ["alice"]
    await laptop.close()
    await phone.close()


# --- 4.3: the key directory ------------------------------------------------------------------


async def test_malformed_key_directory_requests_count_toward_the_ten_that_close(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    for _ in range(9):
        answer = await alice.session.request({"type": "keys_query", "users": []})
        assert answer["code"] == "bad_request"
    await alice.session.send({"type": "keys_claim", "id": "last", "devices": []})
    assert (await alice.session.find("error"))["code"] == "bad_request"
    assert await alice.session.expect_close() == 4008


async def test_an_upload_refused_for_one_part_stores_no_part(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice", keys=False)
    bad_key = {**alice.one_time_key("k1"), "signature": SigningKey().sign(b"something else")}
    answer = await alice.upload(device_keys=alice.device_keys(), one_time_keys=[bad_key])
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    bob = await device_session("bob")
    keys = await bob.session.request({"type": "keys_query", "users": ["alice"]})
    assert keys["users"]["alice"]["devices"] == []  # the valid device keys were not kept
    await alice.close()
    await bob.close()


async def test_a_changed_curve25519_key_is_conflict(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    alice.curve25519 = SigningKey().public  # another 32-byte key
    answer = await alice.upload(device_keys=alice.device_keys())
    assert (answer["type"], answer["code"]) == ("error", "conflict")
    await alice.close()


async def test_a_one_time_key_must_be_signed_by_the_device_under_its_stored_or_new_key(
    create_users,
):
    await create_users("alice")
    alice = await device_session("alice", keys=False)
    together = await alice.upload(
        device_keys=alice.device_keys(), one_time_keys=[alice.one_time_key("k1")]
    )
    assert together["one_time_keys"] == 1  # checked under the ed25519 just uploaded
    alice.identity, real = SigningKey(), alice.identity
    forged = alice.one_time_key("k2")  # signed by a key that is not the device's
    alice.identity = real
    for field in ("one_time_keys", "fallback_key"):
        value = [forged] if field == "one_time_keys" else forged
        answer = await alice.upload(**{field: value})
        assert (answer["type"], answer["code"]) == ("error", "bad_request"), field
    await alice.close()


async def test_one_time_keys_before_device_keys_are_bad_request(create_users):
    await create_users("alice")
    alice = await device_session("alice", keys=False)
    answer = await alice.upload(one_time_keys=[alice.one_time_key("k1")])
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    answer = await alice.upload(fallback_key=alice.one_time_key("f1"))
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    await alice.close()


async def test_a_new_fallback_key_replaces_the_previous_one(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    await alice.upload(fallback_key=alice.one_time_key("f1"))
    newer = alice.one_time_key("f2")
    await alice.upload(fallback_key=newer)
    bob = await device_session("bob")
    claim = {"type": "keys_claim", "devices": [{"user": "alice", "device": alice.device}]}
    for _ in range(2):  # a fallback key stays after a claim
        (key,) = (await bob.session.request(claim))["keys"]
        assert (key["key_id"], key["key"], key["fallback"]) == ("f2", newer["key"], True)
    await alice.close()
    await bob.close()


async def test_a_user_key_must_name_the_session_user_and_be_signed_by_the_publishing_device(
    create_users,
):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    someone_elses = {**alice.user_key(SigningKey()), "user": "bob"}
    answer = await alice.session.request({"type": "user_key_publish", "user_key": someone_elses})
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    alice.identity, real = SigningKey(), alice.identity  # not the device's stored ed25519
    forged = alice.user_key(SigningKey())
    alice.identity = real
    answer = await alice.session.request({"type": "user_key_publish", "user_key": forged})
    assert (answer["type"], answer["code"]) == ("error", "bad_request")
    keys = await alice.session.request({"type": "keys_query", "users": ["alice"]})
    assert keys["users"]["alice"]["user_key"] is None
    await alice.close()


async def test_a_published_user_key_is_a_change_pushed_to_the_users_contacts(
    create_users, run_sync
):
    alice_user, _ = await create_users("alice", "bob")
    await run_sync(services.create_room, alice_user, "team", private=True, members=["bob"])
    alice = await device_session("alice")
    bob = await device_session("bob")
    await bob.session.drain()
    since = await version_of(bob)
    published = {"type": "user_key_publish", "user_key": alice.user_key(SigningKey())}
    assert (await alice.session.request(published))["type"] == "ok"
    pushed = await bob.session.find("devices_changed")
    assert pushed["users"] == ["alice"] and pushed["version"] > since
    changes = await bob.session.request({"type": "device_list_changes", "since": since})
    assert changes["users"] == ["alice"]
    await alice.close()
    await bob.close()


async def test_one_time_keys_are_not_a_change(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    since = await version_of(alice)
    keys = [alice.one_time_key(f"k{i}") for i in range(5)]
    assert (await alice.upload(one_time_keys=keys, fallback_key=alice.one_time_key("f")))[
        "one_time_keys"
    ] == 5
    changes = await alice.session.request({"type": "device_list_changes", "since": since})
    assert (changes["users"], changes["version"]) == ([], since)
    await alice.close()


async def test_each_change_is_one_push_and_one_more_version(create_users):
    await create_users("alice")
    alice = await device_session("alice")
    await alice.session.drain()
    first = SigningKey()
    await alice.session.request({"type": "user_key_publish", "user_key": alice.user_key(first)})
    await alice.upload(device_keys=alice.device_keys(user_key=first))
    pushes = [m for m in await alice.session.drain() if m["type"] == "devices_changed"]
    assert len(pushes) == 2  # no coalescing
    assert pushes[1]["version"] == pushes[0]["version"] + 1
    await alice.close()


async def test_keys_gives_each_users_key_version_the_counter_at_their_last_change(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    after_alice = await version_of(alice)
    bob = await device_session("bob")
    answer = await bob.session.request({"type": "keys_query", "users": ["alice", "bob"]})
    assert answer["users"]["alice"]["version"] == after_alice
    assert answer["users"]["bob"]["version"] == await version_of(bob) > after_alice
    await alice.close()
    await bob.close()


# --- 4.4: to-device messages -----------------------------------------------------------------


async def test_a_to_device_message_goes_to_every_session_of_its_device(create_users):
    await create_users("alice", "bob")
    alice = await device_session("alice")
    bob = await device_session("bob")
    bob_again = await resumed(bob)  # the same device, logged in twice
    to_bob = {"user": "bob", "device": bob.device, "body": OLM_BODY}
    assert (await alice.session.request({"type": "to_device", "messages": [to_bob]}))["type"] == (
        "ok"
    )
    for session in (bob, bob_again):
        pushed = await session.session.find("to_device")
        assert (pushed["seq"], pushed["body"]) == (1, OLM_BODY)
    for device in (alice, bob, bob_again):
        await device.close()


# --- 4.5: encrypted messages -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["send", "pm"])
async def test_text_in_a_private_room_or_a_pm_is_e2e_required_and_stores_nothing(
    create_users, run_sync, kind
):
    alice_user, _ = await create_users("alice", "bob")
    await run_sync(services.create_room, alice_user, "team", private=True, members=["bob"])
    alice = await device_session("alice")
    target = {"room": "team"} if kind == "send" else {"to": "bob"}
    answer = await alice.session.request({"type": kind, **target, "text": "in the clear"})
    try:
        assert (answer["type"], answer.get("code")) == ("error", "e2e_required")
        assert answer["message"] == "this conversation is end-to-end encrypted; update your client"
        assert await run_sync(Message.objects.count) == 0
    finally:
        await alice.close()


async def test_an_e2e_private_message_to_an_offline_user_is_queued_for_their_login(create_users):
    await create_users("alice", "bob")
    bob = await device_session("bob")
    await bob.close()
    alice = await device_session("alice")
    sealed = alice.sealed()
    assert (await alice.session.request({"type": "pm", "to": "bob", "e2e": sealed}))["type"] == (
        "ack"
    )
    bob = await resumed(bob)
    queued = [m for m in bob.session.after_login if m["type"] == "private"]
    queued += [m for m in await bob.session.drain() if m["type"] == "private"]
    assert [(m["from"], m["e2e"]) for m in queued] == [("alice", sealed)]
    assert "text" not in queued[0]
    await alice.close()
    await bob.close()


async def test_an_e2e_message_to_a_private_room_of_others_is_refused_as_for_text(
    create_users, run_sync
):
    _, bob_user = await create_users("alice", "bob")
    await run_sync(services.create_room, bob_user, "secret", private=True, members=[])
    alice = await device_session("alice")
    answer = await alice.session.request({"type": "send", "room": "secret", "e2e": alice.sealed()})
    assert (answer["type"], answer["code"]) == ("error", "unknown_room")
    assert await run_sync(Message.objects.count) == 0
    await alice.close()


async def test_e2e_messages_share_the_message_rate_of_text(chat_settings, create_users, run_sync):
    chat_settings.CHAT_MESSAGE_RATE = (2, 3_600)
    alice_user, _ = await create_users("alice", "bob")
    await run_sync(services.create_room, alice_user, "team", private=True, members=["bob"])
    alice = await device_session("alice")
    sealed = alice.sealed()
    assert (await alice.session.request({"type": "pm", "to": "bob", "e2e": sealed}))["type"] == (
        "ack"
    )
    sent = await alice.session.request({"type": "send", "room": "team", "e2e": sealed})
    assert sent["type"] == "ack"
    refused = await alice.session.request({"type": "pm", "to": "bob", "e2e": sealed})
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    assert refused["retry_after"] >= 1
    await alice.close()
