"""The terminal client: piped input and output lines against the real server."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.protocol_client.e2e_body import e2e_body
from tk_client.address import parse_address
from tk_client.events import LoggedIn, Received
from tk_client.known_servers import KnownServers
from tk_client.model import ChatMessage, pm_key, room_key
from tk_client.secure import CANNOT_READ_HERE
from tk_client.terminal_lines import format_message, printable

from .helpers import WAIT_SECONDS, make_session

PROJECT_DIR = Path(__file__).resolve().parents[2]
OTHER_KEY = "SHA256:" + "Y" * 43


@pytest.fixture(scope="module")
def server(live_server):
    for name in ("alice", "bob", "carol"):
        live_server.create_user(name, f"{name}-password")
    return live_server


@pytest.fixture
def known(config_home):
    return KnownServers(config_home / "known_servers")


def cli_env(password: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CHAT_PASSWORD", None)
    if password is not None:
        env["CHAT_PASSWORD"] = password
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tk_client.cli", *args]


def run_cli(
    args: list[str], stdin: str = "", password: str | None = None
) -> subprocess.CompletedProcess:
    """Run the terminal client to completion, detached from any terminal (as in CI)."""
    return subprocess.run(
        cli(*args),
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(password),
        cwd=PROJECT_DIR,
        timeout=120,
        start_new_session=True,  # no controlling terminal: /dev/tty cannot be opened
    )


class RunningCli:
    """A terminal client left running; a thread per stream collects its lines."""

    def __init__(self, args: list[str], password: str) -> None:
        self.process = subprocess.Popen(
            cli(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(password),
            cwd=PROJECT_DIR,
            start_new_session=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        for stream, lines in (
            (self.process.stdout, self.stdout),
            (self.process.stderr, self.stderr),
        ):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _read(stream, lines: queue.Queue[str]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    @staticmethod
    def _wait(lines: queue.Queue[str], matches, what: str) -> None:
        seen = []
        while True:
            try:
                line = lines.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                raise AssertionError(f"no line {what}; saw {seen}") from None
            seen.append(line)
            if matches(line):
                return

    def wait_for_line(self, wanted: str) -> None:
        self._wait(self.stdout, lambda line: line == wanted, repr(wanted))

    def wait_for_error(self, part: str) -> None:
        self._wait(self.stderr, lambda line: part in line, f"containing {part!r} on stderr")

    def finish(self) -> int:
        """Close its stdin (EOF) and return its exit code."""
        self.process.stdin.close()
        return self.process.wait(timeout=WAIT_SECONDS)


def args_for(server, user: str, *extra: str) -> list[str]:
    return ["--server", server.url, "--user", user, *extra]


@pytest.fixture
def session_of(server, config_home):
    opened = []

    def open_(name: str, remember: str | None = None):
        """``remember``: as a new device of that name (``session.device``), for ``pm``."""
        session, log = make_session(
            parse_address(server.url),
            config_home / "session_known_servers",
            expected_fingerprint=server.fingerprint,
        )
        opened.append(session)
        session.login(name, f"{name}-password", remember=remember)
        log.wait_for(LoggedIn)
        return session, log

    yield open_
    for session in opened:
        session.close()


# --- chatting through pipes ----------------------------------------------------------------------


def test_piped_lines_are_sent_and_printed_one_per_message(server, session_of):
    _bob, bob_log = session_of("bob")

    result = run_cli(
        args_for(server, "alice", "--trust", server.fingerprint, "--remember", "script"),
        stdin="hello from a script\n/pm bob psst\n/users\n",
        password="alice-password",
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "[lobby] alice: hello from a script" in lines
    assert "[pm -> bob] alice: psst" in lines
    assert any(line.startswith("Online (2): alice, bob") for line in lines)
    got = bob_log.wait_for(Received, lambda e: e.message["type"] == "private")
    assert got.message["from"] == "alice"
    assert "text" not in got.message and "psst" not in str(got.message["e2e"])  # end to end


def test_incoming_messages_are_printed_as_lines(server, session_of):
    running = RunningCli(args_for(server, "bob", "--trust", server.fingerprint), "bob-password")
    try:
        running.wait_for_error("* logged in as bob")
        alice, _ = session_of("alice", remember="script")
        alice.request("send", room="lobby", text="hi bob")
        running.wait_for_line("[lobby] alice: hi bob")
        # A private message is end to end; bob's terminal, with no remembered device, says so.
        alice.request("pm", to="bob", e2e=e2e_body(alice.device, "private hello"))
        running.wait_for_line(f"[pm] alice: (cannot decrypt) {CANNOT_READ_HERE}")
    finally:
        code = running.finish()
    assert code == 0


def test_bad_command_is_answered_with_usage_on_stderr(server):
    result = run_cli(
        args_for(server, "carol", "--trust", server.fingerprint),
        stdin="/invite onlyroom\n/frob\n",
        password="carol-password",
    )
    assert result.returncode == 0
    assert "error: Usage: /invite ROOM USER" in result.stderr
    assert "error: Unknown command /frob. Type /help" in result.stderr
    assert result.stdout == ""


def test_register_creates_the_account(server):
    result = run_cli(
        args_for(server, "frank", "--register", "--trust", server.fingerprint),
        stdin="first words\n",
        password="frank has a long password 7",
    )
    assert result.returncode == 0, result.stderr
    assert "[lobby] frank: first words" in result.stdout.splitlines()


# --- refusals and their exit codes ------------------------------------------------------------


def test_first_use_without_a_terminal_is_refused_with_the_fingerprint(server, known):
    result = run_cli(args_for(server, "alice"), stdin="hi\n", password="alice-password")

    assert result.returncode == 3
    assert server.fingerprint in result.stderr
    assert f"--trust {server.fingerprint}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert known.get(parse_address(server.url)) is None


def test_trust_with_the_wrong_fingerprint_is_refused(server, known):
    result = run_cli(
        args_for(server, "alice", "--trust", OTHER_KEY), stdin="hi\n", password="alice-password"
    )
    assert result.returncode == 3
    assert OTHER_KEY in result.stderr and server.fingerprint in result.stderr
    assert known.get(parse_address(server.url)) is None


def test_changed_key_is_refused_until_forgotten(server, known):
    address = parse_address(server.url)
    known.trust(address, OTHER_KEY)

    refused = run_cli(
        args_for(server, "alice", "--trust", server.fingerprint), password="alice-password"
    )
    assert refused.returncode == 3
    assert "CHANGED" in refused.stderr
    assert OTHER_KEY in refused.stderr and server.fingerprint in refused.stderr
    assert f"--forget-server {address.key}" in refused.stderr
    assert known.get(address) == OTHER_KEY

    forgot = run_cli(["--forget-server", server.url])
    assert forgot.returncode == 0 and OTHER_KEY in forgot.stdout

    accepted = run_cli(
        args_for(server, "alice", "--trust", server.fingerprint), password="alice-password"
    )
    assert accepted.returncode == 0, accepted.stderr
    assert known.get(address) == server.fingerprint


def test_bad_credentials_exit_with_one_line(server):
    result = run_cli(
        args_for(server, "alice", "--trust", server.fingerprint), password="wrong password"
    )
    assert result.returncode == 4
    assert result.stderr.strip() == "error: Wrong username or password."


def test_unreachable_server_exits_with_one_line():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli(["--server", f"127.0.0.1:{port}", "--user", "alice"], password="pw")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: Cannot reach the server at ws://127.0.0.1:")
    assert "connection refused" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_password_without_a_terminal_is_a_usage_error(server):
    result = run_cli(args_for(server, "alice"), password=None)
    assert result.returncode == 2
    assert "CHAT_PASSWORD" in result.stderr


# --- formatting --------------------------------------------------------------------------------


def test_lines_name_the_room_or_the_private_chat():
    incoming = ChatMessage(sender="alice", text="hi")
    own = ChatMessage(sender="bob", text="hi", own=True)
    assert format_message(room_key("lobby"), incoming) == "[lobby] alice: hi"
    assert format_message(pm_key("alice"), incoming) == "[pm] alice: hi"
    assert format_message(pm_key("alice"), own) == "[pm -> alice] bob: hi"


def test_control_characters_cannot_drive_the_terminal():
    assert printable("red \x1b[31malert\x07") == "red \\x1b[31malert\\x07"
    assert printable("abc\u202edef") == "abc\\u202edef"
    assert printable("two\nlines") == "two\n  lines"
    assert printable("tab\tand ünïcödé") == "tab\tand ünïcödé"


# --- the installed command (pip's console script calls main() directly) ----------------------


def console_script(folder: Path, name: str, module: str) -> Path:
    """A script like the one ``pip install`` writes for ``[project.scripts]``."""
    script = folder / name
    script.write_text(f"import sys\nfrom {module} import main\nsys.exit(main())\n")
    return script


def as_in_a_shell(then=None) -> None:
    """In the child before exec: Ctrl+C interrupts, as in a shell (a test runner started in
    the background may have had SIGINT ignored, which children inherit); then ``then()``."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if then is not None:
        then()


def test_help_names_the_program_as_the_user_started_it(tmp_path):
    env = cli_env(None) | {"PYTHONPATH": str(PROJECT_DIR)}
    installed = subprocess.run(
        [sys.executable, console_script(tmp_path, "chat-cli", "tk_client.cli"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    from_checkout = run_cli(["--help"])

    assert installed.returncode == 0 and installed.stdout.startswith("usage: chat-cli ")
    assert from_checkout.stdout.startswith("usage: python -m tk_client.cli ")


def test_ctrl_c_at_the_password_prompt_ends_quietly(tmp_path):
    import fcntl
    import pty
    import select
    import termios

    script = console_script(tmp_path, "chat-cli", "tk_client.cli")
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, script, "--server", "127.0.0.1:9", "--user", "alice"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cli_env(None) | {"PYTHONPATH": str(PROJECT_DIR)},
        start_new_session=True,
        # The pseudo-terminal becomes the controlling terminal, as in a shell: getpass
        # opens /dev/tty, and Ctrl+C typed on it interrupts the client.
        preexec_fn=lambda: as_in_a_shell(lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0)),
    )
    os.close(slave)
    screen = ""
    try:
        while "Password for alice" not in screen:
            ready, _, _ = select.select([master], [], [], WAIT_SECONDS)
            assert ready, f"no password prompt; the terminal shows {screen!r}"
            screen += os.read(master, 4096).decode("utf-8", "replace")
        os.write(master, b"\x03")  # Ctrl+C
        code = process.wait(timeout=WAIT_SECONDS)
        while select.select([master], [], [], 0.2)[0]:
            try:
                screen += os.read(master, 4096).decode("utf-8", "replace")
            except OSError:  # the client exited and the terminal closed
                break
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)

    assert code == 0
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
