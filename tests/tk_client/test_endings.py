"""The reconnect policy as a table: every close code and cause, in every phase, without sockets.

Each row says what the session does after a connection ends, and why (the
guarantees at the top of ``tk_client/session.py``). ``test_session.py`` checks
the same rules through a real socket for the cases that matter most.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from chatproto.connection import LoginFailed, LoginRefused, RegisterFailed, State
from tk_client.endings import (
    Ask,
    Backoff,
    Cause,
    Decision,
    Next,
    Reached,
    after_end,
    after_hello,
    after_refusal,
    refusal_message,
)
from tk_client.events import KeyChanged, TrustRequired
from tk_client.known_servers import Trust, TrustCheck

ADDRESS = "ws://chat.example:8000"
H, G, L, IN = Reached.HANDSHAKE, Reached.GREETED, Reached.LOGGING_IN, Reached.LOGGED_IN
DROPPED = Cause.DROPPED


def end(how, reached, *, established, session_ended=None) -> Decision:
    return after_end(
        how,
        reached,
        session_ended=session_ended,
        established=established,
        address=ADDRESS,
        hello_timeout=10,
    )


# (how the connection ended, how far it got, logged in before) -> (next, words in the message)
ESTABLISHED_ROWS = [
    (1000, IN, Next.RETRY_NOW, "renewed"),
    (1000, G, Next.RETRY, "closed the connection"),  # 1000 means renewal only once logged in
    (4003, IN, Next.RETRY, "forged"),  # a bare 4003: the close frame is not authenticated
    (4001, IN, Next.RETRY, "(4001)"),  # a bare 4001 on an established session
    (4001, L, Next.RETRY, "(4001)"),
    (4008, IN, Next.RETRY_SLOW, "policy"),
    (4008, H, Next.RETRY_SLOW, "policy"),
    (4008, G, Next.RETRY_SLOW, "policy"),
    (4000, H, Next.RETRY, "handshake with ws://chat.example:8000 failed"),
    (4002, IN, Next.RETRY, "the server closed the connection"),
    (1005, IN, Next.RETRY, "the server closed the connection"),
    (1009, H, Next.RETRY, "during the handshake"),
    (DROPPED, IN, Next.RETRY, "the network connection dropped"),
    (DROPPED, H, Next.RETRY, "during the handshake"),
    (Cause.SILENT, IN, Next.RETRY, "stopped answering"),
    (Cause.NO_GREETING, H, Next.RETRY, "did not complete the handshake"),
    (Cause.NO_HELLO, H, Next.RETRY, "did not say hello within 10 seconds"),
    (Cause.BAD_HANDSHAKE, H, Next.RETRY, "handshake with"),
    (Cause.BAD_RECORD, H, Next.RETRY, "handshake with"),
    (Cause.BAD_RECORD, IN, Next.RETRY, "integrity check"),
    (Cause.BAD_LOGIN_ANSWER, L, Next.RETRY, "login answer was malformed"),
]


@pytest.mark.parametrize(("how", "reached", "next_", "words"), ESTABLISHED_ROWS)
def test_once_logged_in_nothing_but_session_ended_stops_the_session(how, reached, next_, words):
    decision = end(how, reached, established=True)

    assert decision.next is next_
    assert words in decision.message
    assert not decision.report  # retrying: the phase says it, no error box
    assert not decision.forget_password  # the password is needed to log in again


# Before the first login nothing is retried on its own: the user is told (report) or the
# login form simply stays (no words), and tries again.
FIRST_ROWS = [
    (4003, G, Next.WAIT, "forged", True),
    (4000, H, Next.WAIT, "handshake with", True),
    (4008, H, Next.WAIT, "refuses new connections", True),  # handshake rate limit
    (4008, G, Next.WAIT, "", False),  # the login deadline passed while the user typed
    (4008, L, Next.WAIT, "policy", False),
    (1000, G, Next.WAIT, "", False),
    (1005, G, Next.WAIT, "", False),
    (DROPPED, G, Next.WAIT, "", False),
    (DROPPED, L, Next.WAIT, "during login", True),
    (DROPPED, H, Next.WAIT, "during the handshake", True),
    (4002, L, Next.WAIT, "during login", True),
    (Cause.NO_HELLO, H, Next.WAIT, "Is it a chat server?", True),
    (Cause.NO_GREETING, H, Next.WAIT, "did not complete the handshake", True),
    (Cause.BAD_RECORD, G, Next.WAIT, "integrity check", True),
    (Cause.BAD_LOGIN_ANSWER, L, Next.WAIT, "login answer was malformed", True),
]


@pytest.mark.parametrize(("how", "reached", "next_", "words", "report"), FIRST_ROWS)
def test_before_the_first_login_the_user_decides(how, reached, next_, words, report):
    decision = end(how, reached, established=False)

    assert decision.next is next_
    assert words in decision.message
    assert decision.report is report
    assert decision.message or not report


def test_nothing_is_retried_on_its_own_before_the_first_login():
    retries = {Next.RETRY, Next.RETRY_NOW, Next.RETRY_SLOW}
    codes = [1000, 1005, 1009, *range(4000, 4010)]
    for how in [*codes, *Cause]:
        for reached in (H, G, L):
            assert end(how, reached, established=False).next not in retries, (how, reached)


def test_4001_before_the_first_login_forgets_the_password_and_waits():
    decision = end(4001, L, established=False)

    assert decision.next is Next.WAIT
    assert decision.forget_password
    assert "too many failed logins" in decision.message


@pytest.mark.parametrize("how", [4003, 1000, 4008, 4001, 4002, DROPPED, *Cause])
@pytest.mark.parametrize("established", [True, False])
def test_an_authenticated_session_ended_stops_whatever_way_the_connection_ends(how, established):
    decision = end(how, IN, established=established, session_ended="deactivated")

    assert decision.next is Next.STOP
    assert decision.reason == "deactivated"
    assert decision.message == "Your account was deactivated by an administrator."


def test_an_unknown_session_ended_reason_still_stops_with_general_words():
    decision = end(4003, IN, established=True, session_ended="something new")

    assert (decision.next, decision.reason) == (Next.STOP, "something new")
    assert decision.message == "The server ended your session."


def test_no_close_code_alone_stops_the_session():
    codes = [1000, 1005, 1009, *range(4000, 4010)]
    for how in [*codes, *Cause]:
        for reached in Reached:
            for established in (True, False):
                assert end(how, reached, established=established).next is not Next.STOP


@pytest.mark.parametrize(
    ("state", "reached"),
    [
        (State.AWAITING_HELLO, H),
        (State.AWAITING_TRUST, H),
        (State.AWAITING_GREETING, H),
        (State.AWAITING_LOGIN, G),
        (State.LOGGING_IN, L),
        (State.LOGGED_IN, IN),
    ],
)
def test_how_far_a_connection_got_comes_from_its_state(state, reached):
    assert Reached.of(state) is reached


# --- refused logins ------------------------------------------------------------------------


def refused(kind: type[LoginRefused], reason: str, retry_after=None, **fields) -> LoginRefused:
    message = {"type": "x", "ref": "login1", "reason": reason, **fields}
    return kind(message, reason, retry_after, False)


REFUSALS = [
    (refused(LoginFailed, "invalid_credentials"), "Wrong username or password."),
    (refused(LoginFailed, "otp_required"), "one-time code"),
    (refused(LoginFailed, "rate_limited", 42), "Try again in 42 seconds."),
    (refused(LoginFailed, "rate_limited", 1), "Try again in 1 second."),
    (refused(LoginFailed, "rate_limited"), "Try again later."),
    (refused(LoginFailed, "new_reason"), "The server refused the login."),
    (refused(RegisterFailed, "closed"), "does not accept new accounts"),
    (refused(RegisterFailed, "username_taken", message="pick another"), "pick another"),
    (refused(RegisterFailed, "rate_limited", 5), "Try again in 5 seconds."),
    (refused(RegisterFailed, "invalid_password"), "The server refused the request."),
    (refused(LoginRefused, "error", message="the database is down"), "the database is down"),
]


@pytest.mark.parametrize(("event", "words"), REFUSALS)
def test_refusals_are_told_in_the_users_words(event, words):
    assert words in refusal_message(event)


@pytest.mark.parametrize(
    ("event", "words"), [(e, w) for e, w in REFUSALS if e.reason != "otp_required"]
)
def test_a_first_login_refused_stays_connected_and_forgets_the_password(event, words):
    decision = after_refusal(event, established=False)

    assert decision.next is Next.STAY
    assert words in decision.message
    assert decision.forget_password


def test_a_reconnects_login_refused_for_server_trouble_is_retried_as_asked():
    limited = after_refusal(refused(LoginFailed, "rate_limited", 7), established=True)
    internal = LoginRefused(
        {"type": "error", "ref": "l", "code": "internal", "message": "try later"},
        "error",
        None,
        False,
    )
    trouble = after_refusal(internal, established=True)

    assert (limited.next, limited.at_least, limited.forget_password) == (Next.RETRY, 7.0, False)
    assert (trouble.next, trouble.at_least, trouble.forget_password) == (Next.RETRY, 0.0, False)


def test_a_reconnects_login_refused_for_the_password_stops_the_session():
    decision = after_refusal(refused(LoginFailed, "invalid_credentials"), established=True)

    assert decision.next is Next.STOP and decision.forget_password
    assert "Wrong username or password." in decision.message
    assert "Log in again" in decision.message


# --- the pin check -------------------------------------------------------------------------

SEEN = "SHA256:" + "A" * 43
OTHER = "SHA256:" + "B" * 43


def test_a_pinned_key_that_matches_goes_on_silently():
    assert (
        after_hello(TrustCheck(Trust.TRUSTED, ADDRESS, SEEN, SEEN), expected=None).decision is None
    )


def test_an_unknown_key_waits_for_the_user():
    verdict = after_hello(TrustCheck(Trust.UNKNOWN, ADDRESS, SEEN), expected=None)

    assert verdict.decision is not None and verdict.decision.next is Next.WAIT
    assert verdict.event == TrustRequired(ADDRESS, SEEN)
    assert not verdict.pin


def test_a_changed_key_stops_and_is_never_pinned():
    for expected in (None, SEEN, OTHER):
        verdict = after_hello(TrustCheck(Trust.CHANGED, ADDRESS, SEEN, OTHER), expected=expected)

        assert verdict.decision is not None and verdict.decision.next is Next.STOP
        assert verdict.event == KeyChanged(ADDRESS, OTHER, SEEN)
        assert not verdict.pin


def test_a_key_given_in_advance_pins_a_match_and_refuses_the_rest():
    match = after_hello(TrustCheck(Trust.UNKNOWN, ADDRESS, SEEN), expected=SEEN)
    differs = after_hello(TrustCheck(Trust.UNKNOWN, ADDRESS, SEEN), expected=OTHER)

    assert (match.decision, match.pin, match.event) == (None, True, None)
    assert differs.decision is not None and differs.decision.next is Next.STOP
    assert "Nothing was sent" in differs.decision.message
    assert differs.event == KeyChanged(ADDRESS, OTHER, SEEN) and not differs.pin


# --- delays --------------------------------------------------------------------------------


def test_the_delay_follows_the_decision_and_the_servers_wish():
    backoff = Backoff(initial=1, maximum=8, jitter=0, rng=random.Random(1))

    assert backoff.delay(Decision(Next.RETRY_NOW)) == 0
    assert backoff.delay(Decision(Next.RETRY_NOW, at_least=3)) == 3
    assert backoff.delay(Decision(Next.RETRY)) == 1
    assert backoff.delay(Decision(Next.RETRY)) == 2
    assert backoff.delay(Decision(Next.RETRY_SLOW)) == 8
    assert backoff.delay(Decision(Next.RETRY, at_least=30)) == 30


def test_the_table_does_no_io():
    source = (Path(__file__).parents[2] / "tk_client" / "endings.py").read_text("utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"socket", "threading", "websocket", "tkinter", "time", "queue"}


# --- PROTOCOL.md 3.4: the new endings, one-time codes, remembered devices ------------------------


@pytest.mark.parametrize(
    ("reason", "words", "forget_token"),
    [
        ("revoked", "signed out (revoked)", True),
        ("password_changed", "Log in with the new password", False),
        ("logged_out", "You logged out", True),
    ],
)
@pytest.mark.parametrize("how", [4003, DROPPED, 1000])
def test_the_new_session_ended_reasons_stop_with_words(how, reason, words, forget_token):
    decision = end(how, IN, established=True, session_ended=reason)

    assert decision.next is Next.STOP
    assert decision.reason == reason
    assert words in decision.message
    assert decision.forget_token is forget_token


def test_every_session_ended_reason_of_the_protocol_has_its_own_words():
    general = end(4003, IN, established=True, session_ended="something new").message
    for reason in ("deactivated", "ended_by_admin", "revoked", "password_changed", "logged_out"):
        assert end(4003, IN, established=True, session_ended=reason).message != general


@pytest.mark.parametrize("established", [False, True])
def test_otp_required_keeps_the_connection_and_the_password_and_asks_for_a_code(established):
    decision = after_refusal(refused(LoginFailed, "otp_required"), established=established)

    assert (decision.next, decision.ask) == (Next.STAY, Ask.OTP)
    assert not decision.forget_password
    assert not decision.forget_token


def test_a_refused_code_says_it_was_not_accepted():
    decision = after_refusal(
        refused(LoginFailed, "otp_required"), established=False, otp_given=True
    )

    assert "not accepted" in decision.message


@pytest.mark.parametrize("established", [False, True])
def test_a_refused_resume_forgets_the_token_and_asks_for_the_password(established):
    decision = after_refusal(
        refused(LoginFailed, "invalid_credentials"), established=established, resuming=True
    )

    assert (decision.next, decision.ask) == (Next.STAY, Ask.LOGIN)
    assert decision.forget_token and decision.forget_password
    assert "Log in with your password" in decision.message


def test_a_rate_limited_resume_keeps_the_token():
    first = after_refusal(refused(LoginFailed, "rate_limited", 9), established=False, resuming=True)
    again = after_refusal(refused(LoginFailed, "rate_limited", 9), established=True, resuming=True)

    assert not first.forget_token and first.ask is None
    assert (again.next, again.at_least, again.forget_token) == (Next.RETRY, 9.0, False)
