"""The terminal client on a real (pseudo-)terminal: codes asked at login, passwords without echo.

Piped input (``test_terminal_account.py``) cannot show what a person sees: here the
client runs in a subprocess whose terminal is a pty, against the fake server, and
the test types as a person would and reads the screen.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios

import pytest

from chatproto import crypto_utils
from tk_client.known_servers import KnownServers

from .fake_server import FakeServer
from .helpers import WAIT_SECONDS
from .test_cli import PROJECT_DIR, as_in_a_shell, cli_env

PASSWORD = "alice-pw-long"
NEW_PASSWORD = "brand-new-pw-9"


@pytest.fixture
def server():
    fake = FakeServer(crypto_utils.generate_private_key(), {"alice": PASSWORD}).start()
    yield fake
    fake.stop()


class Terminal:
    """A client on a pty: ``type`` keys, ``expect`` text on the screen."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tk_client.cli", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=cli_env(PASSWORD) | {"PYTHONPATH": str(PROJECT_DIR)},
            cwd=PROJECT_DIR,
            start_new_session=True,
            preexec_fn=lambda: as_in_a_shell(lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0)),
        )
        os.close(slave)
        self.screen = ""
        self._read_to = 0

    def expect(self, text: str) -> None:
        """Wait until ``text`` shows after what was expected before."""
        while text not in self.screen[self._read_to :]:
            ready, _, _ = select.select([self.master], [], [], WAIT_SECONDS)
            assert ready, f"{text!r} never showed; the terminal shows {self.screen!r}"
            self.screen += os.read(self.master, 4096).decode("utf-8", "replace")
        self._read_to = self.screen.index(text, self._read_to) + len(text)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> int | None:
        try:
            return self.process.wait(timeout=WAIT_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            os.close(self.master)


def test_a_code_is_asked_at_login_and_passwords_are_never_echoed(server, config_home):
    KnownServers(config_home / "known_servers").trust(server.address, server.fingerprint)
    server.otp["alice"] = "654321"
    terminal = Terminal(["--server", server.address.key, "--user", "alice"])
    try:
        terminal.expect("One-time code: ")
        terminal.type("654321")
        terminal.expect("logged in as alice")
        terminal.type("/password")
        terminal.expect("Current password: ")
        terminal.type(PASSWORD)
        terminal.expect("New password: ")
        terminal.type(NEW_PASSWORD)
        terminal.expect("Repeat the new password: ")
        terminal.type(NEW_PASSWORD)
        terminal.expect("Your password was changed")
        terminal.type("/quit")
    finally:
        code = terminal.close()

    assert code == 0
    assert server.users["alice"] == NEW_PASSWORD
    assert PASSWORD not in terminal.screen
    assert NEW_PASSWORD not in terminal.screen


def test_a_reconnect_asks_for_a_fresh_code_on_the_terminal(server, config_home):
    KnownServers(config_home / "known_servers").trust(server.address, server.fingerprint)
    server.otp["alice"] = "654321"
    terminal = Terminal(["--server", server.address.key, "--user", "alice", "--otp", "654321"])
    try:
        terminal.expect("logged in as alice")
        terminal.expect("now talking in #lobby")
        server.otp["alice"] = "777777"  # the next time step's code
        server.drop_all()
        terminal.expect("One-time code to log in again: ")
        terminal.type("777777")
        terminal.expect("reconnected")
        terminal.type("/quit")
    finally:
        code = terminal.close()

    assert code == 0
    assert [r.get("otp") for r in server.requests_of("login")] == ["654321", None, "777777"]
