"""End-to-end encryption between real clients through the real server (section 4).

Headless peers (:mod:`.e2e_peers`: session, controller and link, each in its own client
folder) log in with remembered devices. The first device of each user makes the user
key; bob's second device waits until his first approves it by comparing codes; then a
private message and a private room reach every device, in words on each.
"""

from __future__ import annotations

import itertools

import pytest

from chatproto.e2e import conversation_id
from tk_client.e2e.errors import DecryptionFailed
from tk_client.e2e.keyfile import load_or_create_pickle_key
from tk_client.e2e.link import WAIT_FOR_APPROVAL, OwnDeviceToApprove
from tk_client.e2e.store import CryptoStore
from tk_client.e2e.verification import CodesReady, VerificationRequested, Verified
from tk_client.model import pm_key, room_key

from .e2e_peers import Peer, PeerPool, pump

_run = itertools.count(1)


@pytest.fixture
def people(live_server, tmp_path):
    """``people("alice", "bob")``: fresh accounts (a user key lives on the server), as
    (name, password) pairs."""

    def make(*names: str) -> list[str]:
        suffix = f"{next(_run)}{tmp_path.name[-6:]}".replace("_", "")
        made = []
        for name in names:
            username = f"{name}{suffix}"
            live_server.create_user(username, f"{username}-pw")
            made.append(username)
        return made

    return make


@pytest.fixture
def peers(live_server, tmp_path):
    pool = PeerPool(live_server, tmp_path)
    yield pool.open
    pool.close()


def approved(*peers: Peer):
    return lambda: all(p.controller.e2e is not None and p.link.approved for p in peers)


def approve(signed: Peer, new: Peer, everyone: list[Peer]) -> None:
    """``signed`` approves ``new`` (both the same user), the codes compared as a user would."""
    pump(
        everyone,
        lambda: any(isinstance(e, OwnDeviceToApprove) for e in signed.view.e2e_events),
        "the new device announced on the signed one",
    )
    asked = next(e for e in signed.view.e2e_events if isinstance(e, OwnDeviceToApprove))
    assert signed.controller.approve_device(asked.device)
    pump(
        everyone,
        lambda: any(isinstance(e, VerificationRequested) for e in new.view.e2e_events),
        "the request on the new device",
    )
    request = next(e for e in new.view.e2e_events if isinstance(e, VerificationRequested))
    new.controller.accept_verification(request.txn)
    pump(
        everyone,
        lambda: all(
            any(isinstance(e, CodesReady) for e in p.view.e2e_events) for p in (signed, new)
        ),
        "codes on both devices",
    )
    codes = [next(e for e in p.view.e2e_events if isinstance(e, CodesReady)) for p in (signed, new)]
    assert codes[0].emoji == codes[1].emoji  # what the two people compare
    for peer, code in zip((signed, new), codes, strict=True):
        peer.controller.confirm_verification(code.txn)
    pump(everyone, approved(new), "the new device approved")


def test_first_devices_set_themselves_up_and_a_second_device_waits_for_approval(people, peers):
    (alice,) = people("alice")
    laptop = peers(alice, "laptop")
    pump([laptop], approved(laptop), "alice's first device set up")

    phone = peers(alice, "phone")
    pump([laptop, phone], lambda: WAIT_FOR_APPROVAL in phone.view.notices, "approval asked")
    assert not phone.link.approved
    assert phone.controller.submit(f"/pm {alice} note to self") is False  # cannot send yet

    approve(laptop, phone, [laptop, phone])
    assert any(isinstance(e, Verified) and e.approved_here for e in phone.view.e2e_events)


def test_a_private_message_and_a_private_room_reach_every_device_and_only_them(people, peers):
    alice, bob, carol = people("alice", "bob", "carol")
    a = peers(alice, "laptop")
    b1 = peers(bob, "laptop")
    c = peers(carol, "laptop")
    everyone = [a, b1, c]
    pump(everyone, approved(*everyone), "first devices set up")
    b2 = peers(bob, "phone")
    everyone.append(b2)
    approve(b1, b2, everyone)

    assert a.controller.submit(f"/create plans {bob} {carol}")
    pump(everyone, lambda: "plans" in b2.controller.rooms, "the room everywhere")
    a.controller.select(room_key("plans"))
    assert a.controller.submit("meet at the mill")
    assert a.controller.submit(f"/pm {bob} the vault code is 4815")

    room_line = (alice, "meet at the mill")
    pm_line = (alice, "the vault code is 4815")
    pump(
        everyone,
        lambda: (
            all(room_line in p.lines(room_key("plans")) for p in (b1, b2, c))
            and all(pm_line in p.lines(pm_key(alice)) for p in (b1, b2))
        ),
        "the messages readable on bob's two devices and carol's",
    )
    assert pm_line not in c.lines(pm_key(alice))
    for peer in (b1, b2, c):
        line = peer.controller.conversation(room_key("plans")).messages[-1]
        assert line.encrypted and not line.unreadable


def room_keys_for(peer: Peer, sender: str) -> int:
    """How many to-device messages from ``sender`` reached ``peer`` (room keys among them)."""
    return sum(1 for m in peer.pushes if m.get("type") == "to_device" and m.get("from") == sender)


def test_a_member_who_left_cannot_decrypt_what_is_sent_after_with_their_stored_keys(people, peers):
    alice, bob, carol = people("alice", "bob", "carol")
    a, b, c = peers(alice, "laptop"), peers(bob, "laptop"), peers(carol, "laptop")
    everyone = [a, b, c]
    pump(everyone, approved(*everyone), "first devices set up")
    a.controller.submit(f"/create den {bob} {carol}")
    pump(everyone, lambda: "den" in b.controller.rooms and "den" in c.controller.rooms, "room")
    a.controller.select(room_key("den"))
    a.controller.submit("before bob left")
    pump(everyone, lambda: (alice, "before bob left") in b.lines(room_key("den")), "first line")

    b.controller.submit("/leave den")
    pump(everyone, lambda: bob not in a.controller.rooms["den"].members, "bob gone")
    a.controller.submit("after bob left")
    pump(everyone, lambda: (alice, "after bob left") in c.lines(room_key("den")), "carol reads")

    in_den = [m for m in c.pushes if m.get("type") == "message" and m.get("room") == "den"]
    after = max(in_den, key=lambda m: m["msg_id"])
    stored = CryptoStore.load(b.link.path, load_or_create_pickle_key(b.folder))
    conversation = conversation_id(room="den")
    assert not stored.groups.has_key(conversation, after["e2e"])
    with pytest.raises(DecryptionFailed):
        stored.groups.decrypt(conversation, alice, after["e2e"], str(after["msg_id"]))


def test_a_device_nobody_approved_gets_no_room_key_and_says_why(people, peers):
    """What a server could do: put a device in bob's list. Unsigned, it is sent nothing."""
    alice, bob = people("alice", "bob")
    a, b = peers(alice, "laptop"), peers(bob, "laptop")
    pump([a, b], approved(a, b), "first devices set up")
    intruder = peers(bob, "intruder")  # uploads keys, but bob never approves it
    everyone = [a, b, intruder]
    pump(everyone, lambda: WAIT_FOR_APPROVAL in intruder.view.notices, "the device is listed")

    a.controller.submit(f"/pm {bob} not for the intruder")
    pump(everyone, lambda: (alice, "not for the intruder") in b.lines(pm_key(alice)), "bob reads")
    pump(everyone, lambda: any(m.get("type") == "private" for m in intruder.pushes), "pushed")

    assert room_keys_for(intruder, alice) == 0
    line = intruder.controller.conversation(pm_key(alice)).messages[-1]
    assert line.unreadable and "not for the intruder" not in line.text


def test_a_changed_identity_is_one_notice_and_pauses_sending_to_a_verified_contact(people, peers):
    alice, bob = people("alice", "bob")
    a, b = peers(alice, "laptop"), peers(bob, "laptop")
    pump([a, b], approved(a, b), "first devices set up")
    a.controller.submit(f"/pm {bob} hello")
    pump([a, b], lambda: (alice, "hello") in b.lines(pm_key(alice)), "first message")
    assert a.controller.mark_verified(bob)
    assert a.controller.security(pm_key(bob)) == "end-to-end encrypted; verified"

    b.controller.reset_identity()
    changed = f"{bob}'s identity changed"
    pump([a, b], lambda: any(changed in n for n in a.view.notices), "alice told")
    a.link.engine.directory.mark_changed([bob])  # another announcement of the same change
    a.controller.submit(f"/pm {bob} are you still you?")  # refused: paused
    pump([a, b], lambda: "acknowledge" in a.view.notices[-1], "the refusal")

    assert sum(changed in n for n in a.view.notices) == 1
    assert "paused" in a.controller.security(pm_key(bob))
    assert (alice, "are you still you?") not in b.lines(pm_key(alice))
    assert a.controller.acknowledge_identity(bob)
    assert a.controller.submit(f"/pm {bob} welcome back")
    pump([a, b], lambda: (alice, "welcome back") in b.lines(pm_key(alice)), "sending resumed")


def test_a_message_sent_while_the_second_device_was_offline_decrypts_when_it_returns(
    people, peers, live_server, tmp_path
):
    alice, bob = people("alice", "bob")
    a, b1 = peers(alice, "laptop"), peers(bob, "laptop")
    pump([a, b1], approved(a, b1), "first devices set up")
    b2 = peers(bob, "phone")
    approve(b1, b2, [a, b1, b2])
    a.controller.submit(f"/pm {bob} warm-up")  # alice learns bob's phone
    pump([a, b1, b2], lambda: (alice, "warm-up") in b2.lines(pm_key(alice)), "phone online")
    b2.close()

    a.controller.submit(f"/pm {bob} sent while the phone slept")
    pump([a, b1], lambda: (alice, "sent while the phone slept") in b1.lines(pm_key(alice)), "b1")

    back = Peer(live_server, b2.folder, bob, "phone")  # the same folder: the same device
    try:
        back.resume()
        pump([a, b1, back], lambda: back.logged_in, "the phone back")
        back.controller.select(pm_key(alice))  # the conversation's history, as a client loads it
        back.controller.load_older()
        pump(
            [a, b1, back],
            lambda: (alice, "sent while the phone slept") in back.lines(pm_key(alice)),
            "the phone reads it after it reconnects",
        )
    finally:
        back.close()
