"""What ``accounts`` tells other apps about accounts, without importing them.

``accounts`` sits below ``chat``: it must not import it (tests/chatproto/test_imports.py
checks). Saving or deleting a :class:`~accounts.models.User` already sends Django's
model signals; what is not a model change, such as an operator ending someone's live
chat sessions without deactivating the account, is announced here instead, and
``chat.signals`` acts on it.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent with ``user_id`` (int) and ``reason`` (a PROTOCOL.md ``session_ended`` reason,
# ``ended_by_admin``) when an operator ends a user's sessions from the admin or a shell.
# The account stays active: the user may log in again.
sessions_end_requested = Signal()

ENDED_BY_ADMIN = "ended_by_admin"


def request_end_of_sessions(user_id: int, reason: str = ENDED_BY_ADMIN) -> None:
    """Ask whoever runs live sessions (the chat app) to end those of ``user_id``.

    Nothing happens if no app listens; the chat app ends them after the current
    transaction commits, on every server process it can reach.
    """
    sessions_end_requested.send(sender=None, user_id=user_id, reason=reason)
