"""How a typed line reads, for both clients: text or a command, aliases, /help, arguments."""

from __future__ import annotations

import pytest

from tk_client.commands import (
    ALIASES,
    COMMANDS,
    CreateArguments,
    Invocation,
    Text,
    UnknownCommand,
    argument_kinds,
    canonical,
    help_text,
    parse_create,
    parse_line,
    room_argument,
    unquote_path,
)


def test_plain_text_is_sent_exactly_as_typed_without_the_line_ending():
    assert parse_line("  hello there  \r\n") == Text("  hello there  ")


def test_a_double_slash_sends_text_that_starts_with_a_slash():
    assert parse_line("//shrug") == Text("/shrug")


@pytest.mark.parametrize("line", ["", "   ", "\n", "\t\r\n"])
def test_a_blank_line_is_nothing_to_do(line):
    assert parse_line(line) is None


def test_a_command_gets_its_arguments_stripped():
    assert parse_line("/pm bob  see you later  \n") == Invocation("pm", "bob  see you later")
    assert parse_line("/users") == Invocation("users", "")


def test_aliases_and_any_case_name_the_same_command():
    assert parse_line("/MSG bob hi") == Invocation("pm", "bob hi")
    assert parse_line("/Part #dev") == Invocation("leave", "#dev")
    assert canonical("WHO") == "users"
    assert canonical("nonsense") == "nonsense"


def test_an_unknown_command_keeps_the_word_as_typed():
    assert parse_line("/Frob the knob") == UnknownCommand("Frob")


def test_help_lists_every_command_and_explains_one_on_request():
    table = help_text()
    assert all(command.usage in table for command in COMMANDS.values())
    assert "start it with // to send /" in table
    assert help_text("invite") == "Usage: /invite ROOM USER -- add USER to your private room ROOM"


def test_completion_knows_every_command_and_alias_with_its_arguments():
    kinds = argument_kinds()
    assert set(kinds) == set(COMMANDS) | set(ALIASES)
    assert kinds["msg"] == kinds["pm"] == ("user",)
    assert kinds["quit"] == ()


def test_a_room_may_be_typed_with_or_without_its_hash():
    assert room_argument("#dev") == room_argument("dev") == "dev"


@pytest.mark.parametrize(
    ("typed", "path"),
    [
        ("  /tmp/report.pdf ", "/tmp/report.pdf"),
        ("'/tmp/my report.pdf'", "/tmp/my report.pdf"),
        ('"/tmp/my report.pdf"', "/tmp/my report.pdf"),
        ("'half-quoted.pdf", "'half-quoted.pdf"),
        ("'", "'"),
        ("", ""),
    ],
)
def test_a_path_dropped_into_a_terminal_loses_its_quotes(typed, path):
    assert unquote_path(typed) == path


def test_create_reads_the_room_its_members_once_each_and_the_private_flag():
    assert parse_create("#ops bob carol bob") == CreateArguments("ops", ("bob", "carol"), False)
    assert parse_create("--private notes") == CreateArguments("notes", (), True)
    assert parse_create("notes --private") == CreateArguments("notes", (), True)


@pytest.mark.parametrize("args", ["", "   ", "--private"])
def test_create_without_a_room_name_is_a_usage_error(args):
    assert parse_create(args) is None
