"""How ``accounts`` reacts to its own model changes, whichever way they were made.

- A device deleted (``revoke_device``, the admin, a shell, a cascade): its live sessions
  end with ``revoked`` (or the reason its deleter gave, e.g. ``logged_out``). A device
  deleted because its account is deleted sends nothing: the chat ends every session of a
  deleted account itself (``ended_by_admin``). A deleter that ends the sessions with its
  own reason (a password change) says so, so that each session gets one reason only.
- A password set by someone other than its owner (the admin's password form,
  ``manage.py changepassword``, ``set_password()`` and ``save()`` in a shell; also making
  the password unusable): every device of the user is revoked and every session ends with
  ``ended_by_admin`` (PROTOCOL.md 3.4). Not the owner's ``change_password`` (it marks the
  user, :meth:`~accounts.models.User.set_own_password`) and not Django's re-hashing of a
  password at login (``check_password`` clears ``_password`` before it saves).

Connected by :class:`accounts.apps.AccountsConfig`.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save

from .models import (
    OWNER_PASSWORD_ATTR,
    PASSWORD_UNSET_ATTR,
    SESSION_END_REASON_ATTR,
    Device,
    User,
)
from .signals import ENDED_BY_ADMIN, REVOKED, request_end_of_sessions


def device_deleted(sender, instance: Device, origin=None, **kwargs) -> None:
    if deletes_accounts(origin):
        return
    reason = getattr(origin, SESSION_END_REASON_ATTR, REVOKED)
    if reason is not None:
        request_end_of_sessions(instance.user_id, reason, devices=[instance.pk])


def deletes_accounts(origin) -> bool:
    """Whether a deletion started at an account (its devices go with it): then the chat
    ends every session of the account itself, and nothing of it is left to announce."""
    if isinstance(origin, User):
        return True
    return isinstance(origin, QuerySet) and issubclass(origin.model, User)


def user_saved(
    sender, instance: User, created: bool, raw: bool = False, update_fields=None, **kwargs
) -> None:
    by_owner = instance.__dict__.pop(OWNER_PASSWORD_ATTR, False)
    unset = instance.__dict__.pop(PASSWORD_UNSET_ATTR, False)
    if raw or created or by_owner:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    if instance._password is None and not unset:
        return  # no new password (or Django re-hashing the same one)
    Device.objects.filter(user_id=instance.pk).delete_ending_sessions(None)
    request_end_of_sessions(instance.pk, ENDED_BY_ADMIN)


def connect() -> None:
    post_delete.connect(device_deleted, sender=Device, dispatch_uid="accounts.device_deleted")
    post_save.connect(user_saved, sender=User, dispatch_uid="accounts.user_saved")
