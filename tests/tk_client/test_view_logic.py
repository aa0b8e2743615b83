"""The bits of the views that are plain logic (no display needed)."""

from __future__ import annotations

import datetime as dt

from tk_client.views.main_window import InputHistory
from tk_client.views.message_view import day_label, displayable
from tk_client.views.theme import SENDER_COLOURS, sender_colour


def test_up_and_down_walk_the_sent_lines_and_keep_the_draft():
    history = InputHistory()
    history.add("first")
    history.add("second")

    assert history.previous("half typed") == "second"
    assert history.previous("second") == "first"
    assert history.previous("first") is None
    assert history.next() == "second"
    assert history.next() == "half typed"
    assert history.next() is None


def test_repeated_lines_are_remembered_once():
    history = InputHistory()
    history.add("same")
    history.add("same")
    assert history.lines == ["same"]


def test_the_recovery_key_typed_as_a_command_is_not_remembered():
    history = InputHistory()
    history.add("hello")
    history.add("/recover ABCD EFGH ijkl")
    history.add("/RECOVER ABCD")

    assert history.lines == ["hello"]
    assert history.previous("") == "hello"


def test_characters_tk_cannot_draw_are_replaced():
    assert displayable("ok \U0001f600 fine \u00e9") == "ok \ufffd fine \u00e9"


def test_sender_colours_are_stable_per_name():
    assert sender_colour("alice") == sender_colour("alice")
    assert sender_colour("alice") in SENDER_COLOURS
    assert len({sender_colour(name) for name in ("alice", "bob", "carol", "dave", "erin")}) > 1


def test_days_are_named_like_people_name_them():
    today = dt.date(2026, 3, 4)
    assert day_label(today, today) == "Today"
    assert day_label(dt.date(2026, 3, 3), today) == "Yesterday"
    assert day_label(dt.date(2026, 2, 27), today) == "Friday, 27 February 2026"
