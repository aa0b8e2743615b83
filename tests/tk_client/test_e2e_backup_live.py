"""The key backup (section 4.13) between real clients through the real server.

alice's laptop talks with bob, turns the key backup on, and keeps the recovery key. A new
device of alice's then reads that history: with the recovery key typed in while the laptop
is gone (it becomes approved by it), or approved from the laptop, which hands over the
backup key with the user key.
"""

from __future__ import annotations

from tk_client.e2e.backup import (
    BackupChanged,
    BackupProblem,
    BackupRecovered,
    BackupRestored,
    BackupStatus,
)
from tk_client.e2e.link import WAIT_FOR_APPROVAL
from tk_client.model import pm_key

from .e2e_peers import Peer, pump
from .test_e2e_clients_live import approve, approved, peers, people  # noqa: F401  # fixtures

LINES = ("the boat leaves at six", "bring the map")


def talk_and_back_up(alice: str, bob: str, laptop: Peer, b: Peer) -> str:
    """laptop and bob exchange messages; then the laptop turns the backup on. The
    recovery key, as shown once."""
    pump([laptop, b], approved(laptop, b), "first devices set up")
    laptop.controller.submit(f"/pm {bob} {LINES[0]}")
    pump([laptop, b], lambda: (alice, LINES[0]) in b.lines(pm_key(alice)), "bob reads")
    b.controller.submit(f"/pm {alice} {LINES[1]}")
    pump([laptop, b], lambda: (bob, LINES[1]) in laptop.lines(pm_key(bob)), "alice reads")
    pump(
        [laptop, b],
        lambda: laptop.link.backup_status is BackupStatus.NONE,
        "the laptop learns that there is no backup yet",
    )

    recovery_key = laptop.link.begin_backup_setup()
    assert laptop.link.finish_backup_setup(recovery_key.lower(), None) == []
    sessions = laptop.link.store.groups.inbound
    pump(
        [laptop, b],
        lambda: (
            laptop.link.backup_status is BackupStatus.ON
            and set(laptop.link.store.backup.uploaded) == {sid for (_, _, sid) in sessions}
        ),
        "the backup on, and both sessions uploaded",
    )
    assert len(sessions) == 2  # the laptop's own, and bob's
    return recovery_key


def history_readable(phone: Peer, alice: str, bob: str) -> bool:
    lines = phone.lines(pm_key(bob))
    return (alice, LINES[0]) in lines and (bob, LINES[1]) in lines


def open_history(phone: Peer, bob: str) -> None:
    phone.controller.select(pm_key(bob))
    phone.controller.load_older()


def test_a_new_device_reads_the_history_with_the_recovery_key_when_no_other_is_left(
    people,  # noqa: F811
    peers,  # noqa: F811
):
    alice, bob = people("alice", "bob")
    laptop, b = peers(alice, "laptop"), peers(bob, "laptop")
    recovery_key = talk_and_back_up(alice, bob, laptop, b)
    laptop.close()  # lost: nothing can approve the new device or forward it a key

    phone = peers(alice, "phone")
    pump([phone, b], lambda: WAIT_FOR_APPROVAL in phone.view.notices, "the new device waits")
    pump([phone, b], lambda: phone.link.backup_status is BackupStatus.NEEDS_KEY, "status")
    open_history(phone, bob)
    pump(
        [phone, b],
        lambda: any("enter your recovery key" in t for _, t in phone.lines(pm_key(bob))),
        "the history says how to read it",
    )
    assert not history_readable(phone, alice, bob)

    phone.controller._e2e_events(phone.link.restore_with_recovery_key(recovery_key))
    pump([phone, b], lambda: history_readable(phone, alice, bob), "the history readable")

    assert phone.link.approved  # the recovery key gave it the user key
    assert any(isinstance(e, BackupRecovered) for e in phone.view.e2e_events)
    assert BackupRestored(2, 0) in phone.view.e2e_events
    assert phone.link.backup_status is BackupStatus.ON
    phone.controller.submit(f"/pm {bob} back with a new phone")
    pump([phone, b], lambda: (alice, "back with a new phone") in b.lines(pm_key(alice)), "sent")


def test_an_approval_from_the_laptop_hands_over_the_backup_key_and_the_history(
    people,  # noqa: F811
    peers,  # noqa: F811
):
    alice, bob = people("alice", "bob")
    laptop, b = peers(alice, "laptop"), peers(bob, "laptop")
    talk_and_back_up(alice, bob, laptop, b)

    phone = peers(alice, "phone")
    everyone = [laptop, b, phone]
    approve(laptop, phone, everyone)
    pump(
        everyone,
        lambda: any(isinstance(e, BackupRestored) for e in phone.view.e2e_events),
        "the phone restores from the backup",
    )
    open_history(phone, bob)
    pump(everyone, lambda: history_readable(phone, alice, bob), "the history readable")

    assert BackupRestored(2, 0) in phone.view.e2e_events
    assert phone.link.store.backup.key == laptop.link.store.backup.key
    assert phone.link.backup_status is BackupStatus.ON


def test_a_reset_asks_for_the_password_and_the_other_device_takes_the_new_key(
    people,  # noqa: F811
    peers,  # noqa: F811
):
    alice, bob = people("alice", "bob")
    laptop, b = peers(alice, "laptop"), peers(bob, "laptop")
    talk_and_back_up(alice, bob, laptop, b)
    phone = peers(alice, "phone")
    everyone = [laptop, b, phone]
    approve(laptop, phone, everyone)
    pump(everyone, lambda: phone.link.backup_status is BackupStatus.ON, "the phone has the key")

    shown_key = phone.link.begin_backup_setup()
    phone.link.finish_backup_setup(shown_key, "not my password")
    pump(
        everyone,
        lambda: any(isinstance(e, BackupProblem) for e in phone.view.e2e_events),
        "the wrong password refused",
    )
    shown_key = phone.link.begin_backup_setup()  # a refused publish ends the set-up: again
    phone.link.finish_backup_setup(shown_key, f"{alice}-pw")
    pump(
        everyone,
        lambda: (
            any(isinstance(e, BackupChanged) for e in laptop.view.e2e_events)
            and laptop.link.store.backup.version == 2
            and laptop.link.backup_status is BackupStatus.ON
        ),
        "the laptop told, and given the new key",
    )

    (problem,) = [e for e in phone.view.e2e_events if isinstance(e, BackupProblem)]
    assert problem.text == "The password is wrong: the key backup was not changed."
    (changed,) = [e for e in laptop.view.e2e_events if isinstance(e, BackupChanged)]
    assert changed.text == (
        f"Your key backup was reset from phone ({phone.link.device}). "
        "Your old recovery key no longer works."
    )
    assert laptop.link.store.backup.key == phone.link.store.backup.key
    assert phone.link.backup_info is not None and phone.link.backup_info[0] == 2
