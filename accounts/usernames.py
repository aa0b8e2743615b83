"""The username rule, said once: what a username may be, in the words users read.

The pattern and its wording are the protocol's (``chatproto.messages.USERNAME_RE``
and ``USERNAME_RULE``, which the clients show too); this is the check the account
services and the admin make with them.
"""

from __future__ import annotations

from chatproto.messages import USERNAME_RE, USERNAME_RULE

__all__ = ["USERNAME_ADVICE", "USERNAME_RULE", "username_problem", "valid_username"]

# What to do about a username that breaks the rule (registration and the admin's form).
USERNAME_ADVICE = f"Choose a username of {USERNAME_RULE}."


def valid_username(username: str) -> bool:
    """Whether ``username`` is one an account can have (the protocol's pattern)."""
    return USERNAME_RE.fullmatch(username) is not None


def username_problem(username: str) -> str | None:
    """What is wrong with ``username`` for a new account, or None: the sentence to show."""
    if valid_username(username):
        return None
    return USERNAME_ADVICE
