"""The terminal client's input: one line at a time, read when the main loop says how.

Reading blocks, so it happens on a thread of its own; the lines go to the main
loop's queue. After each line the reader waits to be told how to read the next
one: as a chat line, or as the answer to a question (``/password`` asks for
passwords, which a terminal must not echo: ``getpass``). Reading ahead would
take the password as a chat line, or show it on the screen, so the reader never
reads before it is told. Without a terminal the answers are simply the next
lines of the input (a script pipes them in), and the question is printed on
stderr so a transcript shows what was asked.
"""

from __future__ import annotations

import getpass
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class Line:
    """A chat line (a message or a command)."""

    text: str


@dataclass(frozen=True)
class Answer:
    """The answer to a question (``secret`` ones were read without echo)."""

    text: str = ""


@dataclass(frozen=True)
class EndOfInput:
    pass


@dataclass(frozen=True)
class Question:
    """What to read next: ``text`` is asked; ``secret`` answers are not echoed."""

    text: str
    secret: bool = False


class InputReader:
    """Reads stdin on its own thread, each line only after :meth:`read_line` or :meth:`ask`."""

    def __init__(
        self,
        stdin: TextIO,
        events: queue.Queue[Any],
        *,
        interactive: bool,
        show: Callable[[str], None],
        on_error: Callable[[str], None],
    ) -> None:
        """``show``: prints a question without a terminal; ``on_error``: reading failed."""
        self.stdin = stdin
        self.events = events
        self.interactive = interactive
        self._show = show
        self._on_error = on_error
        self._orders: queue.Queue[Question | None] = queue.Queue()
        # The main loop took the last line (``took``) and has not said how to read the next.
        # Kept by the main loop alone: the reader's own view would race with its queue.
        self.idle = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start reading; the first line is a chat line."""
        self._thread = threading.Thread(target=self._run, name="chat-input", daemon=True)
        self._thread.start()

    def took(self, event: Line | Answer) -> None:
        """The main loop took ``event`` from its queue: the reader waits for an order now."""
        self.idle = True

    def read_line(self) -> None:
        """Read the next line as a chat line (only when :attr:`idle`)."""
        self._order(None)

    def ask(self, question: Question) -> None:
        """Read the next line as the answer to ``question`` (only when :attr:`idle`)."""
        self._order(question)

    def _order(self, question: Question | None) -> None:
        self.idle = False
        self._orders.put(question)

    def _run(self) -> None:
        question: Question | None = None
        try:
            while True:
                text = self._read(question)
                if text is None:
                    break
                self.events.put(Line(text) if question is None else Answer(text))
                question = self._orders.get()
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self._on_error(f"error: cannot read the input: {exc}")
        self.events.put(EndOfInput())

    def _read(self, question: Question | None) -> str | None:
        """One line without its ending; None at the end of the input."""
        if self.interactive:
            try:
                if question is None:
                    return input()
                if question.secret:
                    return getpass.getpass(question.text)
                return input(question.text)
            except EOFError:
                return None
        if question is not None:
            self._show(question.text)
        line = self.stdin.readline()
        return line.rstrip("\r\n") if line else None
