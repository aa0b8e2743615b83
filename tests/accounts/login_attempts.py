"""A login attempt as a value, for tests that compare many of them.

:func:`accounts.services.authenticate` raises :class:`~accounts.errors.LoginRefused`
as every service raises its :class:`~accounts.errors.ServiceError`; tests of the
throttles compare whole answers (the same for an unknown name as for a real one),
which reads better as values.
"""

from __future__ import annotations

from dataclasses import dataclass

from accounts import services
from accounts.models import User


@dataclass(frozen=True)
class LoginAttempt:
    """The user logged in, or the ``reason`` (an error code) and ``retry_after``."""

    user: User | None = None
    reason: str | None = None
    retry_after: int | None = None


def attempt_login(
    username: str, password: str, address: str, otp: str | None = None
) -> LoginAttempt:
    try:
        return LoginAttempt(user=services.authenticate(username, password, address, otp=otp))
    except services.LoginRefused as refused:
        return LoginAttempt(reason=refused.code, retry_after=refused.retry_after)
