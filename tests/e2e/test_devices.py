"""Remembered devices over real sockets, on one process and on two (PROTOCOL.md 3.4): a
device's ``online`` and its revocation reach sessions on every process."""

from __future__ import annotations

import pytest

from chatproto.codes import CloseCode
from tests.e2e.deployments import PASSWORD

pytestmark = pytest.mark.slow  # starts daphne processes


def test_a_device_online_on_one_process_is_listed_online_and_revoked_from_the_other(deployment):
    alice, first = deployment.register("alice", on=0)
    laptop = deployment.connect(on=0)
    remembered = laptop.login(alice, PASSWORD, remember="laptop")
    elsewhere = deployment.connect(on=1)
    elsewhere.login(alice, PASSWORD)
    listing = elsewhere.request({"type": "devices"})["devices"]
    assert [(d["device"], d["online"], d["current"]) for d in listing] == [
        (remembered["device"], True, False)
    ]
    assert elsewhere.request({"type": "revoke", "device": remembered["device"]})["type"] == "ok"
    assert laptop.find("session_ended") == {"type": "session_ended", "reason": "revoked"}
    assert laptop.wait_closed() == CloseCode.SESSION_ENDED
    assert elsewhere.request({"type": "devices"})["devices"] == []
    assert first.request({"type": "ping"})["type"] == "pong"  # other sessions stay


def test_a_password_change_on_one_process_ends_the_sessions_on_the_other(deployment):
    alice, asking = deployment.register("alice", on=0)
    other = deployment.login(alice, on=1)
    answer = asking.request(
        {"type": "change_password", "password": PASSWORD, "new_password": PASSWORD + " 2"}
    )
    assert answer["type"] == "ok", answer
    assert other.find("session_ended") == {"type": "session_ended", "reason": "password_changed"}
    assert other.wait_closed() == CloseCode.SESSION_ENDED
    assert asking.request({"type": "ping"})["type"] == "pong"
