"""The session's side of PROTOCOL.md 3.4: remembered devices, resume, one-time codes, endings.

Against the in-process fake server (``fake_server.py``), which issues tokens
``token-<device>`` and takes the code in ``FakeServer.otp`` for two-factor login.
"""

from __future__ import annotations

import gc
import types

import pytest

from chatproto import crypto_utils
from tk_client.device_tokens import DeviceTokens
from tk_client.events import (
    LoggedIn,
    LoginNeeded,
    LoginRejected,
    OtpRequired,
    Phase,
    PhaseChanged,
    RequestState,
    RequestUpdate,
    Stopped,
)
from tk_client.known_servers import KnownServers
from tk_client.session import NotConnected
from tk_client.sign_in import SignIn

from .fake_server import FakeServer
from .helpers import make_session, wait_until

PASSWORD = "alice-pw-long"


@pytest.fixture(scope="module")
def server_key():
    return crypto_utils.generate_private_key()


@pytest.fixture
def server(server_key):
    fake = FakeServer(server_key, {"alice": PASSWORD, "bob": "bob-pw-long"}).start()
    yield fake
    fake.stop()


@pytest.fixture
def known_path(tmp_path, server):
    path = tmp_path / "config" / "known_servers"
    KnownServers(path).trust(server.address, server.fingerprint)
    return path


@pytest.fixture
def tokens(known_path):
    return DeviceTokens(known_path.parent)


@pytest.fixture
def sessions():
    opened = []
    yield opened
    for session in opened:
        session.close()


def new_session(server, known_path, sessions):
    session, log = make_session(server.address, known_path)
    sessions.append(session)
    return session, log


def strings_reachable_from(root: object) -> set[str]:
    """Every str reachable from ``root`` through the objects it owns (not modules, classes,
    functions' globals), to prove a secret is no longer held."""
    seen: set[int] = set()
    found: set[str] = set()
    todo = [root]
    skip = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.add(obj)
            continue
        if isinstance(obj, bytes | int | float):
            continue
        todo.extend(gc.get_referents(obj))
    return found


# --- remember and resume -------------------------------------------------------------------------


def test_login_with_remember_stores_the_token_and_drops_the_password(
    server, known_path, tokens, sessions
):
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD, remember="laptop")
    logged = log.wait_for(LoggedIn)

    stored = tokens.get(server.fingerprint, "alice")
    assert stored is not None and stored.device == logged.device
    assert stored.token == f"token-{stored.device}"
    assert server.devices[stored.device]["name"] == "laptop"
    assert server.requests_of("login")[-1]["remember"] == "laptop"
    assert PASSWORD not in strings_reachable_from(session)


def test_login_without_remember_keeps_the_password_for_reconnects(
    server, known_path, tokens, sessions
):
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD)
    log.wait_for(LoggedIn)
    server.drop_all()
    log.wait_for(LoggedIn, lambda e: e.again)

    assert tokens.get(server.fingerprint, "alice") is None
    assert len(server.requests_of("login")) == 2
    assert server.requests_of("resume") == []


def test_a_remembered_session_reconnects_with_resume(server, known_path, sessions):
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD, remember="laptop")
    first = log.wait_for(LoggedIn)
    server.drop_all()
    again = log.wait_for(LoggedIn, lambda e: e.again)

    assert len(server.requests_of("login")) == 1
    resumed = server.requests_of("resume")
    assert [(r["username"], r["token"]) for r in resumed] == [("alice", f"token-{first.device}")]
    assert again.device == first.device


def test_resume_at_start_logs_in_without_a_password(server, known_path, tokens, sessions):
    tokens.put(server.fingerprint, "alice", "dev9", "token-dev9")
    server.devices["dev9"] = {
        "user": "alice",
        "name": "old",
        "token": "token-dev9",
        "created": "x",
        "last_seen": "x",
    }
    session, log = new_session(server, known_path, sessions)
    assert session.stored_device("alice")
    session.resume("alice")
    logged = log.wait_for(LoggedIn)

    assert (logged.username, logged.device) == ("alice", "dev9")
    assert server.requests_of("login") == []


def test_a_refused_resume_forgets_the_token_and_asks_for_the_password(
    server, known_path, tokens, sessions
):
    tokens.put(server.fingerprint, "alice", "dev9", "token-revoked")
    session, log = new_session(server, known_path, sessions)
    session.resume("alice")
    needed = log.wait_for(LoginNeeded)

    assert "Log in with your password" in needed.message
    assert tokens.get(server.fingerprint, "alice") is None
    assert session.phase is Phase.CONNECTED
    session.login("alice", PASSWORD)  # on the same connection
    log.wait_for(LoggedIn)


def test_resume_without_a_stored_token_asks_for_the_password(server, known_path, sessions):
    session, log = new_session(server, known_path, sessions)
    session.resume("alice")
    needed = log.wait_for(LoginNeeded)

    assert "alice" in needed.message
    assert server.requests_of("resume") == []


def test_a_token_is_only_sent_to_the_server_that_issued_it(server, known_path, tokens, sessions):
    tokens.put("SHA256:" + "Z" * 43, "alice", "dev1", "token-for-another-server")
    session, log = new_session(server, known_path, sessions)
    session.resume("alice")
    log.wait_for(LoginNeeded)

    assert server.requests_of("resume") == []


# --- one-time codes ------------------------------------------------------------------------------


def test_otp_required_keeps_the_password_then_answer_otp_logs_in(server, known_path, sessions):
    server.otp["alice"] = "654321"
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD)
    asked = log.wait_for(OtpRequired)
    assert (asked.username, asked.retry) == ("alice", False)
    assert not log.of(LoginRejected)

    session.answer_otp("000000")
    again = log.wait_for(OtpRequired)
    assert again.retry
    session.answer_otp(" 654321 ")
    logged = log.wait_for(LoggedIn)

    assert logged.with_otp
    assert [r.get("otp") for r in server.requests_of("login")] == [None, "000000", "654321"]


def test_a_code_given_with_the_login_is_sent_once(server, known_path, sessions):
    server.otp["alice"] = "654321"
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD, otp="654321")
    log.wait_for(LoggedIn)
    server.drop_all()
    log.wait_for(OtpRequired)  # a reconnect without remember needs a fresh code

    assert [r.get("otp") for r in server.requests_of("login")] == ["654321", None]


def test_a_remembered_device_reconnects_without_a_code(server, known_path, sessions):
    server.otp["alice"] = "654321"
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD, otp="654321", remember="laptop")
    log.wait_for(LoggedIn)
    server.drop_all()
    log.wait_for(LoggedIn, lambda e: e.again)

    assert len(server.requests_of("resume")) == 1


def test_answer_otp_without_a_waiting_login_says_so(server, known_path, sessions):
    session, _ = new_session(server, known_path, sessions)
    with pytest.raises(NotConnected):
        session.answer_otp("123456")


def test_login_ok_tells_that_two_factor_login_is_required(server_key, known_path, sessions):
    fake = FakeServer(server_key, {"alice": PASSWORD}, require_2fa=True).start()
    KnownServers(known_path).trust(fake.address, fake.fingerprint)
    try:
        session, log = make_session(fake.address, known_path)
        sessions.append(session)
        session.login("alice", PASSWORD)
        logged = log.wait_for(LoggedIn)
        assert logged.otp_enrolment_required
    finally:
        fake.stop()


# --- endings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "words", "token_kept"),
    [
        ("revoked", "signed out (revoked)", False),
        ("password_changed", "password was changed", True),
        ("logged_out", "You logged out", False),
    ],
)
def test_new_endings_stop_without_reconnecting_and_say_why(
    server, known_path, tokens, sessions, reason, words, token_kept
):
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD, remember="laptop")
    log.wait_for(LoggedIn)
    server.end_sessions("alice", reason)
    stopped = log.wait_for(Stopped)

    assert stopped.reason == reason
    assert words in stopped.message
    assert (tokens.get(server.fingerprint, "alice") is not None) is token_kept
    assert session.wait_stopped(5)
    assert server.logins == 1
    assert not any(
        e.phase is Phase.RECONNECTING for e in log.of(PhaseChanged) if e.retry_at is not None
    )


def test_log_out_forgets_the_token_at_once_and_ends_the_session(
    server, known_path, tokens, sessions
):
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD, remember="laptop")
    logged = log.wait_for(LoggedIn)
    session.log_out()

    assert tokens.get(server.fingerprint, "alice") is None
    stopped = log.wait_for(Stopped)
    assert stopped.reason == "logged_out"
    wait_until(lambda: logged.device not in server.devices)


def test_log_out_offline_is_refused_and_keeps_the_token(server, known_path, tokens, sessions):
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD, remember="laptop")
    log.wait_for(LoggedIn)
    server.stop()
    log.wait_for(PhaseChanged, lambda e: e.phase is Phase.RECONNECTING)

    with pytest.raises(NotConnected):
        session.log_out()
    assert tokens.get(server.fingerprint, "alice") is not None


def test_after_a_password_change_reconnects_use_the_new_password(server, known_path, sessions):
    session, log = new_session(server, known_path, sessions)
    session.login("alice", PASSWORD)
    log.wait_for(LoggedIn)
    session.request("change_password", durable=False, password=PASSWORD, new_password="fresh-pw-1")
    log.wait_for(RequestUpdate, lambda e: e.request.state is RequestState.DONE)
    server.drop_all()
    log.wait_for(LoggedIn, lambda e: e.again)

    assert [r["password"] for r in server.requests_of("login")] == [PASSWORD, "fresh-pw-1"]


def test_sign_in_never_shows_a_password_or_code_in_its_repr(tokens):
    sign_in = SignIn(tokens)
    sign_in.use_password("alice", PASSWORD, otp="654321", remember="laptop")

    assert PASSWORD not in repr(sign_in) and "654321" not in repr(sign_in)
    assert "laptop" in repr(sign_in)


def test_a_code_needs_a_password_login_waiting_for_it(tokens):
    sign_in = SignIn(tokens)
    assert not sign_in.give_otp("123456")
    sign_in.use_token("alice")
    assert not sign_in.give_otp("123456")
    sign_in.use_password("alice", PASSWORD)
    assert sign_in.give_otp("123456")
