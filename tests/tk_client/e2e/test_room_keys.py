import pytest

from chatproto.e2e import conversation_id
from tk_client.e2e import room_keys
from tk_client.e2e.errors import UntrustedKeys

from .helpers import add_device, make_user, published, send, share_room_key, user_key

ROOM = conversation_id(room="plans")


def new_group(sender):
    group, _ = sender.groups.outbound_for(ROOM, 0.0, set(), set())
    return group


def test_a_device_without_a_user_signature_is_refused_a_room_key():
    alice, bob = make_user("alice"), make_user("bob")
    planted = add_device(bob, "SERVER-ADDED", approved=False)
    group = new_group(alice)

    with pytest.raises(UntrustedKeys, match="not approved"):
        room_keys.room_key(group, alice.device, published(planted), user_key(bob))
    eligible = room_keys.eligible_devices(
        [published(bob), published(planted)], {"bob": user_key(bob)}
    )
    assert [device.peer for device in eligible] == [("bob", "DEV1")]


def test_a_device_signed_by_an_older_user_key_is_not_eligible():
    bob = make_user("bob")
    old_device = published(bob)
    reset = make_user("bob")  # bob reset his identity: a new user key

    assert not room_keys.may_receive_room_key(old_device, user_key(reset))
    assert room_keys.may_receive_room_key(old_device, user_key(bob))


def test_a_room_key_from_an_unapproved_sender_device_is_refused():
    alice, bob = make_user("alice"), make_user("bob")
    alice_unapproved = add_device(alice, "DEV2", approved=False)
    group = new_group(alice_unapproved)
    payload = room_keys.room_key(group, alice_unapproved.device, published(bob), user_key(bob))
    delivered = send(alice_unapproved, bob, payload)

    with pytest.raises(UntrustedKeys, match="unapproved device"):
        room_keys.accept_room_key(
            delivered.payload, bob.device, delivered.sender, user_key(alice), bob.groups
        )
    assert bob.groups.inbound == {}


def test_a_room_key_addressed_to_another_device_is_refused():
    alice, bob = make_user("alice"), make_user("bob")
    bob2 = add_device(bob, "DEV2")
    payload = room_keys.room_key(new_group(alice), alice.device, published(bob), user_key(bob))
    delivered = send(alice, bob2, payload)  # relayed to bob's other device

    with pytest.raises(UntrustedKeys, match="another device"):
        room_keys.accept_room_key(
            delivered.payload, bob2.device, delivered.sender, user_key(alice), bob2.groups
        )


def test_a_room_key_naming_another_sender_is_refused():
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    payload = room_keys.room_key(new_group(carol), carol.device, published(bob), user_key(bob))
    delivered = send(alice, bob, payload)  # alice passes carol's key off

    with pytest.raises(UntrustedKeys, match="another sender"):
        room_keys.accept_room_key(
            delivered.payload, bob.device, delivered.sender, user_key(alice), bob.groups
        )


def test_a_new_device_gets_a_missing_key_forwarded_from_its_own_approved_device():
    alice, bob = make_user("alice"), make_user("bob")
    group = new_group(alice)
    share_room_key(alice, group, bob)
    e2e = alice.groups.encrypt(group, "before bob2", "alice", "DEV1", alice.device.curve25519)
    bob2 = add_device(bob, "DEV2")
    assert not bob2.groups.has_key(ROOM, e2e)

    request = room_keys.room_key_request(ROOM, e2e, "DEV2")
    asked = send(bob2, bob, request)
    answer = room_keys.forwarded_room_key(
        asked.payload, bob.device, asked.sender, user_key(bob), bob.groups
    )
    assert answer is not None
    forwarded = send(bob, bob2, answer)
    asked_for = {room_keys.requested_session(request)}
    kept = room_keys.accept_forwarded_room_key(
        forwarded.payload, bob2.device, forwarded.sender, user_key(bob), bob2.groups, asked_for
    )

    assert set(request) == {"type", "conversation", "session_id", "sender_key", "requester_device"}
    assert set(answer) == {
        "type",
        "conversation",
        "session_id",
        "session_key",
        "original_sender",
        "original_sender_device",
        "original_sender_key",
        "original_sender_ed25519",
    }
    assert kept
    assert bob2.groups.decrypt(ROOM, "alice", e2e).text == "before bob2"


def test_no_key_is_forwarded_to_an_unapproved_device_or_another_user():
    alice, bob = make_user("alice"), make_user("bob")
    group = new_group(alice)
    share_room_key(alice, group, bob)
    e2e = alice.groups.encrypt(group, "x", "alice", "DEV1", alice.device.curve25519)
    request = room_keys.room_key_request(ROOM, e2e, "DEV9")

    for requester in (add_device(bob, "DEV9", approved=False), make_user("mallory", "DEV9")):
        with pytest.raises(UntrustedKeys):
            room_keys.forwarded_room_key(
                request, bob.device, published(requester), user_key(bob), bob.groups
            )


def test_a_forwarded_key_from_an_unapproved_own_device_is_refused():
    alice, bob = make_user("alice"), make_user("bob")
    group = new_group(alice)
    share_room_key(alice, group, bob)
    e2e = alice.groups.encrypt(group, "x", "alice", "DEV1", alice.device.curve25519)
    bob2 = add_device(bob, "DEV2")
    request = room_keys.room_key_request(ROOM, e2e, "DEV2")
    answer = room_keys.forwarded_room_key(
        request,
        bob.device,
        published(bob2),
        user_key(bob),
        bob.groups,
    )
    assert answer is not None
    planted = add_device(bob, "DEV3", approved=False)
    forwarded = send(planted, bob2, answer)

    asked_for = {room_keys.requested_session(request)}

    with pytest.raises(UntrustedKeys, match="unapproved"):
        room_keys.accept_forwarded_room_key(
            forwarded.payload, bob2.device, forwarded.sender, user_key(bob), bob2.groups, asked_for
        )


def test_a_forwarded_key_that_was_not_asked_for_is_refused():
    alice, bob = make_user("alice"), make_user("bob")
    group = new_group(alice)
    share_room_key(alice, group, bob)
    e2e = alice.groups.encrypt(group, "x", "alice", "DEV1", alice.device.curve25519)
    bob2 = add_device(bob, "DEV2")
    request = room_keys.room_key_request(ROOM, e2e, "DEV2")
    answer = room_keys.forwarded_room_key(
        request, bob.device, published(bob2), user_key(bob), bob.groups
    )
    assert answer is not None
    forwarded = send(bob, bob2, answer)

    with pytest.raises(UntrustedKeys, match="did not ask"):
        room_keys.accept_forwarded_room_key(
            forwarded.payload, bob2.device, forwarded.sender, user_key(bob), bob2.groups, set()
        )
    assert not bob2.groups.has_key(ROOM, e2e)
