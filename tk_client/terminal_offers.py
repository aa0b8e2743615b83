"""The terminal client's questions about incoming files: accept it? then where to save it?

A terminal has one input line, shared with the chat: while a question waits, the
next line typed is its answer, not a message. Offers that arrive meanwhile wait
their turn; an offer that ends before it is answered (the sender cancelled, it
expired) withdraws its question. A script passes ``--accept-files DIR`` instead
(with a device, end-to-end offers only), and without a terminal or that option an offer is declined.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .files import TransferError, TransferInfo, TransferManager, format_size, incoming_destination
from .secure_files import offer_security
from .terminal_lines import is_yes, printable
from .terminal_view import TerminalView


@dataclass
class _Question:
    """An incoming offer being asked about: accept it, then where to save it."""

    info: TransferInfo
    step: str = "accept"  # then "where"
    default: Path | None = None


class OfferQuestions:
    """The offers waiting for the user's answers, the first one asked on the last line."""

    def __init__(
        self,
        view: TerminalView,
        transfers: TransferManager,
        *,
        accept_into: str | None,
        interactive: bool,
        reads_end_to_end: Callable[[], bool] = lambda: True,
    ) -> None:
        """``accept_into``: the folder of --accept-files (no questions); ``interactive``:
        there is a terminal to ask on; ``reads_end_to_end``: this session has a device, so
        its files come end to end and a plain offer is suspect (4.12)."""
        self.view = view
        self.transfers = transfers
        self.accept_into = accept_into
        self.interactive = interactive
        self.reads_end_to_end = reads_end_to_end
        self._questions: deque[_Question] = deque()

    @property
    def asking(self) -> bool:
        """A question is on the screen: the next input line answers it."""
        return bool(self._questions)

    def offered(self, offer: TransferInfo) -> bool:
        """Accept into --accept-files, or ask; False: nobody to ask (the offer is declined).

        With a device, only an end-to-end offer is accepted unasked: a plain one (3.3) names
        a sender that the server could have made up, so its warning goes before the user
        answers (4.12). Without one, every offer is plain, as all else this session reads.
        """
        unasked = offer.end_to_end or not self.reads_end_to_end()
        if self.accept_into and not unasked and not self.interactive:
            self.view.notify(
                f"* {printable(offer.peer)}'s file {printable(offer.name)} was declined: it is "
                f"{offer_security(offer)}, and --accept-files takes only end-to-end ones"
            )
            self.transfers.decline(offer.transfer)
            return True
        if self.accept_into and unasked:
            try:
                path = self.transfers.accept_into(offer.transfer, self.accept_into)
            except TransferError as exc:
                self.view.notify(
                    f"error: {printable(offer.peer)}'s file {printable(offer.name)}: {exc}"
                )
                self.transfers.decline(offer.transfer)
                return True
            self.view.notify(
                f"* receiving {printable(offer.name)} ({format_size(offer.size)}; "
                f"{offer_security(offer)}) from "
                f"{printable(offer.peer)} into {printable(str(path))}"
            )
            return True
        if not self.interactive:
            return False
        self._questions.append(_Question(offer))
        if len(self._questions) == 1:
            self.ask()
        return True

    def ended(self, info: TransferInfo) -> bool:
        """The transfer ``info`` is over: forget its question.

        True if it was the one on the screen (now erased): the caller shows why
        the offer ended, then calls :meth:`ask` for the next question.
        """
        if self._questions and self._questions[0].info.transfer == info.transfer:
            self._questions.popleft()
            self.view.withdraw_prompt()
            return True
        self._questions = deque(q for q in self._questions if q.info.transfer != info.transfer)
        return False

    def abandon(self) -> None:
        """The input ended: nobody is left to answer, so every waiting offer is declined."""
        if self._questions:
            self.view.withdraw_prompt()
        while self._questions:
            self.transfers.decline(self._questions.popleft().info.transfer)

    def ask(self) -> None:
        """Show the first waiting question, if any."""
        if not self._questions:
            return
        question = self._questions[0]
        info = question.info
        if question.step == "accept":
            self.view.prompt(
                f"{printable(info.peer)} offers you the file {printable(info.name)} "
                f"({format_size(info.size)}; {offer_security(info)}). Accept? [y/N] "
            )
        else:
            self.view.prompt(f"Save as [{printable(str(question.default))}]: ")

    def answer(self, text: str) -> None:
        """The line typed after the question on the screen (call only while :attr:`asking`)."""
        self.view.answered()
        question = self._questions[0]
        info = question.info
        answer = text.strip()
        if question.step == "accept":
            if not is_yes(answer):
                self._questions.popleft()
                self.transfers.decline(info.transfer)
                self.ask()
                return
            try:
                question.default = incoming_destination(Path.cwd(), info.name)
            except (OSError, ValueError):
                question.default = Path(info.name)
            question.step = "where"
            self.ask()
            return
        default = question.default or Path(info.name)  # set by the "accept" step
        destination = Path(os.path.expanduser(answer)) if answer else default
        try:
            path = self.transfers.accept(info.transfer, destination)
        except TransferError as exc:
            self.view.notify(f"error: {exc}")
            if not self.transfers.answerable(info.transfer):
                self._questions.popleft()
            self.ask()
            return
        self._questions.popleft()
        self.view.notify(f"* receiving {printable(info.name)} into {printable(str(path))}")
        self.ask()
