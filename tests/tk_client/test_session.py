"""The session's contract, against an in-process server that fails on command.

The same behaviours against the real Django server are in ``test_session_live.py``;
here the failure paths (drops mid-request, close codes, silent servers) are
produced deterministically.
"""

from __future__ import annotations

import random
import socket

import pytest

from chatproto import crypto_utils
from tk_client.address import parse_address
from tk_client.controller import ChatController
from tk_client.events import (
    ConnectFailed,
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
from tk_client.session import Backoff, NotConnected

from .fake_server import FakeServer
from .helpers import make_session, wait_until


@pytest.fixture(scope="module")
def server_key():
    return crypto_utils.generate_private_key()


@pytest.fixture(scope="module")
def other_key():
    return crypto_utils.generate_private_key()


@pytest.fixture
def server(server_key):
    fake = FakeServer(server_key, {"alice": "alice-pw", "bob": "bob-pw"}).start()
    yield fake
    fake.stop()


@pytest.fixture
def known_path(tmp_path):
    return tmp_path / "config" / "known_servers"


@pytest.fixture
def trusted(server, known_path):
    KnownServers(known_path).trust(server.address, server.fingerprint)
    return known_path


@pytest.fixture
def sessions():
    opened = []
    yield opened
    for session in opened:
        session.close()


def logged_in(server, known_path, sessions, user="alice", **kwargs):
    session, log = make_session(server.address, known_path, **kwargs)
    sessions.append(session)
    session.login(user, f"{user}-pw")
    log.wait_for(LoggedIn)
    return session, log


# --- trust on first use ------------------------------------------------------------------------


def test_first_contact_asks_the_user_before_sending_the_key(server, known_path, sessions):
    session, log = make_session(server.address, known_path)
    sessions.append(session)
    session.login("alice", "alice-pw")

    asked = log.wait_for(TrustRequired)

    assert asked.fingerprint == server.fingerprint
    assert asked.address == f"ws://127.0.0.1:{server.port}"
    assert server.handshakes == 0 and server.requests == []
    assert not known_path.exists()

    session.trust(asked.fingerprint)
    log.wait_for(LoggedIn)
    assert KnownServers(known_path).get(server.address) == server.fingerprint


def test_changed_key_is_refused_and_nothing_is_sent(server, known_path, sessions, other_key):
    old = crypto_utils.fingerprint(other_key)
    KnownServers(known_path).trust(server.address, old)
    session, log = make_session(server.address, known_path)
    sessions.append(session)
    session.login("alice", "alice-pw")

    changed = log.wait_for(KeyChanged)
    stopped = log.wait_for(Stopped)

    assert (changed.expected, changed.received) == (old, server.fingerprint)
    assert old in changed.message and server.fingerprint in changed.message
    assert "--forget-server ws://127.0.0.1:" in changed.message
    assert "manage.py server_key" in changed.message
    assert "changed" in stopped.message.lower()
    assert server.handshakes == 0 and server.requests == []
    assert KnownServers(known_path).get(server.address) == old  # never replaced quietly
    assert session.phase is Phase.STOPPED


def test_expected_fingerprint_trusts_a_first_seen_server(server, known_path, sessions):
    session, log = make_session(server.address, known_path, expected_fingerprint=server.fingerprint)
    sessions.append(session)
    session.login("alice", "alice-pw")

    log.wait_for(LoggedIn)
    assert not log.of(TrustRequired)
    assert KnownServers(known_path).get(server.address) == server.fingerprint


def test_expected_fingerprint_that_differs_is_refused(server, known_path, sessions, other_key):
    wrong = crypto_utils.fingerprint(other_key)
    session, log = make_session(server.address, known_path, expected_fingerprint=wrong)
    sessions.append(session)
    session.login("alice", "alice-pw")

    log.wait_for(KeyChanged)
    stopped = log.wait_for(Stopped)
    assert wrong in stopped.message and server.fingerprint in stopped.message
    assert server.handshakes == 0
    assert KnownServers(known_path).get(server.address) is None


def test_websocket_names_the_server_as_origin_without_compression(server, trusted, sessions):
    logged_in(server, trusted, sessions)

    assert server.origins == [f"http://127.0.0.1:{server.port}"]
    assert server.extensions == [None]


# --- greeting and login ------------------------------------------------------------------------


def test_greeting_arrives_before_any_login(server, trusted, sessions):
    session, log = make_session(server.address, trusted)
    sessions.append(session)
    session.start()

    greeted = log.wait_for(Greeted)

    assert greeted.greeting["registration"] is False
    assert greeted.fingerprint == server.fingerprint
    assert server.requests == []


def test_wrong_password_is_reported_and_the_next_try_succeeds(server, trusted, sessions):
    session, log = make_session(server.address, trusted)
    sessions.append(session)
    session.login("alice", "wrong")

    rejected = log.wait_for(LoginRejected)
    assert rejected.reason == "invalid_credentials"
    assert rejected.message == "Wrong username or password."

    session.login("alice", "alice-pw")
    assert log.wait_for(LoggedIn).username == "alice"
    assert server.handshakes == 1  # the same connection


def test_rate_limited_login_says_how_long_to_wait(server, trusted, sessions):
    server.login_answer = {"type": "login_failed", "reason": "rate_limited", "retry_after": 42}
    session, log = make_session(server.address, trusted)
    sessions.append(session)
    session.login("alice", "alice-pw")

    rejected = log.wait_for(LoginRejected)

    assert (rejected.reason, rejected.retry_after) == ("rate_limited", 42)
    assert rejected.message == "Too many failed attempts. Try again in 42 seconds."


def test_rate_limited_login_after_a_reconnect_waits_as_asked(server, trusted, sessions):
    backoff = RecordingBackoff()
    _session, log = logged_in(server, trusted, sessions, backoff=backoff)
    server.login_answer = {"type": "login_failed", "reason": "rate_limited", "retry_after": 1}

    server.drop_all()
    waiting = log.wait_for(PhaseChanged, lambda e: "Try again in 1 second." in e.detail)
    server.login_answer = None

    assert waiting.phase is Phase.RECONNECTING and waiting.retry_at is not None
    assert log.wait_for(LoggedIn).again


def test_internal_error_on_a_reconnects_login_is_retried(server, trusted, sessions):
    backoff = RecordingBackoff()
    session, log = logged_in(server, trusted, sessions, backoff=backoff)
    server.login_answer = {"type": "error", "code": "internal", "message": "database restarting"}

    server.drop_all()
    waiting = log.wait_for(PhaseChanged, lambda e: "database restarting" in e.detail)
    server.login_answer = None

    assert waiting.phase is Phase.RECONNECTING and waiting.retry_at is not None
    assert log.wait_for(LoggedIn).again
    assert session.has_password and not log.of(Stopped)


def test_register_where_registration_is_closed_says_so(server, trusted, sessions):
    session, log = make_session(server.address, trusted)
    sessions.append(session)
    session.login("carol", "carol-pw-123", register=True)

    rejected = log.wait_for(LoginRejected)
    assert rejected.registering and rejected.reason == "closed"
    assert "does not accept new accounts" in rejected.message


def test_password_is_not_in_the_session_repr(server, trusted, sessions):
    session, _log = logged_in(server, trusted, sessions)

    assert "alice-pw" not in repr(session)
    assert "alice-pw" not in repr(session.__dict__)


def test_unreachable_server_is_explained(known_path, sessions):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session, log = make_session(parse_address(f"127.0.0.1:{port}"), known_path)
    sessions.append(session)
    session.login("alice", "alice-pw")

    failed = log.wait_for(ConnectFailed)
    assert "connection refused" in failed.message
    assert f"ws://127.0.0.1:{port}" in failed.message
    assert log.wait_for(PhaseChanged, lambda e: e.phase is Phase.IDLE)


# --- requests and answers ----------------------------------------------------------------------


def test_request_made_before_login_is_sent_after_it(server, trusted, sessions):
    session, log = make_session(server.address, trusted)
    sessions.append(session)
    queued = session.request("send", room="lobby", text="early bird")
    assert queued.state is RequestState.QUEUED

    session.login("alice", "alice-pw")
    done = log.wait_for(RequestUpdate, lambda e: e.request.state is RequestState.DONE)

    assert done.request.id == queued.id
    assert done.answer["type"] == "ack" and done.answer["ref"] == queued.id
    assert [m["text"] for m in server.messages] == ["early bird"]


def test_answers_are_matched_by_ref_and_pushes_pass_through(server, trusted, sessions):
    session, log = logged_in(server, trusted, sessions)

    request = session.request("send", room="lobby", text="hello")
    done = log.wait_for(RequestUpdate, lambda e: e.request.state is RequestState.DONE)
    push = log.wait_for(Received, lambda e: e.message["type"] == "message")

    assert done.request.id == request.id and done.answer["msg_id"] == push.message["msg_id"]
    assert push.message["text"] == "hello"


def test_error_answer_fails_the_request_with_the_servers_words(server, trusted, sessions):
    session, log = logged_in(server, trusted, sessions)

    request = session.request("pm", to="bob", text="hi")  # plain text, as an old client sent
    failed = log.wait_for(RequestUpdate, lambda e: e.request.state is RequestState.FAILED)

    assert failed.request.id == request.id
    assert (failed.request.code, failed.request.error) == (
        "e2e_required",
        "this conversation is end-to-end encrypted; update your client",
    )
    assert not failed.request.uncertain


def test_any_rate_limited_request_says_how_long_to_wait_in_both_clients(server, trusted, sessions):
    # PROTOCOL.md revision 1.1: error rate_limited carries retry_after for any request; the
    # controller that both clients share shows it in words (chatproto.wording.try_again).
    server.refusals["send"] = {"code": "rate_limited", "message": "too many", "retry_after": 90}
    server.refusals["join"] = {"code": "rate_limited", "message": "too many", "retry_after": 3}
    session, log = logged_in(server, trusted, sessions)
    controller = ChatController(session, autoload_history=False)
    controller.handle(
        LoggedIn(
            "alice",
            [{"name": "lobby", "private": False, "owner": None, "members": ["alice"]}],
            again=False,
        )
    )

    controller.submit("hello")
    controller.submit("/join dev")
    for _ in range(2):
        controller.handle(
            log.wait_for(RequestUpdate, lambda e: e.request.state is RequestState.FAILED)
        )
    server.push(
        "alice", {"type": "error", "code": "rate_limited", "message": "flood", "retry_after": 130}
    )
    controller.handle(log.wait_for(Received, lambda e: e.message["type"] == "error"))

    lobby = controller.conversation(controller.current).messages
    sent = next(m for m in lobby if m.own)
    assert sent.error == "too many; try again in 90 seconds."
    notices = [m.text for m in lobby if m.notice]
    assert "Could not join #dev: too many; try again in 3 seconds." in notices
    assert "The server says: flood; try again in 3 minutes." in notices


def test_connection_bound_messages_refuse_when_offline(server, trusted, sessions):
    session, _log = make_session(server.address, trusted)
    sessions.append(session)

    with pytest.raises(NotConnected):
        session.send_chunk(b"\0" * 16, 0, b"data")
    with pytest.raises(NotConnected):
        session.request("file_offer", durable=False, to="bob")


# --- outages -----------------------------------------------------------------------------------


def test_text_typed_during_an_outage_is_sent_after_the_reconnect(server, trusted, sessions):
    session, log = logged_in(server, trusted, sessions)
    server.stop()
    log.wait_for(PhaseChanged, lambda e: e.phase is Phase.RECONNECTING)

    queued = session.request("send", room="lobby", text="typed while offline")
    assert queued.state is RequestState.QUEUED
    server.start()

    again = log.wait_for(LoggedIn)
    done = log.wait_for(RequestUpdate, lambda e: e.request.id == queued.id and e.answer)

    assert again.again is True
    assert done.request.state is RequestState.DONE
    assert [m["text"] for m in server.messages] == ["typed while offline"]
    assert server.logins == 2


def test_message_on_the_wire_when_the_connection_drops_is_marked_uncertain(
    server, trusted, sessions
):
    session, log = logged_in(server, trusted, sessions)
    server.hold_answers.set()
    request = session.request("send", room="lobby", text="in flight")
    log.wait_for(RequestUpdate, lambda e: e.request.state is RequestState.SENT)
    wait_until(lambda: server.requests_of("send"))

    server.hold_answers.clear()
    server.drop_all()
    failed = log.wait_for(RequestUpdate, lambda e: e.request.state is RequestState.FAILED)
    log.wait_for(LoggedIn)

    assert failed.request.id == request.id and failed.request.uncertain
    assert "may or may not have been delivered" in failed.request.error
    assert len(server.requests_of("send")) == 1  # never sent twice


def test_idempotent_request_is_sent_again_after_a_drop(server, trusted, sessions):
    session, log = logged_in(server, trusted, sessions)
    server.hold_answers.set()
    request = session.request("history", room="lobby")
    wait_until(lambda: server.requests_of("history"))

    server.hold_answers.clear()
    server.drop_all()
    done = log.wait_for(RequestUpdate, lambda e: e.request.id == request.id and e.answer)

    assert done.answer["type"] == "history"
    assert len(server.requests_of("history")) == 2


def test_session_ended_by_the_server_is_not_retried(server, trusted, sessions):
    session, log = logged_in(server, trusted, sessions)

    server.close_all(4003, before={"type": "session_ended", "reason": "deactivated"})
    stopped = log.wait_for(Stopped)

    assert stopped.reason == "deactivated"
    assert stopped.message == "Your account was deactivated by an administrator."
    assert session.wait_stopped(10)
    assert server.logins == 1


def test_bare_4003_close_is_an_ordinary_disconnection(server, trusted, sessions):
    """A close frame is not authenticated: a forged 4003 must not end the session for good."""
    backoff = RecordingBackoff()
    session, log = logged_in(server, trusted, sessions, backoff=backoff)

    server.close_all(4003)
    reconnecting = log.wait_for(PhaseChanged, lambda e: e.retry_at is not None)
    again = log.wait_for(LoggedIn)

    assert again.again
    assert reconnecting.phase is Phase.RECONNECTING
    assert "4003" in reconnecting.detail and "forged" in reconnecting.detail
    assert backoff.calls == ["next"]
    assert not log.of(Stopped)
    assert session.phase is Phase.ONLINE
    assert server.logins == 2


def test_session_ended_then_a_dropped_connection_still_stops(server, trusted, sessions):
    """Once the encrypted session_ended is in, how the connection then ends does not matter."""
    session, log = logged_in(server, trusted, sessions)

    server.push("alice", {"type": "session_ended", "reason": "ended_by_admin"})
    server.drop_all()
    stopped = log.wait_for(Stopped)

    assert stopped.reason == "ended_by_admin"
    assert stopped.message == "An administrator ended your session."
    assert session.wait_stopped(10)
    assert server.logins == 1


def test_bare_4001_on_an_established_session_is_retried(server, trusted, sessions):
    """4001 follows an encrypted login_failed; without one it may be forged."""
    session, log = logged_in(server, trusted, sessions)

    server.close_all(4001)

    assert log.wait_for(LoggedIn).again
    assert not log.of(Stopped)
    assert session.has_password


def test_close_1000_after_the_record_limit_reconnects(server, trusted, sessions):
    _session, log = logged_in(server, trusted, sessions)

    server.close_all(1000)

    assert log.wait_for(LoggedIn).again
    assert server.logins == 2


class RecordingBackoff(Backoff):
    def __init__(self) -> None:
        super().__init__(initial=0.01, maximum=0.05)
        self.calls: list[str] = []

    def next(self) -> float:
        self.calls.append("next")
        return super().next()

    def longest(self) -> float:
        self.calls.append("longest")
        return super().longest()


def test_policy_close_is_retried_only_at_the_longest_delay(server, trusted, sessions):
    backoff = RecordingBackoff()
    _session, log = logged_in(server, trusted, sessions, backoff=backoff)

    server.close_all(4008)
    log.wait_for(LoggedIn)

    assert backoff.calls == ["longest"]


def test_a_dropped_connection_backs_off_then_logs_in_again(server, trusted, sessions):
    backoff = RecordingBackoff()
    _session, log = logged_in(server, trusted, sessions, backoff=backoff)

    server.drop_all()
    reconnecting = log.wait_for(PhaseChanged, lambda e: e.retry_at is not None)
    log.wait_for(LoggedIn)

    assert reconnecting.phase is Phase.RECONNECTING
    assert "dropped" in reconnecting.detail or "closed" in reconnecting.detail
    assert backoff.calls == ["next"]


def test_password_rejected_on_reconnect_stops_the_session(server, trusted, sessions):
    session, log = logged_in(server, trusted, sessions)
    server.users["alice"] = "changed by the admin"

    server.drop_all()
    stopped = log.wait_for(Stopped)

    assert "Wrong username or password." in stopped.message
    assert "Log in again" in stopped.message
    assert not session.has_password


def test_silent_server_is_detected_by_keepalive(server, trusted, sessions):
    _session, log = logged_in(server, trusted, sessions, keepalive=0.3)
    server.hold_answers.set()  # pings go unanswered

    log.wait_for(PhaseChanged, lambda e: e.phase is Phase.RECONNECTING and e.retry_at)
    server.hold_answers.clear()

    assert log.wait_for(LoggedIn).again


def test_an_unanswered_ping_is_a_drop_after_the_answer_wait_not_a_second_keepalive(
    server, trusted, sessions
):
    # Idle for 2 s, then the ping goes unanswered: the drop comes 0.2 s later, long before
    # the 2 s more that waiting a whole keepalive again would take.
    _session, log = logged_in(server, trusted, sessions, keepalive=2.0, answer_wait=0.2)
    server.hold_answers.set()

    log.wait_for(PhaseChanged, lambda e: e.phase is Phase.RECONNECTING, timeout=3.5)


def test_close_fails_what_was_not_sent(server, trusted, sessions):
    session, log = logged_in(server, trusted, sessions)
    server.stop()
    log.wait_for(PhaseChanged, lambda e: e.phase is Phase.RECONNECTING)
    request = session.request("send", room="lobby", text="never delivered")

    session.close()

    failed = log.wait_for(RequestUpdate, lambda e: e.request.id == request.id)
    assert failed.request.state is RequestState.FAILED
    assert "not sent" in failed.request.error
    assert session.phase is Phase.STOPPED


# --- backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum_with_bounded_jitter():
    backoff = Backoff(initial=0.5, maximum=30.0, jitter=0.2, rng=random.Random(7))

    delays = [backoff.next() for _ in range(10)]

    bases = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    backoff.reset()
    assert backoff.next() <= 0.6
