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

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from chatproto.wording import try_again

from .errors import LoginRefused as LoginRefused
from .errors import RegistrationRefused as RegistrationRefused
from .errors import ServiceError
from .login_limits import INVALID_CREDENTIALS as INVALID_CREDENTIALS
from .login_limits import RATE_LIMITED as RATE_LIMITED
from .login_limits import LoginLimits as LoginLimits
from .login_limits import check_password_again, rate_limited_words
from .models import Device, User
from .signals import PASSWORD_CHANGED, request_end_of_sessions
from .throttle import SlidingWindow
from .two_factor import two_factor_enabled, verify_second_factor
from .usernames import USERNAME_RULE, username_problem, valid_username

log = logging.getLogger("accounts")

OTP_REQUIRED = "otp_required"
INVALID_PASSWORD = "invalid_password"  # noqa: S105 - an error code


def authenticate(username: str, password: str, address: str, otp: str | None = None) -> User:
    """Check credentials with throttling; equal answers and effort for every kind of failure.

    Unknown user, wrong password and inactive account all hash the password
    once and raise :class:`LoginRefused` ``invalid_credentials``. A refusal for a
    limit (``rate_limited``, with ``retry_after``) hashes nothing and counts
    nothing, so a limit decays while it refuses.

    Where the account has two-factor login, a correct password also needs ``otp``: a
    current TOTP code or an unused backup code (used up by the login). Missing or
    wrong, it is ``otp_required``, counted as a failed login: the password alone
    cannot be used to guess codes faster than the login limits allow.
    """
    limits = LoginLimits.from_settings()
    wait = limits.retry_after(username, address)
    if wait:
        raise LoginRefused(RATE_LIMITED, rate_limited_words(wait), wait)
    # A name no account can have is an unknown user, not a query: PostgreSQL refuses a NUL.
    user = User.objects.filter(username=username).first() if valid_username(username) else None
    if user is None:
        # Hash anyway, as Django's ModelBackend does, so the answer takes as long.
        User().set_password(password)
        ok = False
    else:
        ok = user.check_password(password) and user.is_active
    if not ok:
        limits.count_failure(username, address)
        raise LoginRefused(
            INVALID_CREDENTIALS, "Wrong username or password; check both and log in again."
        )
    assert user is not None
    if two_factor_enabled(user) and not (otp and verify_second_factor(user, otp)):
        limits.count_failure(username, address)
        raise LoginRefused(
            OTP_REQUIRED,
            "This account needs a one-time code: type the code your authenticator app "
            "shows now, or one of your unused backup codes.",
        )
    limits.count_success(username, address)
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    return user


def change_password(
    user: User,
    password: str,
    new_password: str,
    address: str,
    *,
    keep_session: str,
    keep_device: str | None,
) -> None:
    """The owner changes their password (PROTOCOL.md 3.4).

    ``password`` is the current one: wrong, ``invalid_credentials``, counted as a
    failed login (``rate_limited`` past a limit). A ``new_password`` that Django's
    validators refuse is ``invalid_password`` with their rules in words. Then every
    device but ``keep_device`` is revoked and, after commit, every session of the
    user but ``keep_session`` ends with ``password_changed`` (that one reason only:
    the devices' own ``revoked`` is not sent).
    """
    check_password_again(user, password, address)
    try:
        password_validation.validate_password(new_password, user=user)
    except ValidationError as exc:
        raise ServiceError(INVALID_PASSWORD, " ".join(exc.messages)) from None
    with transaction.atomic():
        user.set_own_password(new_password)
        user.save(update_fields=["password"])
        others = Device.objects.filter(user=user)
        if keep_device is not None:
            others = others.exclude(pk=keep_device)
        others.delete_ending_sessions(None)
        request_end_of_sessions(user.pk, PASSWORD_CHANGED, except_session=keep_session)
    log.info("account %s changed its password from %s", user.username, address)


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
