"""The session against the real server (daphne in a subprocess, see tests/live_server.py)."""

from __future__ import annotations

import pytest

from tests.protocol_client.e2e_body import e2e_body
from tk_client.address import parse_address
from tk_client.events import (
    Greeted,
    KeyChanged,
    LoggedIn,
    LoginRejected,
    Phase,
    PhaseChanged,
    Received,
    RequestState,
    RequestUpdate,
    Stopped,
    TrustRequired,
)
from tk_client.known_servers import KnownServers

from .helpers import make_session

OTHER_KEY = "SHA256:" + "Z" * 43


@pytest.fixture(scope="module")
def server(live_server):
    for name in ("alice", "bob", "carol", "dave"):
        live_server.create_user(name, f"{name}-password")
    return live_server


@pytest.fixture
def address(server):
    return parse_address(server.url)


@pytest.fixture
def known_path(tmp_path):
    return tmp_path / "known_servers"


@pytest.fixture
def connect(server, address, known_path):
    """``connect("alice")``: a logged-in session on a trusted server, closed after the test;
    ``remember``: as a new device of that name (``session.device``), for private messages."""
    opened = []

    def connect_(name: str, remember: str | None = None, **kwargs):
        session, log = make_session(
            address, known_path, expected_fingerprint=server.fingerprint, **kwargs
        )
        opened.append(session)
        session.login(name, f"{name}-password", remember=remember)
        log.wait_for(LoggedIn)
        log.wait_for(Received, lambda e: e.message["type"] == "users")
        return session, log

    yield connect_
    for session in opened:
        session.close()


def is_done(request):
    return lambda e: e.request.id == request.id and e.request.state is RequestState.DONE


# --- chatting --------------------------------------------------------------------------------


def test_two_clients_chat_in_the_lobby(connect):
    alice, alice_log = connect("alice")
    bob, bob_log = connect("bob")

    request = alice.request("send", room="lobby", text="hi bob")
    ack = alice_log.wait_for(RequestUpdate, is_done(request))
    got = bob_log.wait_for(Received, lambda e: e.message["type"] == "message")

    assert got.message["from"] == "alice" and got.message["text"] == "hi bob"
    assert got.message["msg_id"] == ack.answer["msg_id"]

    reply = bob.request("send", room="lobby", text="hello alice")
    bob_log.wait_for(RequestUpdate, is_done(reply))
    back = alice_log.wait_for(
        Received, lambda e: e.message["type"] == "message" and e.message["from"] == "bob"
    )
    assert back.message["text"] == "hello alice"


def test_private_message_reaches_only_the_recipient(connect):
    alice, alice_log = connect("alice", remember="laptop")
    _bob, bob_log = connect("bob")
    carol, carol_log = connect("carol")

    sealed = e2e_body(alice.device, "just between us")
    request = alice.request("pm", to="bob", e2e=sealed)
    alice_log.wait_for(RequestUpdate, is_done(request))
    got = bob_log.wait_for(Received, lambda e: e.message["type"] == "private")
    marker = carol.request("ping")
    carol_log.wait_for(RequestUpdate, is_done(marker))

    assert (got.message["from"], got.message["to"], got.message["e2e"]) == ("alice", "bob", sealed)
    assert not [
        e for e in carol_log.seen if isinstance(e, Received) and e.message["type"] == "private"
    ]


def test_history_pages_come_back_in_order(connect):
    alice, alice_log = connect("alice")
    for n in range(3):
        done = alice.request("send", room="lobby", text=f"history {n}")
        alice_log.wait_for(RequestUpdate, is_done(done))

    request = alice.request("history", room="lobby", limit=2)
    answer = alice_log.wait_for(RequestUpdate, is_done(request)).answer

    assert [m["text"] for m in answer["messages"]] == ["history 1", "history 2"]
    assert answer["has_more"] is True


# --- outages ---------------------------------------------------------------------------------


def test_after_a_server_restart_what_was_typed_meanwhile_is_sent(server, connect):
    alice, alice_log = connect("alice")
    bob, bob_log = connect("bob")

    server.stop()
    alice_log.wait_for(PhaseChanged, lambda e: e.phase is Phase.RECONNECTING)
    queued = alice.request("send", room="lobby", text="typed during the outage")
    assert queued.state is RequestState.QUEUED
    server.start()

    assert alice_log.wait_for(LoggedIn).again
    done = alice_log.wait_for(RequestUpdate, is_done(queued))
    assert done.answer["type"] == "ack"
    bob_log.wait_for(LoggedIn)
    history = bob.request("history", room="lobby", limit=5)
    answer = bob_log.wait_for(RequestUpdate, is_done(history)).answer
    assert "typed during the outage" in [m["text"] for m in answer["messages"]]


def test_deactivated_account_ends_the_session_without_reconnecting(server, connect):
    dave, dave_log = connect("dave")

    server.set_active("dave", False)
    try:
        stopped = dave_log.wait_for(Stopped)
    finally:
        server.set_active("dave", True)

    assert stopped.reason == "deactivated"
    assert stopped.message == "Your account was deactivated by an administrator."
    assert dave.phase is Phase.STOPPED


def test_wrong_password_is_rejected_with_a_clear_message(address, known_path, server):
    session, log = make_session(address, known_path, expected_fingerprint=server.fingerprint)
    try:
        session.login("alice", "not the password")
        rejected = log.wait_for(LoginRejected)
    finally:
        session.close()
    assert (rejected.reason, rejected.message) == (
        "invalid_credentials",
        "Wrong username or password.",
    )


def test_registration_logs_the_new_user_in(address, known_path, server):
    session, log = make_session(address, known_path, expected_fingerprint=server.fingerprint)
    try:
        session.start()
        assert log.wait_for(Greeted).greeting["registration"] is True
        session.login("erin", "a long enough passphrase 42", register=True)
        assert log.wait_for(LoggedIn).username == "erin"
    finally:
        session.close()


# --- pinning -----------------------------------------------------------------------------------


def test_first_use_shows_the_servers_fingerprint_then_pins_it(address, known_path, server):
    session, log = make_session(address, known_path)
    try:
        session.login("alice", "alice-password")
        asked = log.wait_for(TrustRequired)
        assert asked.fingerprint == server.fingerprint
        assert not [e for e in log.seen if isinstance(e, Greeted)]  # no key sent yet

        session.trust(asked.fingerprint)
        log.wait_for(LoggedIn)
    finally:
        session.close()
    assert KnownServers(known_path).get(address) == server.fingerprint


def test_pinned_key_that_matches_connects_without_asking(address, known_path, server):
    KnownServers(known_path).trust(address, server.fingerprint)
    session, log = make_session(address, known_path)
    try:
        session.login("alice", "alice-password")
        log.wait_for(LoggedIn)
    finally:
        session.close()
    assert not log.of(TrustRequired)


def test_pinned_key_that_differs_is_refused(address, known_path, server):
    KnownServers(known_path).trust(address, OTHER_KEY)
    session, log = make_session(address, known_path)
    try:
        session.login("alice", "alice-password")
        changed = log.wait_for(KeyChanged)
        log.wait_for(Stopped)
    finally:
        session.close()
    assert (changed.expected, changed.received) == (OTHER_KEY, server.fingerprint)
    assert not log.of(Greeted) and not log.of(LoggedIn)
    assert KnownServers(known_path).get(address) == OTHER_KEY
