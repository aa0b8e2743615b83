"""The user model: Django's AbstractUser, with the protocol's rules for usernames.

A custom model from the first migration (as Django recommends), so that fields
can be added later without a painful swap. Usernames match
``[A-Za-z0-9_.@+-]{1,150}`` and no two accounts differ only in letter case
(PROTOCOL.md 3.0): the database enforces that with a unique index on
``lower(username)``, whichever way the account is created.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from chatproto.messages import USERNAME_RE, USERNAME_RULE

from .usernames import USERNAME_ADVICE

USERNAME_HELP = f"{USERNAME_RULE}."

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
