"""The username rule, said once: what a username may be, in the words users read.

The pattern itself is the protocol's (``chatproto.messages.USERNAME_RE``); this
is its wording and the one check the account services make with it.
"""

from __future__ import annotations

from chatproto.messages import USERNAME_RE

USERNAME_RULE = "1 to 150 characters: letters A-Z and a-z, digits and . @ + - _"


def valid_username(username: str) -> bool:
    """Whether ``username`` is one an account can have (the protocol's pattern)."""
    return USERNAME_RE.fullmatch(username) is not None


def username_problem(username: str) -> str | None:
    """What is wrong with ``username`` for a new account, or None: the sentence to show."""
    if valid_username(username):
        return None
    return f"Choose a username of {USERNAME_RULE}."
