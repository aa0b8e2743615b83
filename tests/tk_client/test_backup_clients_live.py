"""The key backup's commands between real clients through the real server (4.13).

Headless peers (:mod:`.e2e_peers`) stand for bob's devices: what ``/backup``,
``/backup reset`` and ``/recover`` make the controller do, and the words each device
shows. The desktop's windows over the same steps are tests/tk_client/test_gui_backup_live.py.
"""

from __future__ import annotations

import itertools

import pytest

from tk_client.backup_actions import BackupRefused
from tk_client.e2e.backup import (
    CREDENTIALS_REFUSED,
    BackupEnabled,
    BackupProblem,
    BackupRecovered,
    BackupStatus,
)

from .e2e_peers import Peer, PeerPool, pump

_run = itertools.count(1)


@pytest.fixture
def bob(live_server, tmp_path):
    """A fresh user (a user key lives on the server): his name."""
    name = f"bob{next(_run)}{tmp_path.name[-6:]}".replace("_", "")
    live_server.create_user(name, f"{name}-pw")
    return name


@pytest.fixture
def devices(live_server, tmp_path, bob):
    """``devices("laptop")``: a device of bob's, logged in; closed after the test."""
    pool = PeerPool(live_server, tmp_path, folder=lambda user, device: device)
    yield lambda device: pool.open(bob, device)
    pool.close()


def saw(peer: Peer, kind: type) -> list:
    return [event for event in peer.view.e2e_events if isinstance(event, kind)]


def backed_up(peer: Peer) -> str:
    """Turn the backup on from ``peer`` (as /backup setup does); its recovery key."""
    pump([peer], lambda: peer.controller.e2e is not None and peer.link.approved, "set up")
    key = peer.controller.begin_backup_setup()
    peer.controller.finish_backup_setup(key, None)
    pump([peer], lambda: saw(peer, BackupEnabled), "the backup on")
    return key


def test_backup_says_the_state_and_recover_approves_a_device_with_none_other_left(devices):
    laptop = devices("laptop")
    key = backed_up(laptop)
    assert laptop.controller.submit("/backup")
    assert laptop.view.notices[-1].startswith("Key backup is on (version 1, ")
    laptop.close()

    phone = devices("phone")
    pump([phone], lambda: phone.controller.backup_status is BackupStatus.NEEDS_KEY, "known")
    assert any("/recover" in notice for notice in phone.view.notices)  # offered at once
    assert phone.controller.submit("/recover " + key.lower())
    pump([phone], lambda: saw(phone, BackupRecovered), "recovered")
    assert phone.link.approved
    pump([phone], lambda: phone.controller.backup_status is BackupStatus.ON, "the key held")


def test_a_reset_needs_the_password_and_is_told_to_the_other_device(devices):
    laptop = devices("laptop")
    key = backed_up(laptop)
    phone = devices("phone")
    pump([phone], lambda: phone.controller.backup_status is BackupStatus.NEEDS_KEY, "known")
    phone.controller.restore_with_recovery_key(key)
    pump([phone, laptop], lambda: phone.controller.backup_status is BackupStatus.ON, "held")

    new_key = phone.controller.begin_backup_setup()
    with pytest.raises(BackupRefused):  # a reset without the password is refused at once
        phone.controller.finish_backup_setup(new_key, None)
    phone.controller.finish_backup_setup(new_key, "not the password")
    pump([phone, laptop], lambda: saw(phone, BackupProblem), "the refusal")
    assert phone.view.notices[-1] == CREDENTIALS_REFUSED

    new_key = phone.controller.begin_backup_setup()
    phone.controller.finish_backup_setup(new_key, f"{phone.user}-pw")
    told = f"Your key backup was reset from phone ({phone.session.device})."
    pump([phone, laptop], lambda: any(told in n for n in laptop.view.notices), "told on the laptop")
    assert "Your old recovery key no longer works." in laptop.view.notices[-1]
    assert not any("was reset from" in notice for notice in phone.view.notices)
    assert new_key != key
