"""End-to-end encryption between real clients through the real server (section 4).

Headless peers (:mod:`.e2e_peers`: session, controller and link, each in its own client
folder) log in with remembered devices. The first device of each user makes the user
key; bob's second device waits until his first approves it by comparing codes; then a
private message and a private room reach every device, in words on each.
"""

from __future__ import annotations

import itertools

import pytest

from tk_client.e2e.link import WAIT_FOR_APPROVAL, OwnDeviceToApprove
from tk_client.e2e.verification import CodesReady, VerificationRequested, Verified
from tk_client.model import pm_key, room_key

from .e2e_peers import Peer, pump

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
    opened: list[Peer] = []

    def open_(user: str, device: str) -> Peer:
        peer = Peer(live_server, tmp_path / f"{user}-{device}", user, device)
        opened.append(peer)
        peer.log_in(f"{user}-pw")
        return peer

    yield open_
    for peer in opened:
        peer.close()


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
