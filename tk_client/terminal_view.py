"""The terminal client's printer: what the controller reports, as lines on stdout and stderr.

Messages and answers to commands go to stdout, so a script keeps it as a clean
transcript; errors, connection news and file progress go to stderr. The last
line of a terminal may be a question being answered (:meth:`TerminalView.prompt`)
or the progress of the running transfers; every other line is printed above it.
What the lines say is :mod:`tk_client.terminal_lines`.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from .backup_actions import BackupRestoreProgress, progress_text
from .controller import ChatController, ControllerView
from .e2e.verification import CodesReady, VerificationRequested, Verified
from .events import Phase
from .files import TransferInfo, TransferState
from .model import ChatMessage, ConversationKey, MessageState
from .presence import Status, UsersChange
from .terminal_lines import codes_text, describe_running, format_message, printable, progress_bar

PROGRESS_LINE_SECONDS = 30.0  # without a terminal: a progress line at least this often


class TerminalView(ControllerView):
    """Prints what the controller reports: messages and answers on ``out``, news on ``err``."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.controller: ChatController | None = None
        self.quit_requested = False
        self._lock = threading.Lock()
        self._heard_users = False  # the first snapshot is not news
        self._reconnecting = False
        self._current: ConversationKey | None = None
        # End to end: the security line last printed per conversation (printed once, and
        # again when it changes), and the lines printed as "cannot decrypt" (printed again
        # when their key comes).
        self._security: dict[ConversationKey, str] = {}
        self._unreadable: set[tuple[ConversationKey, int | None]] = set()
        # File transfers: the client decides about offers; progress goes to stderr.
        self.on_offer: Callable[[TransferInfo], bool] = lambda offer: False
        # The account commands' questions and results (tk_client.terminal_account).
        self.on_account_command: Callable[[str, str], bool] = lambda name, args: False
        self.on_account_event: Callable[[Any], None] = lambda event: None
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

    def notify(self, text: str) -> None:
        """A line on stderr (an error, or news such as ``* reconnected``), above the last line."""
        self._write(self.err, text)

    def say(self, text: str) -> None:
        """Lines on stdout (an answer to a command), above the last line of stderr."""
        self._write(self.out, text)

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

    def _line(self, key: ConversationKey, message: ChatMessage) -> None:
        """A message on stdout; an unreadable one is remembered, to print it again once
        its key comes."""
        if message.unreadable:
            self._unreadable.add((key, message.msg_id))
        self._write(self.out, format_message(key, message))

    def message_added(self, key: ConversationKey, message: ChatMessage) -> None:
        if message.notice:
            if message.level == "error":
                self._write(self.err, f"error: {printable(message.text)}")
            else:
                self._write(self.out, message.text)
            return
        if message.own and key.kind == "pm" and key != self._current:
            self._say_security(key, f"the private chat with {key.name}")  # /pm USER TEXT
        if message.state is MessageState.DELIVERED:
            self._line(key, message)

    def message_changed(self, key: ConversationKey, message: ChatMessage) -> None:
        mark = (key, message.msg_id)
        if mark in self._unreadable:
            if not message.unreadable:  # its key came (4.9)
                self._unreadable.discard(mark)
                self._write(self.out, format_message(key, message, now_readable=True))
            return
        if message.state is MessageState.DELIVERED:
            if message.own:  # the server's ack of what was typed here
                self._line(key, message)
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
            self._line(key, message)
        self._write(self.out, "---")

    def current_changed(self, key: ConversationKey) -> None:
        """``* now talking in #dev (public room: the server can read it)``, once per switch;
        the same conversation again: its security line if it changed (e.g. verified)."""
        where = f"#{key.name}" if key.kind == "room" else f"the private chat with {key.name}"
        if key == self._current:
            self._say_security(key, where)
            return
        self._current = key
        security = self._security_of(key)
        self._security[key] = security
        detail = f" ({printable(security)})" if security else ""
        self._write(self.err, f"* now talking in {where}{detail}")

    def _security_of(self, key: ConversationKey) -> str:
        return self.controller.security(key) if self.controller is not None else ""

    def _say_security(self, key: ConversationKey, where: str) -> None:
        """``* the private chat with bob: end-to-end encrypted; ...`` unless already said."""
        security = self._security_of(key)
        if security and self._security.get(key) != security:
            self._security[key] = security
            self._write(self.err, f"* {where}: {printable(security)}")

    def users_changed(self, change: UsersChange) -> None:
        """One line per user who came online or went offline (not for the first snapshot)."""
        if self.controller is None:
            return
        if self._heard_users:
            came = [u for u, (b, a) in change.moved.items() if a is Status.ONLINE]
            went = [u for u, (b, a) in change.moved.items() if b is Status.ONLINE]
            for user in sorted(came):
                self._write(self.err, f"* {user} is online")
            for user in sorted(went):
                self._write(self.err, f"* {user} went offline")
        self._heard_users = True

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

    def account_command(self, command: str, args: str) -> bool:
        return self.on_account_command(command, args)

    def account_event(self, event: Any) -> None:
        self.on_account_event(event)

    # --- end to end (section 4.7-4.8) -------------------------------------------------------

    def e2e_event(self, event: Any) -> None:
        """Verification requests, codes and results, in words with what to type. (Events
        with words of their own, a device to approve or a cancellation, were printed as
        notices already.)"""
        if isinstance(event, VerificationRequested):
            if event.kind == "device":
                text = (
                    f"Your device {event.device} offers to approve this device: type /accept, "
                    "then compare the emoji on both screens (or /cancel)."
                )
            else:
                text = (
                    f"{event.user}'s device {event.device} asks to verify you by comparing "
                    "emoji: type /accept (or /cancel)."
                )
            self._write(self.out, printable(text))
        elif isinstance(event, CodesReady):
            flow = self.controller.verification(event.txn) if self.controller else None
            if flow is None or not flow.user:
                who = "the other device"
            elif flow.kind == "device":
                who = f"your device {flow.device}"
            else:
                who = flow.user
            encoding = getattr(self.out, "encoding", None)
            self._write(self.out, codes_text(who, event.emoji, event.decimals, encoding))
        elif isinstance(event, BackupRestoreProgress):
            self._write(self.err, f"* {progress_text(event)}")
        elif isinstance(event, Verified) and not event.approved_here:
            if event.kind == "device":
                text = f"Your device {event.device} is approved: it reads your encrypted messages."
            else:
                text = (
                    f"{event.user} is verified (the emoji matched on their device {event.device})."
                )
            self._write(self.out, printable(text))

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


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
