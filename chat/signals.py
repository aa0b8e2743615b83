"""What the chat does when an account changes, however it changed (service, admin, shell).

- created: the user joins lobby; every session gets ``added`` in its next ``presence``;
- deactivated: their sessions end (``session_ended`` ``deactivated``, close 4003) on
  every process, and the others get ``removed`` (and ``offline``) in ``presence``;
- reactivated: back in lobby; ``added``;
- deleted: their sessions end (``ended_by_admin``); ``removed``;
- an operator ends their sessions (:data:`accounts.signals.sessions_end_requested`, from
  the admin or ``manage.py chatuser end-sessions``): they end with that reason; the
  account stays active. The same signal, from ``accounts``' devices and password
  services, ends only the sessions of some ``devices`` (``revoked``) or all but one
  session (``except_session``, the channel name chat passed in: ``password_changed``),
  on every process.
- a device with end-to-end keys about to be deleted (revoked, logged out, a password
  changed, the admin): its keys and to-device queue go with it (a cascade), and a
  device-list change is logged, so that the user's contacts hear ``devices_changed``
  (not for a device that never uploaded keys: no one's list had it; nor when the
  account itself is deleted: nothing of it is left to announce).

Broadcasts go out after the transaction commits (see :mod:`chat.services`).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from accounts.models import Device, User
from accounts.receivers import deletes_accounts
from accounts.signals import sessions_end_requested

from . import e2e_services, room_lists, services
from .models import Membership, Room


def remember_active(
    sender, instance: User, raw: bool = False, update_fields=None, **kwargs
) -> None:
    """Before an account is saved: whether it is active in the database, so that
    :func:`account_saved` can tell a change of ``is_active`` from any other save.

    Read here, at the (rare) saves that may change it, rather than remembered when
    an account is loaded: a ``post_init`` receiver runs for every User instantiated
    (every login, every member list) and made Django's model loading slower.
    """
    if raw or instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return  # e.g. last_login at each login
    instance._chat_was_active = (
        User.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    )


def account_saved(sender, instance: User, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:  # loaddata
        return
    was_active = instance.__dict__.pop("_chat_was_active", None)
    if created:
        if instance.is_active:
            services.ensure_lobby_membership(instance)
            services.announce_account(instance.username, active=True)
        return
    if was_active is None or was_active == instance.is_active:
        return
    if instance.is_active:
        services.ensure_lobby_membership(instance)
    else:
        services.end_sessions_of(instance.pk, "deactivated")
    services.announce_account(instance.username, active=instance.is_active)
    e2e_services.account_changed(instance.pk, instance.username)


def account_deleting(sender, instance: User, **kwargs) -> None:
    """Before the cascade, while its rooms and messages still say who its contacts are: the
    contacts of an account with keys hear it is gone, now (``devices_changed``) or at their
    next ``device_list_changes``."""
    e2e_services.account_changed(instance.pk, instance.username, deleting=True)


def account_deleted(sender, instance: User, **kwargs) -> None:
    services.end_sessions_of(instance.pk, "ended_by_admin")
    services.announce_account(instance.username, active=False)


def device_deleting(sender, instance: Device, origin=None, **kwargs) -> None:
    """Before the cascade: only then can it tell whether the device had keys."""
    if not deletes_accounts(origin):
        e2e_services.device_removed(instance.user_id, instance.pk)


def sessions_end_requested_received(
    sender,
    user_id: int,
    reason: str,
    devices: Sequence[str] | None = None,
    except_session: str | None = None,
    **kwargs,
) -> None:
    services.end_sessions_of(user_id, reason, devices=devices, except_session=except_session)


def rooms_changed(sender, raw: bool = False, **kwargs) -> None:
    """A room or a membership was saved or deleted: the processes' copies of the public
    rooms (:mod:`chat.room_lists`) are stale once it commits."""
    room_lists.changed()


def connect() -> None:
    for model in (Room, Membership):
        name = model.__name__.lower()
        post_save.connect(rooms_changed, sender=model, dispatch_uid=f"chat.{name}_saved")
        post_delete.connect(rooms_changed, sender=model, dispatch_uid=f"chat.{name}_deleted")
    pre_save.connect(remember_active, sender=User, dispatch_uid="chat.remember_active")
    post_save.connect(account_saved, sender=User, dispatch_uid="chat.account_saved")
    pre_delete.connect(account_deleting, sender=User, dispatch_uid="chat.account_deleting")
    post_delete.connect(account_deleted, sender=User, dispatch_uid="chat.account_deleted")
    pre_delete.connect(device_deleting, sender=Device, dispatch_uid="chat.device_deleting")
    sessions_end_requested.connect(
        sessions_end_requested_received, dispatch_uid="chat.sessions_end_requested"
    )
