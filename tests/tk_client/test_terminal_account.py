"""The terminal client's 3.4 side: --remember, token reuse, codes, and the account commands.

Each test runs the whole terminal client in this process (``cli.main``) with piped
input against the fake server, so the prompts and the printed lines are checked
exactly as a script sees them: answers to questions are the next input lines,
questions and errors go to stderr, results to stdout.
"""

from __future__ import annotations

import io
import os
import stat

import pytest

from chatproto import crypto_utils
from tk_client import cli
from tk_client.device_tokens import DeviceTokens
from tk_client.known_servers import KnownServers
from tk_client.terminal_client import EXIT_CONNECTION, EXIT_LOGIN, EXIT_OK

from .fake_server import FAKE_SECRET, FakeServer

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
def known(config_home, server):
    known = KnownServers(config_home / "known_servers")
    known.trust(server.address, server.fingerprint)
    return known


@pytest.fixture
def tokens(config_home):
    return DeviceTokens(config_home)


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def run(server, known, monkeypatch):
    """Run the terminal client as alice with ``lines`` piped in (CHAT_PASSWORD as given)."""

    def run_(*args: str, lines: str = "", password: str | None = PASSWORD) -> Run:
        if password is None:
            monkeypatch.delenv("CHAT_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("CHAT_PASSWORD", password)
        out, err = io.StringIO(), io.StringIO()
        argv = ["--server", server.address.key, "--user", "alice", *args]
        code = cli.main(argv, stdin=io.StringIO(lines), stdout=out, stderr=err, known_servers=known)
        return Run(code, out.getvalue(), err.getvalue())

    return run_


# --- --remember and token reuse ------------------------------------------------------------------


def test_remember_stores_a_token_file_of_mode_0600(run, server, tokens):
    result = run("--remember", "laptop")

    assert result.code == EXIT_OK, result.err
    stored = tokens.get(server.fingerprint, "alice")
    assert stored is not None and server.devices[stored.device]["name"] == "laptop"
    assert stat.S_IMODE(os.stat(tokens.path).st_mode) == 0o600
    assert "this device stays signed in" in result.err


def test_a_later_run_resumes_without_the_password(run, server):
    run("--remember", "laptop")
    result = run(password=None)

    assert result.code == EXIT_OK, result.err
    assert "logged in as alice" in result.err
    assert len(server.requests_of("resume")) == 1
    assert len(server.requests_of("login")) == 1


def test_without_remember_no_token_is_kept(run, server, tokens):
    result = run()

    assert result.code == EXIT_OK
    assert tokens.get(server.fingerprint, "alice") is None
    assert server.requests_of("login")[0].get("remember") is None


def test_a_revoked_token_falls_back_to_the_password(run, server, tokens):
    tokens.put(server.fingerprint, "alice", "gone", "token-gone")
    result = run()

    assert result.code == EXIT_OK, result.err
    assert "no longer signed in" in result.err
    assert tokens.get(server.fingerprint, "alice") is None
    assert len(server.requests_of("login")) == 1


def test_a_revoked_token_without_a_password_exits_with_the_reason(run, server, tokens):
    tokens.put(server.fingerprint, "alice", "gone", "token-gone")
    result = run(password=None)

    assert result.code == EXIT_LOGIN
    assert "Log in with your password" in result.err
    assert "set CHAT_PASSWORD" in result.err


# --- one-time codes ------------------------------------------------------------------------------


def test_otp_is_sent_with_the_login(run, server):
    server.otp["alice"] = "654321"
    result = run("--otp", "654321")

    assert result.code == EXIT_OK, result.err
    assert server.requests_of("login")[0]["otp"] == "654321"


def test_a_missing_code_without_a_terminal_says_to_pass_otp(run, server):
    server.otp["alice"] = "654321"
    result = run()

    assert result.code == EXIT_LOGIN
    assert "run again with --otp CODE" in result.err


def test_a_wrong_code_without_a_terminal_says_it_was_refused(run, server):
    server.otp["alice"] = "654321"
    result = run("--otp", "111111")

    assert result.code == EXIT_LOGIN
    assert "not accepted" in result.err


# --- the account commands ------------------------------------------------------------------------


def test_password_asks_three_times_and_changes_it(run, server):
    result = run(lines=f"/password\n{PASSWORD}\nnew-password-1\nnew-password-1\n")

    assert result.code == EXIT_OK, result.err
    assert "Current password: " in result.err
    assert "New password: " in result.err
    assert "Repeat the new password: " in result.err
    assert "Your password was changed" in result.out
    assert server.users["alice"] == "new-password-1"
    assert PASSWORD not in result.out + result.err


def test_password_with_a_wrong_current_password_says_so(run, server):
    result = run(lines="/password\nwrong\nnew-password-1\nnew-password-1\n")

    assert "The current password is wrong; type it again." in result.err
    assert server.users["alice"] == PASSWORD


def test_password_refused_by_the_rules_says_the_rules(run, server):
    result = run(lines=f"/password\n{PASSWORD}\nshort\nshort\n")

    assert "at least 8 characters" in result.err
    assert "Choose another one" in result.err


def test_password_typed_differently_twice_changes_nothing(run, server):
    result = run(lines=f"/password\n{PASSWORD}\nnew-password-1\nnew-password-2\n")

    assert "the new passwords differ" in result.err
    assert server.requests_of("change_password") == []


def test_2fa_on_shows_the_qr_code_asks_a_code_and_prints_backup_codes(run, server):
    result = run(lines="/2fa on\n000000\n123456\nhello after\n")

    assert result.code == EXIT_OK, result.err
    assert f"Secret: {FAKE_SECRET}" in result.out
    assert "otpauth://totp/Fake:alice" in result.out
    assert "##" in result.out  # the QR code, in characters this output can show
    assert "Code shown by the app: " in result.err
    assert "That code is not right" in result.err  # the first try, then asked again
    assert "Two-factor login is on" in result.out
    for i in range(10):
        assert f"{i:04d}-bbbb-cccc-dddd" in result.out
    assert server.otp["alice"] == "123456"
    assert [r["text"] for r in server.requests_of("send")] == ["hello after"]


def test_2fa_on_when_it_is_on_already_says_so(run, server):
    server.otp["alice"] = "654321"
    result = run("--otp", "654321", lines="/2fa on\nhello\n")

    assert "already on" in result.err
    assert [r["text"] for r in server.requests_of("send")] == ["hello"]


def test_2fa_off_asks_the_password_and_a_code(run, server):
    server.otp["alice"] = "654321"
    result = run("--otp", "654321", lines=f"/2fa off\n{PASSWORD}\n654321\n")

    assert result.code == EXIT_OK, result.err
    assert "Password: " in result.err
    assert "One-time code (or a backup code): " in result.err
    assert "Two-factor login is off" in result.out
    assert "alice" not in server.otp


def test_2fa_off_with_a_wrong_code_says_so(run, server):
    server.otp["alice"] = "654321"
    result = run("--otp", "654321", lines=f"/2fa off\n{PASSWORD}\n999999\n")

    assert "That code is not right" in result.err
    assert server.otp["alice"] == "654321"


def test_2fa_needs_on_or_off(run):
    result = run(lines="/2fa maybe\n")

    assert "Usage: /2fa on|off" in result.err


def test_devices_prints_a_table_marking_this_device(run, server):
    run("--remember", "desk")
    result = run(password=None, lines="/devices\n")

    assert result.code == EXIT_OK, result.err
    lines = result.out.splitlines()
    assert lines[0] == "Devices that keep you signed in (1):"
    assert lines[1].split() == ["ID", "NAME", "LAST", "SEEN"]
    assert lines[2].split()[:2] == ["dev1", "desk"]
    assert lines[2].endswith("this device, online")


def test_devices_without_any_says_how_to_remember_one(run):
    result = run(lines="/devices\n")

    assert "No device keeps you signed in" in result.out


def test_revoke_by_name_signs_the_device_out(run, server):
    server.devices["dev1"] = {
        "user": "alice",
        "name": "old-laptop",
        "token": "token-dev1",
        "created": "2026-01-01T00:00:00.000Z",
        "last_seen": "2026-01-02T00:00:00.000Z",
    }
    result = run(lines="/revoke old-laptop\n")

    assert result.code == EXIT_OK, result.err
    assert "The device dev1 was signed out." in result.out
    assert server.devices == {}
    assert server.requests_of("revoke")[0]["device"] == "dev1"


def test_revoke_of_an_unknown_device_says_so(run, server):
    result = run(lines="/revoke nothing\n")

    assert "There is no device 'nothing'" in result.err
    assert server.requests_of("revoke") == []


def test_revoking_this_device_ends_the_run_with_the_reason(run, server, tokens):
    run("--remember", "desk")
    result = run(password=None, lines="/revoke desk\n")

    assert result.code == EXIT_CONNECTION
    assert "signed out (revoked)" in result.err
    assert tokens.get(server.fingerprint, "alice") is None


def test_logout_forgets_the_token_and_exits_quietly(run, server, tokens):
    run("--remember", "desk")
    result = run(password=None, lines="/logout\n")

    assert result.code == EXIT_OK, result.err
    assert "You logged out" in result.err
    assert tokens.get(server.fingerprint, "alice") is None
    assert server.devices == {}


def test_enrolment_required_names_2fa_on(server_key, known, monkeypatch):
    fake = FakeServer(server_key, {"alice": PASSWORD}, require_2fa=True).start()
    known.trust(fake.address, fake.fingerprint)
    monkeypatch.setenv("CHAT_PASSWORD", PASSWORD)
    out, err = io.StringIO(), io.StringIO()
    try:
        cli.main(
            ["--server", fake.address.key, "--user", "alice"],
            stdin=io.StringIO(""),
            stdout=out,
            stderr=err,
            known_servers=known,
        )
    finally:
        fake.stop()

    assert "requires two-factor login" in err.getvalue()
    assert "/2fa on" in err.getvalue()


def test_help_lists_the_account_commands(run):
    result = run(lines="/help\n")

    for usage in ("/password", "/2fa on|off", "/devices", "/revoke DEVICE", "/logout"):
        assert usage in result.out


def test_remember_takes_a_short_name(run):
    result = run("--remember", "x" * 65)

    assert result.code == 2
    assert "1 to 64 characters" in result.err


@pytest.mark.parametrize("full_start_delay", [0.0, 0.5])
def test_an_enrolling_session_turns_2fa_on_then_chats(
    server_key, known, monkeypatch, full_start_delay
):
    """The line typed right after the code waits for the session's full start (the
    server's ``rooms`` push), however late that comes: it is not refused as roomless."""
    fake = FakeServer(server_key, {"alice": PASSWORD}, require_2fa=True)
    fake.full_start_delay = full_start_delay
    fake.start()
    known.trust(fake.address, fake.fingerprint)
    monkeypatch.setenv("CHAT_PASSWORD", PASSWORD)
    out, err = io.StringIO(), io.StringIO()
    try:
        code = cli.main(
            ["--server", fake.address.key, "--user", "alice"],
            stdin=io.StringIO("/2fa on\n123456\nnow I can talk\n"),
            stdout=out,
            stderr=err,
            known_servers=known,
        )
        sent = [r["text"] for r in fake.requests_of("send")]
    finally:
        fake.stop()

    assert code == EXIT_OK, err.getvalue()
    assert "Two-factor login is on" in out.getvalue()
    assert sent == ["now I can talk"]
