"""One run of the terminal client: log in, then relay lines until the input ends.

:class:`TerminalClient` owns the session, the controller and the file transfers
of the run, and its main loop: input lines (read on a thread of their own, since
reading blocks) and session events arrive on one queue, so Ctrl+C and deadlines
are noticed between them. :mod:`tk_client.cli` reads the arguments and the
password and starts it; the exit codes are listed there.
"""

from __future__ import annotations

import argparse
import queue
import time
from collections.abc import Callable
from typing import Any, TextIO

from .account import DeviceRevoked
from .address import ServerAddress
from .chat_state import unsent_messages
from .controller import ChatController
from .e2e.link import E2ELink
from .events import (
    OTP_REFUSED,
    ConnectFailed,
    KeyChanged,
    LoggedIn,
    LoginNeeded,
    LoginRejected,
    OtpRequired,
    Received,
    Stopped,
    TrustRequired,
)
from .files import TransferChanged, TransferManager, TransferState
from .known_servers import FINGERPRINT_COMMAND, KnownServers
from .partials import PartialFiles
from .session import ChatSession
from .terminal_account import AccountDialog
from .terminal_input import Answer, EndOfInput, InputReader, Line
from .terminal_lines import is_yes, printable
from .terminal_offers import OfferQuestions
from .terminal_view import TerminalView

# The exit codes, as tk_client.cli's docstring explains them to users.
EXIT_OK, EXIT_CONNECTION, EXIT_USAGE, EXIT_UNTRUSTED, EXIT_LOGIN = 0, 1, 2, 3, 4
# The events that end a run, and how: a changed key says what to do in its own words.
EXIT_CODES = {
    ConnectFailed: EXIT_CONNECTION,
    LoginRejected: EXIT_LOGIN,
    LoginNeeded: EXIT_LOGIN,
    Stopped: EXIT_CONNECTION,
}
EOF_GRACE_SECONDS = 30.0  # after EOF, how long to wait for queued messages to be sent
POLL_SECONDS = 0.2  # the main loop's tick, so Ctrl+C is noticed at once
E2E_TICK_SECONDS = 5.0  # how often idle verifications are checked (they expire after 10 min)
USERS_WAIT_SECONDS = 5.0  # after login_ok, how long input waits for the list of users
NOTHING_TO_LOG_IN_WITH = (
    "no password: set CHAT_PASSWORD, or run the client in a terminal to be asked."
)


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
        password: str | None,
        *,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        known_servers: KnownServers | None = None,
        read_password: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``password`` None: log in with the device token stored for this server and user
        (``resume``); ``read_password`` asks for the password if that fails."""
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
            self.session,
            self.view,
            transfers=self.transfers,
            autoload_history=False,
            e2e_opener=E2ELink.opener(self.session),
        )
        self.questions = OfferQuestions(
            self.view,
            self.transfers,
            accept_into=args.accept_files,
            interactive=self.interactive,
            reads_end_to_end=lambda: self.controller.e2e is not None,
        )
        self.view.controller = self.controller
        self.view.on_offer = self.questions.offered
        self.dialog = AccountDialog(
            self.controller,
            say=self.view.say,
            error=self.view.notify,
            encoding=getattr(stdout, "encoding", None),
            interactive=self.interactive,
        )
        self.view.on_account_command = self.dialog.command
        self.view.on_account_event = self._account_event
        self.reader = InputReader(
            stdin,
            self.events,
            interactive=self.interactive,
            show=self.view.notify,
            on_error=self.view.notify,
        )
        self._password = password
        self._read_password = read_password
        self._undelivered = 0  # files offered by the user that did not arrive
        self._own_device_revoked = False  # /revoke of this very device: the session ends next
        self._asked_on_screen = False  # a question shown on the last line: the next line answers

    def error(self, text: str) -> None:
        self.view.notify(text)

    def _account_event(self, event: Any) -> None:
        if isinstance(event, DeviceRevoked) and event.device == self.session.device:
            self._own_device_revoked = True
        self.dialog.event(event)

    def _ending(self) -> bool:
        """The server is about to end the session (/logout, or this device revoked): the run
        waits for its words instead of leaving as soon as nothing is pending."""
        return self.session.logging_out or self._own_device_revoked

    def _end(
        self, event: KeyChanged | ConnectFailed | LoginRejected | LoginNeeded | Stopped
    ) -> int:
        """Say why the run ends, and return its exit code."""
        if isinstance(event, KeyChanged):
            self.error(event.message)  # several lines, ending with what to do
            return EXIT_UNTRUSTED
        if isinstance(event, Stopped) and event.reason == "logged_out":
            self.error(f"* {event.message}")
            return EXIT_OK
        if isinstance(event, LoginNeeded):
            self.error(f"error: {event.message} Run the client again to log in.")
        else:
            self.error(f"error: {event.message}")
        return EXIT_CODES[type(event)]

    def run(self) -> int:
        try:
            if self._password is None:
                self.session.resume(self.args.user)
            else:
                self.session.login(
                    self.args.user,
                    self._password,
                    otp=self.args.otp,
                    register=self.args.register,
                    remember=self.args.remember,
                )
            self._password = None
            code = self._log_in()
            if code is not None:
                return code
            if self.interactive:
                _enable_completion(self.controller)
            self.reader.start()
            return self._chat()
        except KeyboardInterrupt:
            return EXIT_OK
        finally:
            self.transfers.close()  # cancels what is still open: no partial file stays
            if not self.transfers.busy():
                self.partials.close()  # every temporary file is gone: the journal can go too
            self.session.close()

    def _drain(self) -> Stopped | KeyChanged | None:
        """Handle the session events already queued (input lines no longer count); the
        session's end among them, if any, is returned for the caller to say."""
        ended: Stopped | KeyChanged | None = None
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return ended
            if isinstance(event, Stopped | KeyChanged):
                ended = ended or event
            elif not isinstance(event, Line | Answer | EndOfInput):
                self._handle(event)

    def _handle(self, event: Any) -> None:
        if isinstance(event, TransferChanged) and event.info.over:
            info = event.info
            if info.outgoing and info.stage is TransferState.FAILED:
                self._undelivered += 1
            if self.questions.ended(info):
                self.controller.handle(event)  # its notice says why, before the next question
                self.questions.ask()
                return
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
            elif isinstance(event, OtpRequired):
                otp = self._ask_code(event)
                if otp is None:
                    return EXIT_LOGIN
                self.session.answer_otp(otp)
            elif isinstance(event, LoginNeeded):
                self.error(f"* {event.message}")
                password = self._read_password()
                if password is None:
                    self.error(f"error: {NOTHING_TO_LOG_IN_WITH}")
                    return EXIT_LOGIN
                self.session.login(
                    self.args.user, password, otp=self.args.otp, remember=self.args.remember
                )
            elif isinstance(event, KeyChanged | ConnectFailed | LoginRejected | Stopped):
                return self._end(event)
            elif isinstance(event, LoggedIn):
                server = self.controller.server_name or self.address.key
                self.error(f"* logged in as {event.username} on {server} ({self.address.key})")
                if event.device is not None and not event.again:
                    self.error(
                        "* this device stays signed in: the next run needs no password "
                        "(/logout forgets it)"
                    )
                self.controller.handle(event)
                if event.otp_enrolment_required:
                    return None  # nothing but /2fa on is served: no list of users comes
                logged_in = time.monotonic()
            elif event is not None:
                self.controller.handle(event)
                # Input waits for the `users` snapshot (right after login_ok and the queued
                # private messages), so that /users and completion know who is there.
                if (
                    logged_in is not None
                    and isinstance(event, Received)
                    and event.message.get("type") == "users"
                ):
                    return None
            if logged_in is not None and time.monotonic() - logged_in > USERS_WAIT_SECONDS:
                return None

    def _ask_code(self, event: OtpRequired) -> str | None:
        """The one-time code the login needs: asked on the terminal, else None (said why)."""
        if not self.interactive:
            if event.retry:
                self.error(f"error: {OTP_REFUSED} Run again with --otp CODE.")
            else:
                self.error(
                    "error: this account has two-factor login: run again with --otp CODE "
                    "(the code from your authenticator app, or a backup code)."
                )
            return None
        if event.retry:
            self.error(f"error: {OTP_REFUSED}")
        try:
            return input("One-time code: ").strip()
        except EOFError:
            return None

    def _ask_trust(self, event: TrustRequired) -> int | None:
        intro = (
            f"First connection to {event.address}.\n"
            f"The server's key fingerprint is {event.fingerprint}\n"
            "Compare it with the one your administrator gave you "
            f"(they print it with `{FINGERPRINT_COMMAND}`)."
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
            answer = input("Trust this server and continue? [y/N] ")
        except EOFError:
            answer = ""
        if not is_yes(answer):
            self.error("error: server not trusted; nothing was sent.")
            return EXIT_UNTRUSTED
        self.session.trust(event.fingerprint)
        return None

    def _next_read(self) -> None:
        """Tell the input reader how to read the next line, once it has delivered the last.

        A question that comes while a chat line is being read (a reconnect's code) cannot
        be asked that way: it is shown on the last line instead, and the line being typed
        answers it (only questions whose answers may be seen come so).
        """
        question = self.dialog.question
        if not self.reader.idle:
            if question is not None and not question.secret and not self._asked_on_screen:
                self.view.prompt(question.text)
                self._asked_on_screen = True
            return
        if self.dialog.waiting or self.controller.starting_after_enrolment:
            return  # the next line waits for the server's answer, or for the session's start
        if question is not None:
            self.reader.ask(question)
        else:
            self.reader.read_line()

    def _chat(self) -> int:
        deadline: float | None = None  # set at EOF or /quit: when to give up on the outbox
        ticked = time.monotonic()
        while True:
            if time.monotonic() - ticked >= E2E_TICK_SECONDS:
                ticked = time.monotonic()
                self.controller.e2e_tick()
            self._next_read()  # after the last line's command ran: it may have asked something
            if deadline is None and self.view.quit_requested:
                deadline = time.monotonic() + EOF_GRACE_SECONDS
            if deadline is not None:
                pending = self.session.pending()
                if self.transfers.busy() or self.controller.e2e_busy:
                    # Transfers end by themselves: done, declined, expired (5 minutes), lost.
                    deadline = max(deadline, time.monotonic() + EOF_GRACE_SECONDS)
                elif not pending and not self._ending():
                    ended = self._drain()  # the answers are queued already: print them
                    if ended is not None:
                        return self._end(ended)
                    # An answer may have led to another request (/revoke NAME after the list).
                    if not self.session.pending() and not self._ending():
                        return EXIT_CONNECTION if self._undelivered else EXIT_OK
                if time.monotonic() > deadline:
                    for request in unsent_messages(pending):
                        self.error(f"error: not sent: {printable(request.message['text'])}")
                    return EXIT_CONNECTION
            event = self._next()
            if event is None:
                continue
            if isinstance(event, Line | Answer):
                self.reader.took(event)
            if isinstance(event, Line):
                if self._asked_on_screen:
                    self._asked_on_screen = False
                    self.view.answered()
                    self.dialog.answer(event.text)
                elif self.questions.asking:
                    self.questions.answer(event.text)
                elif deadline is None:
                    self.controller.submit(event.text)
            elif isinstance(event, Answer):
                self.dialog.answer(event.text)
            elif isinstance(event, EndOfInput):
                self.questions.abandon()
                self.dialog.abandon()
                if deadline is None:
                    deadline = time.monotonic() + EOF_GRACE_SECONDS
            elif isinstance(event, OtpRequired):  # a reconnect of an account with two-factor login
                if not self.interactive:
                    self._ask_code(event)
                    return EXIT_LOGIN
                if event.retry:
                    self.error(f"error: {OTP_REFUSED}")
                self.error("* logging in again after the reconnect needs a one-time code")
                self.dialog.ask_code_to_log_in_again(self.session.answer_otp)
            elif isinstance(event, Stopped | KeyChanged | LoginNeeded):  # also on a reconnect
                return self._end(event)
            else:
                self._handle(event)

    # --- incoming files ---------------------------------------------------------------------
