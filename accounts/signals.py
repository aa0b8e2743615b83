"""What ``accounts`` tells other apps about accounts, without importing them.

``accounts`` sits below ``chat``: it must not import it (tests/chatproto/test_imports.py
checks). Saving or deleting a :class:`~accounts.models.User` already sends Django's
model signals; what is not a model change, such as an operator ending someone's live
chat sessions without deactivating the account, a device revoked or a password changed
(PROTOCOL.md 3.4), is announced here instead, and ``chat.signals`` acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.dispatch import Signal

# Sent with ``user_id`` (int), ``reason`` (a PROTOCOL.md ``session_ended`` reason),
# ``devices`` (None: every session of the user; else a list of device ids: only the sessions
# logged in as one of them) and ``except_session`` (None, or the opaque key of one session,
# the chat's channel name, that stays). The account stays active: the user may log in again.
# The receiver (chat) acts after the current transaction commits, on every server process.
sessions_end_requested = Signal()

ENDED_BY_ADMIN = "ended_by_admin"
REVOKED = "revoked"
PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a session_ended reason
LOGGED_OUT = "logged_out"


def request_end_of_sessions(
    user_id: int,
    reason: str = ENDED_BY_ADMIN,
    *,
    devices: Sequence[str] | None = None,
    except_session: str | None = None,
) -> None:
    """Ask whoever runs live sessions (the chat app) to end those of ``user_id``.

    ``devices`` narrows it to the sessions of those devices; ``except_session`` spares
    one session (the one that asked for a password change). Nothing happens if no app
    listens; the chat app ends them after the current transaction commits, on every
    server process it can reach.
    """
    sessions_end_requested.send(
        sender=None,
        user_id=user_id,
        reason=reason,
        devices=None if devices is None else list(devices),
        except_session=except_session,
    )
