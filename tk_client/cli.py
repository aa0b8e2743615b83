"""The terminal client: the same session and commands as the desktop, one line per message.

::

    python -m tk_client.cli --server ws://127.0.0.1:8000 --user alice
    printf 'hello\\n/pm bob see you\\n' | CHAT_PASSWORD=... python -m tk_client.cli \\
        --server ws://127.0.0.1:8000 --user alice --trust SHA256:...

Each input line is sent (plain text to the current conversation, ``/commands`` as
in the desktop client, ``/help`` lists them). What arrives is printed on stdout,
one line per message (continuation lines of a multi-line message are indented by
two spaces)::

    [lobby] alice: hi                 a room message (your own too, once stored)
    [pm] alice: hi                    a private message to you
    [pm -> bob] alice: see you        a private message you sent

Answers to commands (``/users``, ``/rooms``, ``/help``, ``/history``) also go to
stdout; connection news (``* reconnecting...``) and errors go to stderr, so a
script can keep stdout as a clean transcript. Room messages sent while this
client was disconnected are not printed after the reconnect; ``/history`` shows
them (private messages are kept by the server and arrive).

The password comes from ``CHAT_PASSWORD`` or a prompt on the terminal, never from
an argument (it would show in ``ps``). The server's key is pinned exactly as in
the desktop client: on first use a terminal asks, a script passes ``--trust
FINGERPRINT``, and a changed key is refused (``--forget-server ADDRESS`` forgets
the old one after the administrator confirmed the change).

Exit codes: 0 after EOF, ``/quit`` or Ctrl+C with everything sent; 1 connection
failed or lost for good, or messages left unsent; 2 usage; 3 server key not
trusted (refused, or changed); 4 login refused.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import queue
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, TextIO

from .address import AddressError, ServerAddress, parse_address
from .controller import ChatController, ControllerView
from .events import (
    ConnectFailed,
    KeyChanged,
    LoggedIn,
    LoginRejected,
    Phase,
    Received,
    Stopped,
    TrustRequired,
)
from .known_servers import KnownServers
from .model import ChatMessage, ConversationKey, MessageState
from .session import ChatSession

EXIT_OK, EXIT_CONNECTION, EXIT_USAGE, EXIT_UNTRUSTED, EXIT_LOGIN = 0, 1, 2, 3, 4
EOF_GRACE_SECONDS = 30.0  # after EOF, how long to wait for queued messages to be sent
POLL_SECONDS = 0.2  # the main loop's tick, so Ctrl+C is noticed at once
USERS_WAIT_SECONDS = 5.0  # after login_ok, how long input waits for the list of users


@dataclass(frozen=True)
class _Line:
    text: str


@dataclass(frozen=True)
class _EndOfInput:
    pass


def printable(text: str) -> str:
    """``text`` safe for a terminal: control and format characters shown, not obeyed.

    Another user's message must not move the cursor, recolour the screen or
    reverse the text direction (ESC sequences, U+202E): each such character is
    replaced by a visible ``\\x1b``-style escape. Newlines become an indented
    continuation, so every message still starts a line of its own.
    """
    out = []
    for char in text:
        if char == "\n":
            out.append("\n  ")
        elif char == "\t" or unicodedata.category(char) not in ("Cc", "Cf"):
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def format_message(key: ConversationKey, message: ChatMessage) -> str:
    """One line: ``[lobby] alice: hi``, ``[pm] alice: hi``, ``[pm -> bob] me: hi``."""
    if key.kind == "room":
        where = f"[{key.name}]"
    elif message.own:
        where = f"[pm -> {key.name}]"
    else:
        where = "[pm]"
    return f"{where} {printable(message.sender)}: {printable(message.text)}"


class TerminalView(ControllerView):
    """Prints what the controller reports: messages and answers on ``out``, news on ``err``."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.controller: ChatController | None = None
        self.quit_requested = False
        self._lock = threading.Lock()
        self._online: set[str] | None = None
        self._reconnecting = False
        self._current: ConversationKey | None = None

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            stream.write(text + "\n")
            stream.flush()

    def message_added(self, key: ConversationKey, message: ChatMessage) -> None:
        if message.notice:
            if message.level == "error":
                self._write(self.err, f"error: {printable(message.text)}")
            else:
                self._write(self.out, message.text)
        elif message.state is MessageState.DELIVERED:
            self._write(self.out, format_message(key, message))

    def message_changed(self, key: ConversationKey, message: ChatMessage) -> None:
        if message.state is MessageState.DELIVERED:
            self._write(self.out, format_message(key, message))
        elif message.state is MessageState.FAILED:
            where = f"#{key.name}" if key.kind == "room" else key.name
            self._write(
                self.err, f"error: not sent to {where}: {printable(message.text)} ({message.error})"
            )

    def conversation_changed(self, key: ConversationKey, older: int = 0) -> None:
        if not older or self.controller is None:
            return
        messages = self.controller.conversation(key).messages[:older]
        self._write(self.out, f"--- {older} earlier message{'s' if older > 1 else ''} in {key} ---")
        for message in messages:
            self._write(self.out, format_message(key, message))
        self._write(self.out, "---")

    def current_changed(self, key: ConversationKey) -> None:
        if key == self._current:
            return
        self._current = key
        where = f"#{key.name}" if key.kind == "room" else f"the private chat with {key.name}"
        self._write(self.err, f"* now talking in {where}")

    def users_changed(self) -> None:
        if self.controller is None:
            return
        online = set(self.controller.online)
        if self._online is not None:
            for user in sorted(online - self._online):
                self._write(self.err, f"* {user} is online")
            for user in sorted(self._online - online):
                self._write(self.err, f"* {user} went offline")
        self._online = online

    def status_changed(self, phase: Phase, detail: str, retry_at: float | None) -> None:
        if phase is Phase.RECONNECTING and retry_at is not None:
            wait = max(0.0, retry_at - time.monotonic())
            self._write(
                self.err, f"* {detail or 'connection lost'} Reconnecting in {wait:.0f} s..."
            )
            self._reconnecting = True
        elif phase is Phase.ONLINE and self._reconnecting:
            self._reconnecting = False
            self._write(self.err, "* reconnected")

    def quit(self) -> None:
        self.quit_requested = True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tk_client.cli",
        description="Encrypted chat in a terminal. Lines you type are sent; /help lists commands.",
        epilog="The password is read from CHAT_PASSWORD, or asked for on the terminal.",
    )
    parser.add_argument(
        "--server", help="the server, e.g. ws://127.0.0.1:8000 or wss://chat.example.org"
    )
    parser.add_argument("--user", help="your username")
    parser.add_argument("--register", action="store_true", help="create the account first")
    parser.add_argument(
        "--trust",
        metavar="FINGERPRINT",
        help="on first use, trust the server only if its key has this fingerprint (for scripts)",
    )
    parser.add_argument("--otp", metavar="CODE", help="one-time code, where the account needs one")
    parser.add_argument(
        "--forget-server",
        metavar="ADDRESS",
        help="forget the pinned key of ADDRESS (after its administrator confirmed a new key)",
    )
    return parser


def _tty_available() -> bool:
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False


def _read_password(args: argparse.Namespace, address: ServerAddress) -> str | None:
    password = os.environ.get("CHAT_PASSWORD")
    if password:
        return password
    if not _tty_available():
        return None
    password = getpass.getpass(f"Password for {args.user} on {address.key}: ")
    if args.register and getpass.getpass("Repeat the password: ") != password:
        print("error: the passwords differ.", file=sys.stderr)
        return None
    return password


def _reader(stdin: TextIO, events: queue.Queue[Any], view: TerminalView, interactive: bool) -> None:
    """Feed input lines to the main loop (a thread: reading blocks)."""
    try:
        if interactive:
            while True:
                try:
                    line = input()
                except EOFError:
                    break
                events.put(_Line(line))
        else:
            for line in stdin:
                events.put(_Line(line))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        view._write(view.err, f"error: cannot read the input: {exc}")
    events.put(_EndOfInput())


def _enable_completion(controller: ChatController) -> None:
    """Tab completion with readline in an interactive terminal, cycling like the desktop's."""
    try:
        import readline
    except ImportError:  # pragma: no cover - not on every platform
        return
    matches: list[str] = []

    def complete(text: str, state: int) -> str | None:
        nonlocal matches
        if state == 0:
            line, cursor = readline.get_line_buffer(), readline.get_endidx()
            controller.completer.reset()
            result = controller.complete(line, cursor)
            matches = list(result.candidates) if result else []
            matches = [m for m in matches if m.lower().startswith(text.lower())]
            if len(matches) == 1:
                matches = [matches[0] + " "]  # a unique name: go on typing after it
        return matches[state] if state < len(matches) else None

    readline.set_completer_delims(" ")
    readline.set_completer(complete)
    readline.parse_and_bind("tab: menu-complete")


class TerminalClient:
    """One run of the terminal client: log in, then relay lines until EOF."""

    def __init__(
        self,
        args: argparse.Namespace,
        address: ServerAddress,
        password: str,
        *,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        known_servers: KnownServers | None = None,
    ) -> None:
        self.args = args
        self.address = address
        self.stdin = stdin
        self.interactive = stdin.isatty()
        self.events: queue.Queue[Any] = queue.Queue()
        self.session = ChatSession(
            address, known_servers or KnownServers(), self.events, expected_fingerprint=args.trust
        )
        self.view = TerminalView(stdout, stderr)
        self.controller = ChatController(self.session, self.view, autoload_history=False)
        self.view.controller = self.controller
        self._password = password

    def error(self, text: str) -> None:
        self.view._write(self.view.err, text)

    def run(self) -> int:
        try:
            self.session.login(
                self.args.user, self._password, otp=self.args.otp, register=self.args.register
            )
            self._password = ""
            code = self._log_in()
            if code is not None:
                return code
            if self.interactive:
                _enable_completion(self.controller)
            threading.Thread(
                target=_reader,
                args=(self.stdin, self.events, self.view, self.interactive),
                name="chat-input",
                daemon=True,
            ).start()
            return self._chat()
        except KeyboardInterrupt:
            return EXIT_OK
        finally:
            self.session.close()

    def _drain(self) -> None:
        """Handle the session events already queued (input lines no longer count)."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if not isinstance(event, _Line | _EndOfInput | Stopped | KeyChanged):
                self.controller.handle(event)

    def _next(self) -> Any:
        """The next event, or None after a short wait (so Ctrl+C and deadlines are noticed)."""
        try:
            return self.events.get(timeout=POLL_SECONDS)
        except queue.Empty:
            return None

    def _log_in(self) -> int | None:
        """Handle events until logged in (None) or a failure (its exit code)."""
        logged_in: float | None = None
        while True:
            event = self._next()
            if isinstance(event, TrustRequired):
                code = self._ask_trust(event)
                if code is not None:
                    return code
            elif isinstance(event, KeyChanged):
                self.error(event.message)
                return EXIT_UNTRUSTED
            elif isinstance(event, ConnectFailed):
                self.error(f"error: {event.message}")
                return EXIT_CONNECTION
            elif isinstance(event, LoginRejected):
                if event.reason == "otp_required" and self.interactive:
                    self._login_with_otp()
                    continue
                self.error(f"error: {event.message}")
                return EXIT_LOGIN
            elif isinstance(event, Stopped):
                self.error(f"error: {event.message}")
                return EXIT_CONNECTION
            elif isinstance(event, LoggedIn):
                server = self.controller.server_name or self.address.key
                self.error(f"* logged in as {event.username} on {server} ({self.address.key})")
                self.controller.handle(event)
                logged_in = time.monotonic()
            elif event is not None:
                self.controller.handle(event)
                # Input waits for the first `users` push (right after login_ok and the queued
                # private messages), so that /users and completion know who is there.
                if (
                    logged_in is not None
                    and isinstance(event, Received)
                    and event.message.get("type") == "users"
                ):
                    return None
            if logged_in is not None and time.monotonic() - logged_in > USERS_WAIT_SECONDS:
                return None

    def _login_with_otp(self) -> None:
        # The session dropped the password after the rejection: ask for both, as a login form would.
        code = input("One-time code: ").strip()
        password = getpass.getpass(f"Password for {self.args.user}: ")
        self.session.login(self.args.user, password, otp=code)

    def _ask_trust(self, event: TrustRequired) -> int | None:
        intro = (
            f"First connection to {event.address}.\n"
            f"The server's key fingerprint is {event.fingerprint}\n"
            "Compare it with the one your administrator gave you "
            "(they print it with `python manage.py server_key`)."
        )
        if not self.interactive:
            self.error(
                f"error: first connection to {event.address}, whose key fingerprint is "
                f"{event.fingerprint}; not trusted (no terminal to ask). After checking it with "
                f"the administrator, run again with --trust {event.fingerprint}"
            )
            return EXIT_UNTRUSTED
        self.error(intro)
        try:
            answer = input("Trust this server and continue? [y/N] ").strip().lower()
        except EOFError:
            answer = ""
        if answer not in ("y", "yes"):
            self.error("error: server not trusted; nothing was sent.")
            return EXIT_UNTRUSTED
        self.session.trust(event.fingerprint)
        return None

    def _chat(self) -> int:
        deadline: float | None = None  # set at EOF or /quit: when to give up on the outbox
        while True:
            if deadline is None and self.view.quit_requested:
                deadline = time.monotonic() + EOF_GRACE_SECONDS
            if deadline is not None:
                pending = self.session.pending()
                if not pending:
                    self._drain()  # the answers are queued already; print them before leaving
                    return EXIT_OK
                if time.monotonic() > deadline:
                    for request in pending:
                        if request.type in ("send", "pm"):
                            self.error(f"error: not sent: {printable(request.message['text'])}")
                    return EXIT_CONNECTION
            event = self._next()
            if event is None:
                continue
            if isinstance(event, _Line):
                if deadline is None:
                    self.controller.submit(event.text)
            elif isinstance(event, _EndOfInput):
                if deadline is None:
                    deadline = time.monotonic() + EOF_GRACE_SECONDS
            elif isinstance(event, Stopped):
                self.error(f"error: {event.message}")
                return EXIT_CONNECTION
            elif isinstance(event, KeyChanged):  # on a reconnect: refused, like at the start
                self.error(event.message)
                return EXIT_UNTRUSTED
            else:
                self.controller.handle(event)


def forget_server(text: str, known: KnownServers, out: TextIO) -> int:
    try:
        address = parse_address(text)
    except AddressError as exc:
        print(f"error: {exc}", file=out)
        return EXIT_USAGE
    removed = known.forget(address)
    if removed is None:
        print(f"No key was pinned for {address.key}.", file=out)
    else:
        print(
            f"Forgot the key {removed} of {address.key}. The next connection will show the "
            "server's fingerprint: accept it only if it matches what your administrator gave you.",
            file=out,
        )
    return EXIT_OK


def main(
    argv: list[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    known_servers: KnownServers | None = None,
) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    known = known_servers or KnownServers()
    if args.forget_server:
        return forget_server(args.forget_server, known, stdout)
    if not args.server or not args.user:
        parser.print_usage(stderr)
        print("error: --server and --user are required", file=stderr)
        return EXIT_USAGE
    try:
        address = parse_address(args.server)
    except AddressError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_USAGE
    password = _read_password(args, address)
    if not password:
        print(
            "error: no password: set CHAT_PASSWORD, or run the client in a terminal to be asked.",
            file=stderr,
        )
        return EXIT_USAGE
    client = TerminalClient(
        args, address, password, stdin=stdin, stdout=stdout, stderr=stderr, known_servers=known
    )
    return client.run()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(EXIT_OK)
