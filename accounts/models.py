"""The user model: Django's AbstractUser, with the protocol's rules for usernames.

A custom model from the first migration (as Django recommends), so that fields
can be added later without a painful swap. Usernames match
``[A-Za-z0-9_.@+-]{1,150}`` and no two accounts differ only in letter case
(PROTOCOL.md 3.0): the database enforces that with a unique index on
``lower(username)``, whichever way the account is created.
"""

from __future__ import annotations

import secrets

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from chatproto.messages import USERNAME_RE, USERNAME_RULE

from .usernames import USERNAME_ADVICE

USERNAME_HELP = f"{USERNAME_RULE}."

# Set on a User whose new password is its owner's own change (see User.set_own_password).
OWNER_PASSWORD_ATTR = "_chat_password_set_by_owner"  # noqa: S105 - an attribute name
# Set on a User whose password was just made unusable (see User.set_unusable_password).
PASSWORD_UNSET_ATTR = "_chat_password_unset"  # noqa: S105 - an attribute name

username_validator = RegexValidator(
    regex=rf"\A{USERNAME_RE.pattern}\Z",
    message=USERNAME_ADVICE,
    code="invalid",
)


class User(AbstractUser):
    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        help_text=USERNAME_HELP,
        validators=[username_validator],
        error_messages={"unique": "A user with that username already exists."},
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.UniqueConstraint(
                Lower("username"),
                name="accounts_user_username_ci_unique",
                violation_error_message="A user with that username (in any letter case) "
                "already exists.",
            )
        ]

    def __str__(self) -> str:
        return self.username

    def set_own_password(self, raw_password: str) -> None:
        """Set the password as its owner changing it (``change_password``), not as an operator.

        A password set with :meth:`set_password` and saved is an administrator's reset (the
        admin's form, ``manage.py changepassword``, a shell): it revokes every device and ends
        every session with ``ended_by_admin`` (accounts/receivers.py). The owner's change
        keeps their session and device, so it is marked here. (Django's re-hashing at login
        clears ``_password`` before saving and counts as neither.)
        """
        self.set_password(raw_password)
        setattr(self, OWNER_PASSWORD_ATTR, True)

    def set_unusable_password(self) -> None:
        """No password login any more; saved, it counts as an administrator's password set
        (devices revoked, sessions ended), since only an operator does this."""
        super().set_unusable_password()
        setattr(self, PASSWORD_UNSET_ATTR, True)


def new_device_id() -> str:
    """A device's public id: 16 random URL-safe characters (96 bits), not a secret."""
    return secrets.token_urlsafe(12)


# The attribute that a deletion's origin (a Device or a QuerySet of them) carries to say
# with which ``session_ended`` reason the deleted devices' sessions end; None: the caller
# ends them itself with its own reason (a password change). See accounts/receivers.py.
SESSION_END_REASON_ATTR = "_chat_session_end_reason"


class DeviceQuerySet(models.QuerySet):
    def delete_ending_sessions(self, reason: str | None) -> int:
        """Delete these devices; their sessions end with ``reason`` (None: the caller's job)."""
        setattr(self, SESSION_END_REASON_ATTR, reason)
        deleted, _ = self.delete()
        return deleted


class Device(models.Model):
    """A client installation that logged in with ``remember`` (PROTOCOL.md 3.4).

    Only the SHA-256 of its token is kept: the token itself is a 256-bit random
    value, so a plain hash is as good as a password hash against a stolen database
    and costs nothing at each ``resume``.
    """

    id = models.CharField(primary_key=True, max_length=64, default=new_device_id, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=64)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_seen = models.DateTimeField(default=timezone.now, editable=False)
    last_address = models.CharField(max_length=100, blank=True, editable=False)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        verbose_name = "remembered device"
        ordering = ("-last_seen",)

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    def delete_ending_sessions(self, reason: str | None) -> None:
        """Delete this device; its sessions end with ``reason`` (None: the caller's job)."""
        setattr(self, SESSION_END_REASON_ATTR, reason)
        self.delete()


class BackupCode(models.Model):
    """One unused two-factor backup code of a user, as the SHA-256 hex of its normalised form.

    Our own model rather than django-otp's ``StaticToken``, which keeps its tokens in
    plain text: anyone who reads the database (a backup, a dump) could log in with them.
    A code has 80 random bits, so an unsalted SHA-256 cannot be reversed by guessing.
    A code is deleted when it is used.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="backup_codes")
    code_hash = models.CharField(max_length=64, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "code_hash"], name="accounts_backup_code_unique"
            )
        ]

    def __str__(self) -> str:
        return f"backup code {self.pk} of user {self.user_id}"
