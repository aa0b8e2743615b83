"""The login throttles, shared by every way of proving who one is.

A password login, a ``resume`` with a device token, a password checked again to change
it or to turn two-factor login off, and a wrong one-time password all count against the
same limits (PROTOCOL.md 3.1 and 3.4): per (username, address), per address, and per
username from every address together except where that username logged in recently.
``accounts.services`` explains the limits; this module only keeps them in one place so
that no path can guess past them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from chatproto.wording import try_again

from .errors import ServiceError
from .models import User
from .throttle import Recollection, SlidingWindow, StrictWindow, network_of

log = logging.getLogger("accounts")

INVALID_CREDENTIALS = "invalid_credentials"
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class LoginLimits:
    """The login throttles, built from the settings at each login (tests change them)."""

    pair: SlidingWindow
    address: SlidingWindow
    account: StrictWindow
    known_addresses: Recollection

    @classmethod
    def from_settings(cls) -> LoginLimits:
        return cls(
            pair=SlidingWindow("login-user-address", *settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS),
            address=SlidingWindow("login-address", *settings.CHAT_LOGIN_THROTTLE_ADDRESS),
            account=StrictWindow("login-account", *settings.CHAT_LOGIN_THROTTLE_ACCOUNT),
            known_addresses=Recollection(
                "login-known-address", settings.CHAT_LOGIN_KNOWN_ADDRESS_SECONDS
            ),
        )

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds to wait before ``username`` may try from ``address``; None: try now.

        Keyed on the username as given, never on whether an account has it.
        """
        waits = [
            self.pair.retry_after(_pair(username, address)),
            self.address.retry_after(address),
        ]
        if not self.known_addresses.knows(_pair(username, network_of(address))):
            waits.append(self.account.retry_after(username))
        due = [wait for wait in waits if wait]
        return max(due) if due else None

    def count_failure(self, username: str, address: str) -> None:
        self.pair.hit(_pair(username, address))
        self.address.hit(address)
        self.account.hit(username)
        if self.account.retry_after(username):
            # Many addresses guessing at one name: worth an operator's look (no secret logged).
            log.warning(
                "failed logins of username %r reached the per-account limit; "
                "logins from addresses it has not logged in from are refused for now",
                username,
            )

    def count_success(self, username: str, address: str) -> None:
        """Clear the pair's failures and remember the address (its /64) for the account."""
        self.pair.reset(_pair(username, address))
        self.known_addresses.note(_pair(username, network_of(address)))


def _pair(username: str, address: str) -> str:
    return f"{username}\0{address}"


def rate_limited_words(wait: int) -> str:
    return f"Too many failed logins; {try_again(wait)}"


def check_password_again(user: User, password: str, address: str) -> None:
    """The password of a logged-in ``user``, asked again before a change that needs it.

    Refused like a login: :class:`ServiceError` ``rate_limited`` (with ``retry_after``)
    past a limit, checking nothing; ``invalid_credentials`` for a wrong password, counted
    as a failed login, so a stolen session cannot guess the password faster than a login.
    """
    limits = LoginLimits.from_settings()
    wait = limits.retry_after(user.username, address)
    if wait:
        raise ServiceError(RATE_LIMITED, rate_limited_words(wait), wait)
    # A session keeps its User for hours: check against the password saved now, not the
    # one loaded at login (another session may have changed it since).
    user.refresh_from_db(fields=["password"])
    if not user.check_password(password):
        limits.count_failure(user.username, address)
        raise ServiceError(INVALID_CREDENTIALS, "That is not your current password; type it again.")
