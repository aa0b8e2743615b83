from pathlib import Path

import pytest
import vodozemac

from chatproto.e2e import conversation_id
from tk_client.e2e import room_keys
from tk_client.e2e.errors import DecryptionFailed
from tk_client.e2e.megolm import (
    OutboundGroup,
    RotationReason,
    Undecryptable,
    needs_rotation,
    why_undecryptable,
)

from .helpers import DAY, add_device, make_user, published, share_room_key

ROOM = conversation_id(room="plans")


def start_room(sender, members, now=0.0):
    devices = {published(m).peer for m in members}
    users = {m.device.user for m in members}
    group, _ = sender.groups.outbound_for(ROOM, now, users, devices)
    room_keys.own_inbound(group, sender.device, sender.groups)
    for member in members:
        if member is not sender:
            share_room_key(sender, group, member)
    return group


def encrypt(sender, group, text):
    device = sender.device
    return sender.groups.encrypt(group, text, device.user, device.device, device.curve25519)


def test_one_message_is_read_by_every_member_device():
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    bob2 = add_device(bob, "DEV2")
    group = start_room(alice, [alice, bob, bob2, carol])

    e2e = encrypt(alice, group, "the launch is on friday")

    for member in (alice, bob, bob2, carol):
        decrypted = member.groups.decrypt(ROOM, "alice", e2e)
        assert (decrypted.text, decrypted.sender_device) == ("the launch is on friday", "DEV1")
    assert e2e["algorithm"] == "megolm.v1"
    assert "friday" not in str(e2e)


def test_a_removed_member_cannot_read_what_is_sent_after_the_rotation():
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    group = start_room(alice, [alice, bob, carol])
    members_after = {"alice", "bob"}
    devices_after = {published(alice).peer, published(bob).peer}

    new_group, reason = alice.groups.outbound_for(ROOM, 10.0, members_after, devices_after)
    share_room_key(alice, new_group, bob)
    e2e = encrypt(alice, new_group, "carol is out")

    assert reason is RotationReason.MEMBER_LEFT
    assert new_group.session_id != group.session_id
    assert bob.groups.decrypt(ROOM, "alice", e2e).text == "carol is out"
    assert not carol.groups.has_key(ROOM, e2e)
    with pytest.raises(DecryptionFailed):
        carol.groups.decrypt(ROOM, "alice", e2e)


def test_a_tampered_megolm_ciphertext_fails_with_the_one_opaque_error():
    alice, bob = make_user("alice"), make_user("bob")
    group = start_room(alice, [alice, bob])
    e2e = encrypt(alice, group, "secret")
    text = e2e["ciphertext"]
    flipped = text[:20] + ("A" if text[20] != "A" else "B") + text[21:]

    with pytest.raises(DecryptionFailed) as failure:
        bob.groups.decrypt(ROOM, "alice", {**e2e, "ciphertext": flipped})
    assert str(failure.value) == "this message could not be decrypted"
    assert "secret" not in repr(failure.value)


def test_a_ciphertext_replayed_as_another_message_is_refused():
    alice, bob = make_user("alice"), make_user("bob")
    group = start_room(alice, [alice, bob])
    e2e = encrypt(alice, group, "pay 10")

    assert bob.groups.decrypt(ROOM, "alice", e2e, message_id="41").text == "pay 10"
    assert bob.groups.decrypt(ROOM, "alice", e2e, message_id="41").text == "pay 10"  # reload
    with pytest.raises(DecryptionFailed):
        bob.groups.decrypt(ROOM, "alice", e2e, message_id="42")


@pytest.mark.parametrize(
    ("conversation", "sender", "change"),
    [
        (conversation_id(room="other"), "alice", {}),  # moved to another room by the server
        (ROOM, "mallory", {}),  # shown as someone else's
        (ROOM, "alice", {"device": "DEV9"}),  # from another device of the sender
    ],
)
def test_a_message_moved_or_reattributed_by_the_server_fails(conversation, sender, change):
    alice, bob = make_user("alice"), make_user("bob")
    group = start_room(alice, [alice, bob])
    e2e = encrypt(alice, group, "for this room only")
    if conversation != ROOM:  # bob also holds the key under the other room's name
        entry = bob.groups.inbound[(ROOM, e2e["sender_key"], e2e["session_id"])]
        bob.groups.inbound[(conversation, e2e["sender_key"], e2e["session_id"])] = entry

    with pytest.raises(DecryptionFailed):
        bob.groups.decrypt(conversation, sender, {**e2e, **change})


def group_shared_with(peers, created_at=0.0, messages=0):
    alice = make_user("alice")
    group, _ = alice.groups.outbound_for(ROOM, created_at, set(), set())
    group.shared_with = set(peers)
    group.messages = messages
    return group


BOTH = {("alice", "A"), ("bob", "B")}
USERS = {"alice", "bob"}


@pytest.mark.parametrize(
    ("group_args", "now", "members", "devices", "expected"),
    [
        (dict(peers=BOTH), 1.0, USERS, BOTH, None),
        (dict(peers=BOTH, messages=99), 1.0, USERS, BOTH, None),
        (dict(peers=BOTH, messages=100), 1.0, USERS, BOTH, RotationReason.MESSAGES),
        (dict(peers=BOTH), 7 * DAY - 1, USERS, BOTH, None),
        (dict(peers=BOTH), 7 * DAY, USERS, BOTH, RotationReason.AGE),
        (dict(peers=BOTH), 1.0, {"alice"}, {("alice", "A")}, RotationReason.MEMBER_LEFT),
        (dict(peers=BOTH), 1.0, USERS, {("alice", "A")}, RotationReason.DEVICE_REMOVED),
        (dict(peers=BOTH), 1.0, USERS | {"carol"}, BOTH | {("carol", "C")}, None),
    ],
    ids=[
        "fresh",
        "99-messages",
        "100-messages",
        "under-a-week",
        "a-week",
        "member-left",
        "device-removed",
        "someone-joined",
    ],
)
def test_rotation_policy(group_args, now, members, devices, expected):
    assert needs_rotation(group_shared_with(**group_args), now, members, devices) is expected


def test_a_joining_device_is_the_one_still_missing_the_key():
    group = group_shared_with(BOTH)
    assert isinstance(group, OutboundGroup)

    assert group.devices_without_key(BOTH | {("carol", "C")}) == {("carol", "C")}


@pytest.mark.parametrize(
    ("sent_at", "approved", "expected"),
    [
        (5.0, True, Undecryptable.BEFORE_THIS_DEVICE),
        (50.0, True, Undecryptable.KEY_NOT_RECEIVED),
        (50.0, False, Undecryptable.SENDER_NOT_VERIFIED),
    ],
)
def test_an_undecryptable_message_says_why_in_words(sent_at, approved, expected):
    reason = why_undecryptable(sent_at, device_created_at=10.0, sender_device_approved=approved)

    assert reason is expected
    assert "{" not in reason.text("bob")


def test_undecryptable_lines_are_section_4_9s_words():
    assert Undecryptable.KEY_NOT_RECEIVED.text("bob") == (
        "Waiting for the key from bob's device. Asked your other devices."
    )
    assert Undecryptable.SENDER_NOT_VERIFIED.text("bob") == (
        "Sent from a device that bob has not verified: not shown."
    )
    section_4 = (Path(__file__).parents[3] / "docs" / "protocol.md").read_text(encoding="utf-8")
    for reason in Undecryptable:
        words = reason.value.format(name="NAME")
        if reason is Undecryptable.BEFORE_THIS_DEVICE_NO_BACKUP_KEY:  # 4.9 quotes the two
            before, _, after = words.partition(" Approve")
            assert f'"{before}"' in section_4 and f'"Approve{after}"' in section_4
        else:
            assert f'"{words}"' in section_4


def session_from(session_key):
    return vodozemac.InboundGroupSession(vodozemac.SessionKey(session_key))


def keys_at_index_zero_and_one():
    alice = make_user("alice")
    group, _ = alice.groups.outbound_for(ROOM, 0.0, set(), set())
    at_zero = group.session_key()
    first = encrypt(alice, group, "first")
    return alice, first, at_zero, group.session_key()


def test_a_key_from_an_earlier_index_replaces_a_later_one_but_not_the_reverse():
    alice, first, at_zero, at_one = keys_at_index_zero_and_one()
    bob = make_user("bob")
    key, sender = alice.device.curve25519, ("alice", "DEV1", alice.device.ed25519)

    assert bob.groups.add_inbound(ROOM, key, session_from(at_one), *sender)
    with pytest.raises(DecryptionFailed):
        bob.groups.decrypt(ROOM, "alice", first)  # index 0 comes before that key
    assert bob.groups.add_inbound(ROOM, key, session_from(at_zero), *sender)
    assert not bob.groups.add_inbound(ROOM, key, session_from(at_one), *sender)
    assert bob.groups.decrypt(ROOM, "alice", first).text == "first"


def test_a_known_session_is_not_replaced_by_a_key_naming_another_sender():
    alice, first, at_zero, at_one = keys_at_index_zero_and_one()
    bob = make_user("bob")
    key = alice.device.curve25519
    bob.groups.add_inbound(ROOM, key, session_from(at_one), "alice", "DEV1", alice.device.ed25519)

    assert not bob.groups.add_inbound(ROOM, key, session_from(at_zero), "alice", "DEV9", "x")
    with pytest.raises(DecryptionFailed):
        bob.groups.decrypt(ROOM, "alice", first)
