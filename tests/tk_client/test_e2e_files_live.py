"""End-to-end files (protocol.md 4.12) between real clients through the real server.

Headless peers (:mod:`.e2e_peers`) with a real :class:`~tk_client.files.TransferManager`:
the offer the server relays carries no name and no hash, only ``e2e`` and the encrypted
stream's size; the receiving client shows it with its decrypted name, marked end to end,
and keeps exactly the sender's bytes. In a private room the file goes to the one member
chosen (the GUI asks whom), never to the room.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from chatproto.e2e_files import encrypted_size
from tk_client.address import parse_address
from tk_client.files import TransferState
from tk_client.model import room_key
from tk_client.secure_files import PLAIN_OFFER, SEALED_OFFER, offer_security

from .e2e_peers import FilePeer, PeerPool, pump
from .test_e2e_clients_live import approved


@pytest.fixture
def file_peers(accounts, tmp_path):
    pool = PeerPool(accounts, tmp_path, "-password", kind=FilePeer)
    yield pool.open
    pool.close()


def ended(peer: FilePeer, name: str):
    def check() -> bool:
        return any(i.over and i.name == name for i in peer.view.transfers.values())

    return check


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_dropped_in_a_private_room_goes_end_to_end_to_the_chosen_member(
    people,
    file_peers,
    tmp_path,
):
    alice, bob, carol = people("alice", "bob", "carol")
    a, b, c = file_peers(alice, "laptop"), file_peers(bob, "laptop"), file_peers(carol, "laptop")
    everyone = [a, b, c]
    pump(everyone, approved(*everyone), "first devices set up")
    assert a.controller.submit(f"/create plans {bob} {carol}")
    pump(everyone, lambda: "plans" in b.controller.rooms, "the room")
    a.controller.select(room_key("plans"))  # the file is dropped here; the GUI asked: bob
    source = tmp_path / "secret plan.pdf"
    source.write_bytes(os.urandom(200_000))

    assert a.controller.send_file(bob, str(source))
    pump(everyone, lambda: bool(b.view.offers), "the offer shown to bob")

    offer = b.view.offers[0]
    assert (offer.name, offer.size, offer.peer) == ("secret plan.pdf", 200_000, alice)
    assert offer.end_to_end and offer_security(offer) == SEALED_OFFER
    relayed = next(m for m in b.relayed if m.get("type") == "file_offer")
    assert "name" not in relayed and "sha256" not in relayed and "e2e" in relayed
    assert relayed["size"] == encrypted_size(200_000)
    assert "secret plan" not in str(relayed)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    b.manager.accept_into(offer.transfer, inbox)
    pump(everyone, ended(a, "secret plan.pdf"), "the transfer over")
    pump(everyone, ended(b, "secret plan.pdf"), "the transfer over on bob's side")

    sent = a.view.transfers[offer.transfer]
    assert sent.stage is TransferState.FINISHED and sent.end_to_end
    assert digest(inbox / "secret plan.pdf") == digest(source)
    assert sorted(p.name for p in inbox.iterdir()) == ["secret plan.pdf"]
    assert c.relayed == []  # only bob


def test_a_plain_offer_is_shown_as_readable_by_the_server(people, file_peers, accounts):
    """A 3.3 offer from an old client (a session with no device) is marked before the
    answer; our client with a device never sends one."""
    from tk_client.events import LoggedIn

    from .helpers import make_session

    alice, bob = people("alice", "bob")
    b = file_peers(bob, "laptop")
    pump([b], approved(b), "bob set up")
    old, log = make_session(
        parse_address(accounts.url),
        b.folder / "old_known",
        expected_fingerprint=accounts.fingerprint,
    )
    try:
        old.login(alice, f"{alice}-password")
        log.wait_for(LoggedIn)
        old.request(
            "file_offer",
            durable=False,
            transfer=os.urandom(16).hex(),
            to=bob,
            name="old.txt",
            size=3,
            sha256="cd" * 32,
        )
        pump([b], lambda: bool(b.view.offers), "the plain offer shown")
    finally:
        old.close()
    offer = b.view.offers[0]
    assert offer.name == "old.txt" and not offer.end_to_end
    assert offer_security(offer) == PLAIN_OFFER
