"""The key backup in the desktop window with the real link and a real server (4.13), Xvfb.

The window is one device of a user; other devices are headless peers (:mod:`.e2e_peers`).
Every test has users of its own (the first device of a user makes its identity).
"""

from __future__ import annotations

import pytest

from tk_client.e2e.backup import NOT_THE_KEY_SHOWN, BackupEnabled, BackupStatus
from tk_client.model import pm_key
from tk_client.views.backup import RecoveryDialog, RecoveryKeyWindow

from .e2e_peers import PeerPool
from .gui_helpers import pump
from .test_gui_e2e import approved, open_window, run, window_approved

pytestmark = pytest.mark.gui


@pytest.fixture
def peers(accounts, tmp_path):
    """``peers(user, device)``: a headless device of ``user``, logged in; closed after."""
    pool = PeerPool(accounts, tmp_path, "-password", folder=lambda u, d: f"peer-{u}-{d}")
    yield pool.open
    pool.close()


def test_backup_setup_typed_in_the_window_shows_a_fresh_key_and_refuses_a_wrong_one(
    open_app, known, address, accounts, people
):
    (bob,) = people("bob")
    app = open_window(open_app, known, address, accounts, bob)
    run(app, [], window_approved(app), "the window's device set up")

    assert app.controller.submit("/backup setup")

    window = next(w for w in app.backup_windows if isinstance(w, RecoveryKeyWindow))
    assert window.stage == "key"
    groups = window.key.split()
    assert len(groups) == 14 and all(len(group) == 4 for group in groups)
    assert str(window.key_label.cget("text")).split() == groups
    window.copy_button.invoke()
    assert app.root.clipboard_get() == window.key

    window.kept_button.invoke()
    window.typed.set(" ".join(reversed(groups)))
    window.turn_on_button.invoke()
    pump(app, lambda: str(window.message.cget("text")) == NOT_THE_KEY_SHOWN, "the refusal")
    assert window.stage == "check"

    window.close()
    assert app.backup_windows == []


def texts(controller, key) -> list[str]:
    return [m.text for m in controller.conversation(key).messages if not m.notice]


def test_a_user_who_lost_every_device_reads_the_history_again_with_the_recovery_key(
    open_app, known, address, accounts, people, peers
):
    """4.13's newcomer: bob's only device backs up, is lost, and a new one (the window)
    reads alice's old message once bob types the recovery key into it."""
    alice, bob = people("alice", "bob")
    first, friend = peers(bob, "old-laptop"), peers(alice, "laptop")
    run(None, [first, friend], approved(first, friend), "both devices set up")
    assert friend.controller.submit(f"/pm {bob} written before the loss")
    run(
        None,
        [first, friend],
        lambda: "written before the loss" in texts(first.controller, pm_key(alice)),
        "alice's message read on bob's first device",
    )
    key = first.controller.begin_backup_setup()  # as /backup setup does
    first.controller.finish_backup_setup(key.lower(), None)
    run(
        None,
        [first, friend],
        lambda: (
            any(isinstance(e, BackupEnabled) for e in first.view.e2e_events)
            and first.link.store.backup.uploaded
        ),
        "the backup on, and alice's session in it",
    )
    first.close()  # lost

    app = open_window(open_app, known, address, accounts, bob)  # a new device, a new folder
    view = app.main_view
    run(app, [friend], lambda: view.recover_button.winfo_ismapped(), "Enter recovery key...")
    assert app.controller.backup_status is BackupStatus.NEEDS_KEY
    view.recover_button.invoke()
    dialog = next(w for w in app.backup_windows if isinstance(w, RecoveryDialog))

    dialog.typed.set(key[:-1] + ("A" if key[-1] != "A" else "B"))  # a typo: refused at once
    dialog.restore_button.invoke()
    assert "typo" in str(dialog.message.cget("text"))

    dialog.typed.set(key.replace(" ", "").lower())
    dialog.restore_button.invoke()
    run(
        app,
        [friend],
        lambda: "restored from the key backup" in str(dialog.message.cget("text")),
        "the keys restored",
    )
    assert window_approved(app)()  # the recovery key approved this device too
    app.controller.select(pm_key(alice))
    run(
        app,
        [friend],
        lambda: "written before the loss" in texts(app.controller, pm_key(alice)),
        "alice's old message readable on the new device",
    )
    run(app, [friend], lambda: not view.recover_button.winfo_ismapped(), "the button gone")
