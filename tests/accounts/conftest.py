"""Fixtures of the accounts tests: fast hashing, fresh throttles, the sessions that
``accounts`` asks to end, and a clock for TOTP codes.

Opt-in (a module uses them with ``pytestmark = pytest.mark.usefixtures(...)`` or by name),
so that the older modules keep their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyotp
import pytest
from django.core.cache import cache
from django_otp.plugins.otp_totp import models as totp_models

from accounts import signals
from accounts.models import User

PASSWORD = "a good long passphrase 1"
ADDRESS = "192.0.2.10"
# 15 s into a 30 s step, so that nothing in a test crosses a step boundary by accident.
START = 1_800_000_015.0


@pytest.fixture
def fast_and_fresh(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["tests.chat.helpers.FastArgon2PasswordHasher"]
    settings.CHAT_STORAGE_KEY = tmp_path / "storage.key"
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice(transactional_db) -> User:
    return User.objects.create_user("alice", password=PASSWORD)


@dataclass
class EndRequests:
    """Every ``sessions_end_requested`` sent, as the keyword arguments it carried."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, sender, **kwargs) -> None:
        kwargs.pop("signal", None)
        self.sent.append(kwargs)

    def clear(self) -> None:
        self.sent.clear()


@pytest.fixture
def ended():
    requests = EndRequests()
    signals.sessions_end_requested.connect(requests, dispatch_uid="tests.accounts.ended")
    yield requests
    signals.sessions_end_requested.disconnect(dispatch_uid="tests.accounts.ended")


@dataclass
class TotpClock:
    """The time django-otp checks codes at, and the codes an authenticator app would show."""

    now: float = START
    secret: str = ""

    def time(self) -> float:  # stands in for the ``time`` module in django-otp's TOTP model
        return self.now

    def code(self, steps: int = 0, secret: str | None = None) -> str:
        """The code of the step ``steps`` away from now (an app whose clock is off)."""
        return pyotp.TOTP(secret or self.secret).at(self.now + 30 * steps)

    def tick(self, steps: int = 1) -> None:
        self.now += 30 * steps


@pytest.fixture
def clock(monkeypatch) -> TotpClock:
    found = TotpClock()
    monkeypatch.setattr(totp_models, "time", found)
    return found
