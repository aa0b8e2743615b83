"""Remembered devices (PROTOCOL.md 3.4): a token instead of the password, per installation.

A client that logs in with ``remember`` gets a device id and a token; later it logs in
with :func:`resume` and no password. The token is 32 bytes from ``secrets`` in unpadded
base64url (43 characters), shown once; the server keeps only its SHA-256, so a copy of
the database holds no working token. A 256-bit random token needs no slow password
hash: nobody can guess it, so ``resume`` costs one indexed lookup.

Deleting a device, by :func:`revoke_device`, the admin or any other way, ends its live
sessions (accounts/receivers.py); a password change ends them with its own reason.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatproto.crypto_utils import sha256

from .errors import LoginRefused, ServiceError
from .login_limits import INVALID_CREDENTIALS, RATE_LIMITED, LoginLimits, rate_limited_words
from .models import Device, User
from .signals import REVOKED

TOKEN_BYTES = 32
UNKNOWN_DEVICE = "unknown_device"
_NAME_LENGTH = Device._meta.get_field("name").max_length
_ADDRESS_LENGTH = Device._meta.get_field("last_address").max_length


@dataclass(frozen=True)
class Remembered:
    """A device just created: its id and its token (given to the client once, never kept)."""

    device: str
    token: str


def new_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """The SHA-256 (hex) under which a token is kept and looked up."""
    return sha256(token.encode("utf-8", "surrogatepass")).hex()


def remember_device(user: User, name: str, address: str) -> Remembered:
    """Create a device for ``user`` (after a login with ``remember``); its token, once."""
    token = new_token()
    device = Device.objects.create(
        user=user,
        name=name[:_NAME_LENGTH],
        token_hash=token_hash(token),
        last_address=address[:_ADDRESS_LENGTH],
    )
    return Remembered(device=device.id, token=token)


def resume(username: str, token: str, address: str) -> tuple[User, str]:
    """Log in with a device token: the user and the device id.

    Every failure (unknown user, wrong or revoked token, a token of another user, an
    inactive account, a device unused for more than ``CHAT_DEVICE_LIFETIME_DAYS``) is
    ``invalid_credentials`` after the same work (one lookup by the token's hash, then
    the same comparisons), counted by the login throttles like a failed login; past a
    limit ``rate_limited``, checking nothing. No one-time password is asked: the device
    passed it when it was created.
    """
    limits = LoginLimits.from_settings()
    wait = limits.retry_after(username, address)
    if wait:
        raise LoginRefused(RATE_LIMITED, rate_limited_words(wait), wait)
    now = timezone.now()
    oldest = now - timedelta(days=settings.CHAT_DEVICE_LIFETIME_DAYS)
    device = Device.objects.select_related("user").filter(token_hash=token_hash(token)).first()
    ok = (
        device is not None
        and device.user.username == username  # a name is no secret: a plain comparison
        and device.user.is_active
        and device.last_seen >= oldest
    )
    if ok:
        assert device is not None
        # A revocation that committed after the lookup wins: nothing is updated then.
        ok = bool(
            Device.objects.filter(pk=device.pk).update(
                last_seen=now, last_address=address[:_ADDRESS_LENGTH]
            )
        )
    if not ok:
        limits.count_failure(username, address)
        raise LoginRefused(
            INVALID_CREDENTIALS,
            "This device's saved login no longer works (it was revoked, went unused too "
            "long, or the account is inactive); log in with your password.",
        )
    assert device is not None
    limits.count_success(username, address)
    user = device.user
    user.last_login = now
    user.save(update_fields=["last_login"])
    return user, device.id


def devices_of(user: User) -> list[Device]:
    """The user's devices, the one used most recently first."""
    return list(Device.objects.filter(user=user).order_by("-last_seen", "-created", "id"))


def revoke_device(user: User, device_id: str, *, reason: str = REVOKED) -> None:
    """Delete one of the user's devices: its token stops working at once, and after
    commit its sessions end with ``reason`` (``revoked``; ``logged_out`` for a logout)."""
    with transaction.atomic():
        device = Device.objects.filter(user=user, pk=device_id).first()
        if device is None:
            raise ServiceError(
                UNKNOWN_DEVICE,
                "You have no device with that id (it may be revoked already); "
                "ask for the list of your devices again.",
            )
        device.delete_ending_sessions(reason)
