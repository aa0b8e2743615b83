"""The clients name themselves as the user started them, in --help and in error lines."""

from __future__ import annotations

import pytest

from tk_client.entry import program_name


@pytest.mark.parametrize(
    ("argv0", "expected"),
    [
        ("/home/ann/.venv/bin/chat-cli", "chat-cli"),
        ("chat-desktop", "chat-desktop"),
        ("/src/chat/tk_client/cli.py", "python -m tk_client.cli"),  # python -m tk_client.cli
        ("-c", "python -m tk_client.cli"),
        ("", "python -m tk_client.cli"),
    ],
)
def test_the_program_name_is_the_script_or_the_module(argv0, expected):
    assert program_name("tk_client.cli", argv0) == expected
