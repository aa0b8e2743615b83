"""Accounts: logging in, registering, activating. Sync functions, run in worker threads.

Every function here may hash a password (Argon2: about 0.15 s of CPU and
100 MiB of memory), so callers on the event loop run them with
``database_sync_to_async(..., thread_sensitive=False)``, never inline.

Login failures are counted in the cache per (username, address), per address
and per username (the account, from every address together), and checked
before any password is: past a limit the answer is ``rate_limited`` whatever
the password. The limits are keyed on the username as given (login compares
it as given), never on whether an account has it, so an unknown username is
counted and refused exactly like a known one and ``rate_limited`` reveals
nothing about which accounts exist.

The per-account limit (ASVS 2.2.1: at most 100 failures an hour) stops an
attacker with many addresses from guessing at one account without end. So
that it cannot lock the owner out, it decays by itself (a sliding window, no
lockout flag to clear), and it does not apply from an address (an IPv6 /64)
where that username logged in successfully within
``CHAT_LOGIN_KNOWN_ADDRESS_SECONDS``: the owner on their usual network keeps
getting in during an attack, under the per-address limits like anyone there.
A success does not clear the account's count, or the owner logging in would
reopen the account to the attack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from chatproto.wording import try_again

from .errors import LoginRefused as LoginRefused
from .errors import RegistrationRefused as RegistrationRefused
from .models import User
from .throttle import Recollection, SlidingWindow, StrictWindow, network_of
from .usernames import USERNAME_RULE, username_problem, valid_username

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


def authenticate(username: str, password: str, address: str) -> User:
    """Check credentials with throttling; equal answers and effort for every kind of failure.

    Unknown user, wrong password and inactive account all hash the password
    once and raise :class:`LoginRefused` ``invalid_credentials``. A refusal for a
    limit (``rate_limited``, with ``retry_after``) hashes nothing and counts
    nothing, so a limit decays while it refuses.
    """
    limits = LoginLimits.from_settings()
    pair_key = f"{username}\0{address}"
    known_key = f"{username}\0{network_of(address)}"
    waits = [limits.pair.retry_after(pair_key), limits.address.retry_after(address)]
    if not limits.known_addresses.knows(known_key):
        waits.append(limits.account.retry_after(username))
    due = [wait for wait in waits if wait]
    if due:
        wait = max(due)
        raise LoginRefused(RATE_LIMITED, f"Too many failed logins; {try_again(wait)}", wait)
    # A name no account can have is an unknown user, not a query: PostgreSQL refuses a NUL.
    user = User.objects.filter(username=username).first() if valid_username(username) else None
    if user is None:
        # Hash anyway, as Django's ModelBackend does, so the answer takes as long.
        User().set_password(password)
        ok = False
    else:
        ok = user.check_password(password) and user.is_active
    if not ok:
        limits.pair.hit(pair_key)
        limits.address.hit(address)
        limits.account.hit(username)
        if limits.account.retry_after(username):
            # Many addresses guessing at one name: worth an operator's look (no password logged).
            log.warning(
                "failed logins of username %r reached the per-account limit; "
                "logins from addresses it has not logged in from are refused for now",
                username,
            )
        raise LoginRefused(
            INVALID_CREDENTIALS, "Wrong username or password; check both and log in again."
        )
    assert user is not None
    limits.pair.reset(pair_key)
    limits.known_addresses.note(known_key)
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    return user


def registration_open() -> bool:
    return bool(settings.CHAT_OPEN_REGISTRATION)


def register(username: str, password: str, address: str) -> User:
    """Create an account over the protocol; RegistrationRefused says why not and what to do.

    Django's password validators apply. Attempts are limited per address.
    """
    if not registration_open():
        raise RegistrationRefused(
            "closed", "Registration is closed on this server; ask its administrator for an account."
        )
    window = SlidingWindow("register-address", *settings.CHAT_REGISTER_THROTTLE_ADDRESS)
    wait = window.retry_after(address)
    if wait:
        raise RegistrationRefused(
            "rate_limited", f"Too many registrations; {try_again(wait)}", wait
        )
    window.hit(address)
    if problem := username_problem(username):
        raise RegistrationRefused("invalid_username", problem)
    if User.objects.filter(username__iexact=username).exists():
        raise RegistrationRefused(
            "username_taken", f"The username {username!r} is taken; choose another one."
        )
    candidate = User(username=username)
    try:
        password_validation.validate_password(password, user=candidate)
    except ValidationError as exc:
        raise RegistrationRefused("invalid_password", " ".join(exc.messages)) from None
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, password=password)
    except IntegrityError:  # a concurrent registration of the same name won
        raise RegistrationRefused(
            "username_taken", f"The username {username!r} is taken; choose another one."
        ) from None
    log.info("account %s registered from %s", username, address)
    return user


def create_user(username: str, password: str | None, *, validate: bool = True, **fields) -> User:
    """Create an account (admin tooling, tests). ValueError says what is wrong with it."""
    if not valid_username(username):
        raise ValueError(f"usernames are {USERNAME_RULE}")
    if User.objects.filter(username__iexact=username).exists():
        raise ValueError(f"the username {username!r} is taken (usernames ignore letter case)")
    if validate and password is not None:
        try:
            password_validation.validate_password(password, user=User(username=username))
        except ValidationError as exc:
            raise ValueError(" ".join(exc.messages)) from None
    with transaction.atomic():
        return User.objects.create_user(username=username, password=password, **fields)


def set_active(user: User, active: bool) -> None:
    """Activate or deactivate an account.

    Deactivating ends the user's live sessions on every server process
    (``session_ended`` then close 4003) once the change commits; the chat app's
    signal handlers do that for every save of ``is_active``, from here, the
    admin or anywhere else.
    """
    if user.is_active == active:
        return
    user.is_active = active
    with transaction.atomic():
        user.save(update_fields=["is_active"])
