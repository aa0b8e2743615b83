"""The issue's "done means", as one story through the real server with real clients.

A newcomer: sends a file in a private room and it arrives; installs the client in a
second folder (a new device), approves it from the first, and sees the old messages;
loses both, types the recovery key into a third, and sees them again.

The newcomer is alice; bob is the friend at the other end. Each device is a headless
client (:class:`~.e2e_peers.FilePeer`: the controller, transfer manager and end-to-end
link that both clients share) in its own folder. The key backup is turned on from the
first device before the loss; "loses both" deletes the two folders.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tk_client.e2e.backup import BackupRecovered, BackupRestored, BackupStatus
from tk_client.e2e.link import WAIT_FOR_APPROVAL
from tk_client.files import TransferState
from tk_client.model import ConversationKey, pm_key, room_key

from .e2e_peers import FilePeer, PeerPool, all_backed_up, pump
from .test_e2e_clients_live import approve, approved

ROOM = "plans"
IN_THE_ROOM = "the boat leaves at six"
IN_PRIVATE = "bring the map"


@pytest.fixture
def devices(accounts, tmp_path):
    pool = PeerPool(accounts, tmp_path, kind=FilePeer, folder=lambda user, device: device)
    yield pool.open
    pool.close()


def sees(device: FilePeer, key: ConversationKey, sender: str, text: str):
    return lambda: (sender, text) in device.lines(key)


def open_history(device: FilePeer, key: ConversationKey) -> None:
    device.controller.select(key)
    device.controller.load_older()


def sees_the_old_messages(device: FilePeer, alice: str, bob: str, everyone: list[FilePeer]):
    """The private room's message and the private message, from the server's history."""
    for key in (room_key(ROOM), pm_key(bob)):
        open_history(device, key)
    pump(everyone, sees(device, room_key(ROOM), alice, IN_THE_ROOM), "the room's old message")
    pump(everyone, sees(device, pm_key(bob), bob, IN_PRIVATE), "the old private message")


def test_the_newcomers_story(people, devices, tmp_path):
    alice, bob = people("alice", "bob")
    password = f"{alice}-password"
    laptop = devices(alice, "laptop", password)
    friend = devices(bob, "friend", f"{bob}-password")
    pump([laptop, friend], approved(laptop, friend), "both first devices set up")

    # -- sends a file in a private room, and it arrives ---------------------------------------
    assert laptop.controller.submit(f"/create {ROOM} {bob}")
    pump(
        [laptop, friend],
        lambda: ROOM in friend.controller.rooms and ROOM in laptop.controller.rooms,
        "the private room on both sides",
    )
    laptop.controller.select(room_key(ROOM))
    assert laptop.controller.submit(IN_THE_ROOM)
    pump([laptop, friend], sees(friend, room_key(ROOM), alice, IN_THE_ROOM), "bob reads it")
    friend.controller.submit(f"/pm {alice} {IN_PRIVATE}")
    pump([laptop, friend], sees(laptop, pm_key(bob), bob, IN_PRIVATE), "alice reads bob")

    source = tmp_path / "itinerary.pdf"
    source.write_bytes(os.urandom(150_000))
    assert laptop.controller.send_file(bob, str(source))  # chosen in the room: to bob
    pump([laptop, friend], lambda: bool(friend.view.offers), "the file offered to bob")
    offer = friend.view.offers[0]
    assert offer.end_to_end and offer.name == "itinerary.pdf"
    inbox = tmp_path / "bob-inbox"
    inbox.mkdir()
    friend.manager.accept_into(offer.transfer, inbox)
    pump(
        [laptop, friend],
        lambda: laptop.view.transfers.get(offer.transfer, offer).stage is TransferState.FINISHED,
        "the file delivered",
    )
    assert hashlib.sha256((inbox / "itinerary.pdf").read_bytes()).digest() == (
        hashlib.sha256(source.read_bytes()).digest()
    )

    # -- turns the key backup on, and keeps the recovery key ---------------------------------
    pump([laptop, friend], lambda: laptop.link.backup_status is BackupStatus.NONE, "no backup")
    recovery_key = laptop.controller.begin_backup_setup()  # shown once
    laptop.controller.finish_backup_setup(recovery_key)  # typed back
    pump([laptop, friend], lambda: all_backed_up(laptop), "the backup on, every session in it")

    # -- installs the client in a second folder, approves it from the first, sees the past --
    desktop = devices(alice, "desktop", password)
    everyone = [laptop, friend, desktop]
    pump(everyone, lambda: WAIT_FOR_APPROVAL in desktop.view.notices, "the desktop waits")
    approve(laptop, desktop, everyone)
    sees_the_old_messages(desktop, alice, bob, everyone)

    # -- loses both -------------------------------------------------------------------------
    for lost in (laptop, desktop):
        lost.close()
        shutil.rmtree(lost.folder)
    assert not Path(laptop.folder).exists() and not Path(desktop.folder).exists()

    # -- types the recovery key into a third, and sees them again ------------------------------
    third = devices(alice, "new-laptop", password)
    everyone = [friend, third]
    pump(everyone, lambda: WAIT_FOR_APPROVAL in third.view.notices, "nothing left to approve it")
    pump(everyone, lambda: third.link.backup_status is BackupStatus.NEEDS_KEY, "asks for the key")
    third.controller.restore_with_recovery_key(recovery_key)
    sees_the_old_messages(third, alice, bob, everyone)

    assert third.link.approved
    assert any(isinstance(e, BackupRecovered) for e in third.view.e2e_events)
    assert any(isinstance(e, BackupRestored) for e in third.view.e2e_events)
