"""Two-factor login (PROTOCOL.md 3.4): TOTP through django-otp, and backup codes.

TOTP is RFC 6238 (SHA-1, 6 digits, 30 s steps) with one step of drift either way,
django-otp's ``TOTPDevice``: its ``last_t`` makes each code work once (a code of a
step at or before the last accepted one is refused). The checks run with the TOTP row
locked (``select_for_update``; on SQLite the IMMEDIATE transaction serialises writers),
so two logins racing with the same code cannot both pass. django-otp's own throttling
and drift learning are off (chatsite/settings.py says why): wrong codes count in the
login throttles instead.

A setup (``otp_setup``) is an unconfirmed ``TOTPDevice``; ``otp_confirm`` with a code
from it confirms it and hands out 10 backup codes. Backup codes are 80 random bits
shown as ``xxxx-xxxx-xxxx-xxxx`` (lowercase base32) and stored only as SHA-256
(:class:`~accounts.models.BackupCode`); each works once.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from chatproto.crypto_utils import sha256

from .errors import ServiceError
from .login_limits import LoginLimits, check_password_again
from .models import BackupCode, User

BACKUP_CODE_COUNT = 10
BACKUP_CODE_BYTES = 10  # 80 bits: 16 base32 characters
TOTP_DIGITS = 6
TOTP_STEP = 30
TOTP_TOLERANCE = 1  # steps either way
TOTP_DEVICE_NAME = "authenticator app"

_TOTP_CODE = re.compile(r"[0-9]{6}")
_BACKUP_CODE = re.compile(r"[a-z2-7]{16}")
_SEPARATORS = re.compile(r"[\s-]+")

INVALID_OTP = "invalid_otp"
WRONG_CODE_WORDS = (
    "That code is wrong or was used already: type the code your authenticator app "
    "shows now, or an unused backup code."
)


@dataclass(frozen=True)
class OtpSetup:
    """A new, unconfirmed TOTP secret: ``secret`` (base32, 32 characters) and its ``uri``."""

    secret: str
    uri: str


def two_factor_enabled(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def otp_setup(user: User) -> OtpSetup:
    """Make a new TOTP secret, replacing an unconfirmed one; it counts after otp_confirm."""
    with transaction.atomic():
        if two_factor_enabled(user):
            raise ServiceError(
                "bad_request",
                "Two-factor login is already on for your account; turn it off first "
                "to set up another authenticator.",
            )
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        device = TOTPDevice.objects.create(
            user=user,
            name=TOTP_DEVICE_NAME,
            confirmed=False,
            digits=TOTP_DIGITS,
            step=TOTP_STEP,
            tolerance=TOTP_TOLERANCE,
        )
    secret = base64.b32encode(device.bin_key).decode("ascii")
    return OtpSetup(secret=secret, uri=otpauth_uri(user.username, secret))


def otpauth_uri(username: str, secret: str) -> str:
    """The Key URI that authenticator apps read (from a QR code): issuer = the server's name."""
    issuer = quote(str(settings.CHAT_SERVER_NAME).replace(":", ""), safe="")
    label = f"{issuer}:{quote(username, safe='')}"
    return (
        f"otpauth://totp/{label}?secret={secret}&issuer={issuer}"
        f"&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP}"
    )


def otp_confirm(user: User, code: str) -> list[str]:
    """Turn two-factor login on with a code from the set-up secret; the 10 backup codes.

    The codes are returned once and kept only as hashes; confirming again later (after
    a new setup) replaces them.
    """
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
        if device is None:
            raise ServiceError(
                INVALID_OTP,
                "There is no two-factor setup to confirm: start the setup first, then "
                "type a code from your authenticator app.",
            )
        if not _verify_totp(device, code):
            raise ServiceError(
                INVALID_OTP,
                "That code is wrong: check that your authenticator app shows the new "
                "entry and type the code it shows now.",
            )
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        return _new_backup_codes(user)


def otp_disable(user: User, password: str, code: str, address: str) -> None:
    """Turn two-factor login off: the password and a current code (or a backup code).

    A wrong password is ``invalid_credentials`` and a wrong code ``invalid_otp``; both
    count as failed logins, so a stolen session cannot guess either faster than a login.
    """
    check_password_again(user, password, address)
    if not two_factor_enabled(user):
        raise ServiceError(
            "bad_request", "Two-factor login is not on for your account; nothing to turn off."
        )
    if not verify_second_factor(user, code):
        LoginLimits.from_settings().count_failure(user.username, address)
        raise ServiceError(INVALID_OTP, WRONG_CODE_WORDS)
    reset_two_factor(user)


def reset_two_factor(user: User) -> None:
    """Turn two-factor login off and forget the backup codes (the admin's action, otp_disable)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        BackupCode.objects.filter(user=user).delete()


def verify_second_factor(user: User, code: str) -> bool:
    """Whether ``code`` is a current TOTP code of ``user`` or an unused backup code.

    Either is used up by a success: the TOTP step (``last_t``) or the backup code.
    False also where the user has no two-factor login.
    """
    if _TOTP_CODE.fullmatch(_compact(code)):
        with transaction.atomic():
            device = (
                TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
            )
            return device is not None and _verify_totp(device, code)
    return use_backup_code(user, code)


def use_backup_code(user: User, code: str) -> bool:
    """Whether ``code`` is an unused backup code of ``user``; it is deleted if so."""
    normal = normalise_backup_code(code)
    if normal is None:
        return False
    deleted, _ = BackupCode.objects.filter(user=user, code_hash=backup_code_hash(normal)).delete()
    return deleted > 0


def normalise_backup_code(code: str) -> str | None:
    """The 16 lowercase base32 characters of a backup code typed with or without
    dashes or spaces, in any case; None if it cannot be one."""
    normal = _compact(code).lower()
    return normal if _BACKUP_CODE.fullmatch(normal) else None


def backup_code_hash(normal: str) -> str:
    return sha256(normal.encode("ascii")).hex()


def _compact(code: str) -> str:
    return _SEPARATORS.sub("", code)


def _verify_totp(device: TOTPDevice, code: str) -> bool:
    compact = _compact(code)
    return bool(_TOTP_CODE.fullmatch(compact)) and bool(device.verify_token(compact))


def _new_backup_codes(user: User) -> list[str]:
    BackupCode.objects.filter(user=user).delete()
    normals = [
        base64.b32encode(secrets.token_bytes(BACKUP_CODE_BYTES)).decode("ascii").lower()
        for _ in range(BACKUP_CODE_COUNT)
    ]
    BackupCode.objects.bulk_create(
        BackupCode(user=user, code_hash=backup_code_hash(normal)) for normal in normals
    )
    return ["-".join(normal[i : i + 4] for i in range(0, len(normal), 4)) for normal in normals]
