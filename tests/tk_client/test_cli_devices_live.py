"""The terminal client against the real server (PROTOCOL.md 3.4), end to end, as a user would.

One story, in order, because each step needs the one before: remember this
computer, start again without a password, turn two-factor login on (a real TOTP
code, computed from the secret the client printed), log in on a second computer
with a code, list the devices, and sign the first computer out from the second;
the first then has to log in with its password again.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import WAIT_SECONDS
from .test_cli import PROJECT_DIR, cli

pyotp = pytest.importorskip("pyotp")

USER, PASSWORD = "erin", "erin-password-1"


@pytest.fixture(scope="module")
def server(live_server):
    live_server.create_user(USER, PASSWORD)
    return live_server


class Computer:
    """One computer: its own client folder (pinned key, device tokens)."""

    def __init__(self, home: Path, server) -> None:
        self.home = home
        self.server = server

    def env(self, password: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CHAT_PASSWORD"}
        env |= {"XDG_CONFIG_HOME": str(self.home), "PYTHONIOENCODING": "utf-8"}
        if password is not None:
            env["CHAT_PASSWORD"] = password
        return env

    def args(self, *extra: str) -> list[str]:
        base = ["--server", self.server.url, "--user", USER, "--trust", self.server.fingerprint]
        return cli(*base, *extra)

    def run(
        self, *extra: str, stdin: str = "", password: str | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.args(*extra),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(password),
            cwd=PROJECT_DIR,
            timeout=WAIT_SECONDS * 2,
            start_new_session=True,  # no controlling terminal: /dev/tty cannot be opened
        )

    def tokens_file(self) -> Path:
        return self.home / "chat" / "device_tokens.json"


def read_until(stream, marker: str, seen: list[str]) -> str:
    """Lines of ``stream`` until one containing ``marker``; that line."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"{marker!r} never came; saw {''.join(seen)!r}")


def turn_on_two_factor(computer: Computer) -> tuple[str, list[str]]:
    """``/2fa on`` with a code computed from the printed secret: (secret, backup codes)."""
    process = subprocess.Popen(
        computer.args(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=computer.env(None),
        cwd=PROJECT_DIR,
        start_new_session=True,
    )
    seen: list[str] = []
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("/2fa on\n")
        process.stdin.flush()
        secret = read_until(process.stdout, "Secret: ", seen).split("Secret: ")[1].strip()
        process.stdin.write(pyotp.TOTP(secret).now() + "\n")
        process.stdin.flush()
        read_until(process.stdout, "Backup codes", seen)
        codes = [read_until(process.stdout, "-", seen).strip() for _ in range(10)]
        process.stdin.close()
        assert process.wait(timeout=WAIT_SECONDS) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    return secret, codes


def test_remember_resume_two_factor_devices_and_revoke(server, tmp_path):
    laptop, phone = Computer(tmp_path / "laptop", server), Computer(tmp_path / "phone", server)

    first = laptop.run("--remember", "laptop", stdin="hello from the laptop\n", password=PASSWORD)
    assert first.returncode == 0, first.stderr
    assert "this device stays signed in" in first.stderr
    assert oct(laptop.tokens_file().stat().st_mode & 0o777) == "0o600"

    again = laptop.run(stdin="/devices\n")  # no password: the stored token logs in
    assert again.returncode == 0, again.stderr
    assert f"logged in as {USER}" in again.stderr
    row = next(line for line in again.stdout.splitlines() if " laptop " in f" {line} ")
    assert row.endswith("this device, online")

    secret, backup_codes = turn_on_two_factor(laptop)
    assert len(backup_codes) == 10

    refused = phone.run(password=PASSWORD)
    assert refused.returncode == 4
    assert "--otp CODE" in refused.stderr
    # The code of the next time step: the one of the current step was used to turn it on.
    code = pyotp.TOTP(secret).at(time.time() + 30)
    on_phone = phone.run("--otp", code, "--remember", "phone", password=PASSWORD)
    assert on_phone.returncode == 0, on_phone.stderr

    listed = phone.run(stdin="/devices\n")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    table = lines[lines.index(next(x for x in lines if x.strip().startswith("ID "))) + 1 :]
    names = [row.split()[1] for row in table if row.startswith("  ") and not row.startswith("   ")]
    assert sorted(names) == ["laptop", "phone"]

    revoked = phone.run(stdin="/revoke laptop\n")
    assert revoked.returncode == 0, revoked.stderr
    assert "was signed out" in revoked.stdout

    locked_out = laptop.run()
    assert locked_out.returncode == 4
    assert "no longer signed in" in locked_out.stderr
    assert USER not in laptop.tokens_file().read_text()

    with_backup = laptop.run("--otp", backup_codes[0], password=PASSWORD)
    assert with_backup.returncode == 0, with_backup.stderr  # a backup code replaces the phone
