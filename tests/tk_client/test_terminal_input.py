"""The terminal's input reader: it never reads ahead, so an answer is never taken as a chat line."""

from __future__ import annotations

import io
import queue

import pytest

from tk_client.terminal_account import RELOGIN_CODE, AccountDialog
from tk_client.terminal_input import Answer, EndOfInput, InputReader, Line, Question

from .helpers import WAIT_SECONDS


@pytest.fixture
def shown():
    return []


def reader_of(text: str, shown: list[str]) -> tuple[InputReader, queue.Queue]:
    events: queue.Queue = queue.Queue()
    reader = InputReader(
        io.StringIO(text), events, interactive=False, show=shown.append, on_error=shown.append
    )
    reader.start()
    return reader, events


def test_each_line_is_read_only_when_the_main_loop_says_how(shown):
    reader, events = reader_of("/password\nhunter2\nhello\n", shown)

    first = events.get(timeout=WAIT_SECONDS)
    assert first == Line("/password")
    with pytest.raises(queue.Empty):
        events.get(timeout=0.3)  # not read ahead: the next line may be a password
    reader.took(first)
    assert reader.idle
    reader.ask(Question("Current password: ", secret=True))
    answer = events.get(timeout=WAIT_SECONDS)
    assert answer == Answer("hunter2")
    assert shown == ["Current password: "]  # without a terminal the question goes to stderr
    reader.took(answer)
    reader.read_line()
    assert events.get(timeout=WAIT_SECONDS) == Line("hello")
    reader.read_line()
    assert events.get(timeout=WAIT_SECONDS) == EndOfInput()


def test_the_end_of_input_while_asking_is_the_end(shown):
    reader, events = reader_of("/2fa off\n", shown)
    reader.took(events.get(timeout=WAIT_SECONDS))
    reader.ask(Question("Password: ", secret=True))

    assert events.get(timeout=WAIT_SECONDS) == EndOfInput()


class _Controller:
    pass


def test_a_reconnect_asks_its_code_and_hands_it_to_the_session():
    dialog = AccountDialog(_Controller(), say=print, error=print, encoding="utf-8")
    given = []
    dialog.ask_code_to_log_in_again(given.append)

    assert dialog.question == RELOGIN_CODE
    dialog.answer("123456")
    assert given == ["123456"]
    assert dialog.question is None
