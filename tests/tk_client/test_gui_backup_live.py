"""The key backup in the desktop window with the real link and a real server (4.13), Xvfb.

The window is one device of a user; other devices are headless peers (:mod:`.e2e_peers`).
Every test has users of its own (the first device of a user makes its identity).
"""

from __future__ import annotations

import pytest

from tk_client.e2e.backup import NOT_THE_KEY_SHOWN
from tk_client.views.backup import RecoveryKeyWindow

from .gui_helpers import pump
from .test_gui_e2e import open_window, peers, run, window_approved  # noqa: F401 - a fixture

pytestmark = pytest.mark.gui


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
