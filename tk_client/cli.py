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

Files: ``/file USER PATH`` offers a file; its progress shows on stderr (one
updating line on a terminal, a line every 10% otherwise). An incoming offer is
asked about on the terminal (accept? then where to save it); a script passes
``--accept-files DIR`` to accept every offer into DIR, and without either the
offer is declined. A received file appears only once complete and verified
(size and SHA-256); at EOF the client waits for its transfers to end.

Exit codes: 0 after EOF, ``/quit`` or Ctrl+C with everything sent; 1 connection
failed or lost for good, messages left unsent, or a file offered was not
delivered; 2 usage; 3 server key not trusted (refused, or changed); 4 login
refused.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import queue
import shutil
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
from .files import (
    TransferChanged,
    TransferError,
    TransferInfo,
    TransferManager,
    TransferState,
    format_size,
    incoming_destination,
)
from .known_servers import KnownServers
from .model import ChatMessage, ConversationKey, MessageState
from .partials import PartialFiles
from .session import ChatSession

EXIT_OK, EXIT_CONNECTION, EXIT_USAGE, EXIT_UNTRUSTED, EXIT_LOGIN = 0, 1, 2, 3, 4
EOF_GRACE_SECONDS = 30.0  # after EOF, how long to wait for queued messages to be sent
POLL_SECONDS = 0.2  # the main loop's tick, so Ctrl+C is noticed at once
USERS_WAIT_SECONDS = 5.0  # after login_ok, how long input waits for the list of users
PROGRESS_LINE_SECONDS = 30.0  # without a terminal: a progress line at least this often
BAR_WIDTH = 20  # characters of the progress bar on a terminal


@dataclass(frozen=True)
class _Line:
    text: str


@dataclass(frozen=True)
class _EndOfInput:
    pass


@dataclass
class _Question:
    """An incoming offer being asked about on the terminal: accept it, then where to save it."""

    info: TransferInfo
    step: str = "accept"  # then "where"
    default: Path | None = None


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
        # File transfers: the client decides about offers; progress goes to stderr.
        self.on_offer: Callable[[TransferInfo], bool] = lambda offer: False
        self._terminal = _isatty(err)
        # The last line of the terminal: a question waiting for its answer, else the progress.
        self._prompt = ""
        self._status = ""
        self._running: dict[str, TransferInfo] = {}
        self._last_line: dict[str, tuple[TransferState, int, float]] = {}  # stage, tenth, time

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            self._lift()
            stream.write(text + "\n")
            stream.flush()
            self._restore()

    def _lift(self) -> None:
        """Clear the question or progress line, to print a line above it (lock held)."""
        if self._prompt or self._status:
            self.err.write("\r\x1b[K" if self._terminal else "\n")
            self.err.flush()

    def _restore(self) -> None:
        bottom = self._prompt or self._status
        if bottom:
            self.err.write(bottom)
            self.err.flush()

    def prompt(self, text: str) -> None:
        """Ask on stderr; the next line typed is the answer (then :meth:`answered`)."""
        with self._lock:
            self._lift()
            self._prompt = text
            self._restore()

    def answered(self) -> None:
        """The user pressed Enter after a question: the cursor is on a new line."""
        with self._lock:
            self._prompt = ""
            self._restore()

    def withdraw_prompt(self) -> None:
        """The question went away unanswered (the offer ended): erase it."""
        with self._lock:
            if self._prompt:
                self._lift()
                self._prompt = ""
                self._restore()

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

    # --- file transfers ---------------------------------------------------------------------

    def file_offered(self, offer: TransferInfo) -> bool:
        if self.on_offer(offer):
            return True
        self._write(self.err, "* to accept files without a terminal, run with --accept-files DIR")
        return False

    def transfer_changed(self, info: TransferInfo) -> None:
        if info.over:
            self._running.pop(info.transfer, None)
            self._last_line.pop(info.transfer, None)
        else:
            self._running[info.transfer] = info
        if self._terminal:
            self._redraw()
        elif not info.over:
            self._progress_line(info)

    def _redraw(self) -> None:
        """One updating line on the terminal: the oldest running transfer, and how many more."""
        line = ""
        if self._running:
            infos = list(self._running.values())
            line = progress_bar(infos[0])
            if len(infos) > 1:
                line += f"  (+{len(infos) - 1} more)"
            width = shutil.get_terminal_size((80, 24)).columns
            line = line[: max(10, width - 1)]
        with self._lock:
            if not self._prompt:  # never over a question being answered
                self.err.write("\r\x1b[K" + line)
                self.err.flush()
            self._status = line

    def _progress_line(self, info: TransferInfo) -> None:
        """Without a terminal: a line when the stage changes, then every 10% or 30 seconds."""
        now = time.monotonic()
        tenth = int(info.fraction * 10)
        last = self._last_line.get(info.transfer)
        if last is not None:
            stage, last_tenth, when = last
            if stage is info.stage and tenth == last_tenth and now - when < PROGRESS_LINE_SECONDS:
                return
        self._last_line[info.transfer] = (info.stage, tenth, now)
        self._write(self.err, f"* {printable(describe_running(info))}")


def describe_running(info: TransferInfo) -> str:
    """``sending report.pdf to bob: 4.0 MiB of 10.0 MiB (40%), 12.1 MiB/s, 1 s left``."""
    if info.stage is TransferState.RUNNING:
        where = f"to {info.peer}" if info.outgoing else f"from {info.peer}"
        verb = "sending" if info.outgoing else "receiving"
        return f"{verb} {info.name} {where}: {info.progress}"
    if info.stage is TransferState.PREPARING:
        return f"{info.message}: {info.progress}"
    return info.message


def progress_bar(info: TransferInfo) -> str:
    """``report.pdf -> bob [#########...........] 45% 4.5 MiB of 10.0 MiB, 5 MiB/s, 1 s left``."""
    arrow = f"{info.name} -> {info.peer}" if info.outgoing else f"{info.name} <- {info.peer}"
    if info.stage not in (TransferState.RUNNING, TransferState.PREPARING):
        return printable(f"{arrow}: {info.message}")
    filled = int(info.fraction * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    label = "checksum " if info.stage is TransferState.PREPARING else ""
    return printable(f"{arrow} [{bar}] {label}{info.progress}")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


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
        "--accept-files",
        metavar="DIR",
        help="accept every file offered to you, saving it in DIR (for scripts; "
        "otherwise you are asked, or offers are declined without a terminal)",
    )
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
        # Temporary files of downloads that a killed earlier run left behind go now.
        self.partials = PartialFiles()
        self.partials.remove_stale()
        self.transfers = TransferManager(self.session, self.events, partials=self.partials)
        self.controller = ChatController(
            self.session, self.view, transfers=self.transfers, autoload_history=False
        )
        self.view.controller = self.controller
        self.view.on_offer = self._on_offer
        self._password = password
        self._questions: deque[_Question] = deque()  # offers waiting for the user's answer
        self._undelivered = 0  # files offered by the user that did not arrive

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
            self.transfers.close()  # cancels what is still open: no partial file stays
            if not self.transfers.busy():
                self.partials.close()  # every temporary file is gone: the journal can go too
            self.session.close()

    def _drain(self) -> None:
        """Handle the session events already queued (input lines no longer count)."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if not isinstance(event, _Line | _EndOfInput | Stopped | KeyChanged):
                self._handle(event)

    def _handle(self, event: Any) -> None:
        if isinstance(event, TransferChanged) and event.info.over:
            info = event.info
            if info.outgoing and info.stage is TransferState.FAILED:
                self._undelivered += 1
            if self._questions and self._questions[0].info.transfer == info.transfer:
                self._questions.popleft()
                self.view.withdraw_prompt()
                self.controller.handle(event)  # its notice says why, before the next question
                self._ask()
                return
            self._questions = deque(q for q in self._questions if q.info.transfer != info.transfer)
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
                if self.transfers.busy():
                    # Transfers end by themselves: done, declined, expired (5 minutes), lost.
                    deadline = max(deadline, time.monotonic() + EOF_GRACE_SECONDS)
                elif not pending:
                    self._drain()  # the answers are queued already; print them before leaving
                    return EXIT_CONNECTION if self._undelivered else EXIT_OK
                if time.monotonic() > deadline:
                    for request in pending:
                        if request.type in ("send", "pm"):
                            self.error(f"error: not sent: {printable(request.message['text'])}")
                    return EXIT_CONNECTION
            event = self._next()
            if event is None:
                continue
            if isinstance(event, _Line):
                if self._questions:
                    self._answer(event.text)
                elif deadline is None:
                    self.controller.submit(event.text)
            elif isinstance(event, _EndOfInput):
                if self._questions:
                    self.view.withdraw_prompt()
                while self._questions:  # nobody is left to answer them
                    self.transfers.decline(self._questions.popleft().info.transfer)
                if deadline is None:
                    deadline = time.monotonic() + EOF_GRACE_SECONDS
            elif isinstance(event, Stopped):
                self.error(f"error: {event.message}")
                return EXIT_CONNECTION
            elif isinstance(event, KeyChanged):  # on a reconnect: refused, like at the start
                self.error(event.message)
                return EXIT_UNTRUSTED
            else:
                self._handle(event)

    # --- incoming files ---------------------------------------------------------------------

    def _on_offer(self, offer: TransferInfo) -> bool:
        """Accept into --accept-files, or ask on the terminal; False: nobody to ask (declined)."""
        folder = self.args.accept_files
        if folder:
            try:
                path = self.transfers.accept_into(offer.transfer, folder)
            except TransferError as exc:
                self.error(f"error: {printable(offer.peer)}'s file {printable(offer.name)}: {exc}")
                self.transfers.decline(offer.transfer)
                return True
            self.error(
                f"* receiving {printable(offer.name)} ({format_size(offer.size)}) from "
                f"{printable(offer.peer)} into {printable(str(path))}"
            )
            return True
        if not self.interactive:
            return False
        self._questions.append(_Question(offer))
        if len(self._questions) == 1:
            self._ask()
        return True

    def _ask(self) -> None:
        if not self._questions:
            return
        question = self._questions[0]
        info = question.info
        if question.step == "accept":
            self.view.prompt(
                f"{printable(info.peer)} offers you the file {printable(info.name)} "
                f"({format_size(info.size)}). Accept? [y/N] "
            )
        else:
            self.view.prompt(f"Save as [{printable(str(question.default))}]: ")

    def _answer(self, text: str) -> None:
        self.view.answered()
        question = self._questions[0]
        info = question.info
        answer = text.strip()
        if question.step == "accept":
            if answer.lower() not in ("y", "yes"):
                self._questions.popleft()
                self.transfers.decline(info.transfer)
                self._ask()
                return
            try:
                question.default = incoming_destination(Path.cwd(), info.name)
            except (OSError, ValueError):
                question.default = Path(info.name)
            question.step = "where"
            self._ask()
            return
        destination = Path(os.path.expanduser(answer)) if answer else question.default
        try:
            path = self.transfers.accept(info.transfer, destination)
        except TransferError as exc:
            self.error(f"error: {exc}")
            if not self.transfers.answerable(info.transfer):
                self._questions.popleft()
            self._ask()
            return
        self._questions.popleft()
        self.error(f"* receiving {printable(info.name)} into {printable(str(path))}")
        self._ask()


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
    if args.accept_files and not os.path.isdir(args.accept_files):
        print(f"error: --accept-files {args.accept_files}: no such folder", file=stderr)
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
