"""The one error model of the server's services: :class:`ServiceError` and its kinds.

A service (``accounts.services``, ``chat.services``) that refuses something the
user asked for raises a :class:`ServiceError`: a ``code`` (the protocol's error
code or ``login_failed``/``register_failed`` reason), a ``message`` for a person
that says what to do next, and, when waiting helps, ``retry_after`` seconds. The
consumer turns it into the answer the protocol names; the admin into a form error.

It lives in ``accounts`` because ``chat`` imports ``accounts`` and never the
other way round; ``chat.services`` re-exports it.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal the user can act on: ``code``, ``message`` and maybe ``retry_after``."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def fields(self) -> dict[str, object]:
        """``reason``, ``message`` and, if set, ``retry_after``: a ``*_failed`` answer's fields."""
        found: dict[str, object] = {"reason": str(self.code), "message": self.message}
        if self.retry_after is not None:
            found["retry_after"] = self.retry_after
        return found


class LoginRefused(ServiceError):
    """A login refused: ``invalid_credentials``, or ``rate_limited`` with ``retry_after``."""


class RegistrationRefused(ServiceError):
    """A registration refused; ``code`` is a ``register_failed`` reason (PROTOCOL.md 3.1)."""
