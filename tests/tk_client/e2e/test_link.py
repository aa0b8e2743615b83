"""The link between the engine and a session: store file, request ids, a device's set-up.

A fake session records the requests; the tests answer them as the server would (the
real server is in tests/tk_client/test_e2e_clients_live.py).
"""

from __future__ import annotations

import itertools
import stat
from typing import Any

import pytest

from tk_client.e2e.engine import Notice
from tk_client.e2e.errors import StoreError
from tk_client.e2e.identity import UserIdentity
from tk_client.e2e.link import (
    IDENTITY_CREATED,
    WAIT_FOR_APPROVAL,
    E2ELink,
    KeysFetched,
    NotApproved,
    OwnDeviceToApprove,
    store_path,
)
from tk_client.e2e.store import CryptoStore
from tk_client.events import NotConnected, RequestState, RequestStatus

SERVER = "SHA256:" + "A" * 43


class FakeSession:
    def __init__(self) -> None:
        self.requests: list[RequestStatus] = []
        self.sent: list[dict[str, Any]] = []
        self.online = True
        self._ids = itertools.count(1)

    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus:
        status = RequestStatus(
            f"r{next(self._ids)}", {"type": type_, **fields}, RequestState.QUEUED
        )
        self.requests.append(status)
        return status

    def send_message(self, message: dict[str, Any]) -> None:
        if not self.online:
            raise NotConnected("offline")
        self.sent.append(message)

    def of(self, type_: str) -> list[RequestStatus]:
        return [r for r in self.requests if r.type == type_]


def answer(link: E2ELink, status: RequestStatus, reply: dict[str, Any]) -> list[Any]:
    done = RequestStatus(status.id, status.message, RequestState.DONE)
    return link.answered(done, {**reply, "ref": status.id})


def setup_check(session: FakeSession) -> RequestStatus:
    """The link's own keys_query of the user's keys (the last one sent at login)."""
    return session.of("keys_query")[-1]


def test_the_store_is_private_and_named_by_nothing_the_user_typed(link, tmp_path):
    path = store_path(tmp_path, SERVER, "alice", "DEV1")

    assert link.path == path and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "alice" not in path.name and path.parent == tmp_path / "e2e"


def test_a_first_device_makes_and_publishes_the_user_key_then_signs_itself(link, session):
    link.logged_in()
    assert [r.type for r in session.requests] == [
        "keys_upload",
        "keys_query",
        "device_list_changes",
        "backup_get",
        "keys_query",
    ]
    assert "signatures" not in session.requests[0].message["device_keys"] or (
        "user" not in session.requests[0].message["device_keys"]["signatures"]
    )

    answer(link, setup_check(session), {"type": "keys", "users": {}})
    publish = session.of("user_key_publish")[-1]
    assert publish.message["reset"] is False
    events = answer(link, publish, {"type": "ok"})

    assert link.approved
    assert Notice(IDENTITY_CREATED) in events
    signed = session.of("keys_upload")[-1].message["device_keys"]
    assert "user" in signed["signatures"]


def test_a_device_of_a_user_with_a_key_waits_for_approval_and_cannot_send(link, session):
    link.logged_in()
    decided: list[Any] = []
    link.encrypt("pm:alice:bob", ["alice", "bob"], "typed during the set-up", decided.append)
    assert decided == [] and link.busy  # waits for the set-up

    events = answer(
        link,
        setup_check(session),
        {"type": "keys", "users": {"alice": {"user_key": {"ed25519": "x"}, "devices": []}}},
    )

    assert Notice(WAIT_FOR_APPROVAL) in events
    assert decided == [None] and not link.busy  # given up, in words, not sent
    assert session.of("pm") == [] and session.of("user_key_publish") == []
    with pytest.raises(NotApproved):
        link.encrypt("pm:alice:bob", ["alice", "bob"], "later", decided.append)


def test_a_message_typed_during_the_set_up_leaves_once_the_user_key_exists(link, session):
    link.logged_in()
    decided: list[Any] = []
    link.encrypt("room:plans", ["alice"], "first words", decided.append)

    answer(link, setup_check(session), {"type": "keys", "users": {}})
    answer(link, session.of("user_key_publish")[-1], {"type": "ok"})
    for query in session.of("keys_query")[2:]:  # the engine's own, before it shares a key
        answer(link, query, {"type": "keys", "users": {}})

    sends = session.of("send")
    assert len(sends) == 1 and decided == [sends[0]]
    assert "text" not in sends[0].message and "first words" not in str(sends[0].message)


def test_an_ack_while_offline_is_dropped_not_raised(link, session):
    session.online = False
    link._send({"type": "to_device_ack", "upto": 3})  # the queue is pushed again next login

    assert session.sent == []


def test_a_store_that_the_key_cannot_open_is_refused_with_what_to_do(session, tmp_path):
    E2ELink.open(session, tmp_path, SERVER, "alice", "DEV1")
    (tmp_path / "e2e_pickle.key").write_bytes(b"\x01" * 32)

    with pytest.raises(StoreError, match="restore"):
        E2ELink.open(session, tmp_path, SERVER, "alice", "DEV1")


def test_fetching_a_users_keys_says_when_they_have_come(link, session):
    link.fetch_keys("bob")
    query = session.of("keys_query")[-1]
    assert query.message["users"] == ["bob"]

    events = answer(link, query, {"type": "keys", "users": {"bob": {"devices": []}}})

    assert KeysFetched(("bob",)) in events


def test_a_set_up_check_lost_with_the_connection_keeps_the_typed_message_for_the_next_login(
    link, session
):
    link.logged_in()
    decided: list[Any] = []
    link.encrypt("room:plans", ["alice"], "typed offline", decided.append)
    check = setup_check(session)
    link.answered(
        RequestStatus(check.id, check.message, RequestState.FAILED, error="the connection dropped"),
        None,
    )
    assert decided == [] and link.busy  # not given up: nothing said it needs approval

    link.logged_in()  # back online: the check again
    answer(link, setup_check(session), {"type": "keys", "users": {}})
    answer(link, session.of("user_key_publish")[-1], {"type": "ok"})
    for query in session.of("keys_query"):
        if query.message["users"] == ["alice"]:
            answer(link, query, {"type": "keys", "users": {}})

    assert [s.message["room"] for s in session.of("send")] == ["plans"]
    assert decided == session.of("send")


def test_a_new_device_of_mine_is_announced_by_the_name_it_was_remembered_by(link, session):
    link.store.identity = UserIdentity.generate("alice")
    link.logged_in()
    phone = CryptoStore.create("alice", "PHONE1", 0.0)  # keys uploaded, nobody approved it
    own = next(r for r in session.of("keys_query") if r.message["users"] == ["alice"])
    mine = link.store.identity.sign_device(link.store.device.device_keys())
    entry = {
        "user_key": link.store.identity.published_by(link.store.device).to_wire(),
        "devices": [mine.to_wire(), phone.device.device_keys().to_wire()],
    }
    assert answer(link, own, {"type": "keys", "users": {"alice": entry}}) == [
        KeysFetched(("alice",))
    ]  # not yet: its name is asked for first

    listed = session.of("devices")[-1]
    devices = [{"device": "PHONE1", "name": "alice's phone", "created": "", "last_seen": ""}]
    events = answer(link, listed, {"type": "devices", "devices": devices})

    assert events == [OwnDeviceToApprove("PHONE1", "alice's phone")]
    assert "alice's phone (PHONE1)" in events[0].text and "/approve PHONE1" in events[0].text
