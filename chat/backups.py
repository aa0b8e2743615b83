"""The key backup's services (docs/protocol.md 4.13): store what the server cannot read.

A user's backup is an object (a public key, a sealed ``identity`` blob, the user key's
signature) and a set of sealed session blobs. The server checks what it can: the
object's signature against the user's published user key, the version rules, the
limits; it cannot open a blob, so a session's blob is replaced only by one that
claims a lower ``first_index``, and a blob altered by anyone is stored as it came
(the clients' MAC check finds it).

As in :mod:`chat.services`: check, write inside a transaction, and push only after
the commit. A new version (a first backup, or a reset) is recorded for the
administrator (:class:`~chat.models.BackupRecord`, no key material) and pushed as
``backup_changed`` to the user's other sessions; a reset needs the password,
checked and counted as for ``change_password``
(:func:`accounts.services.check_password_again`), which hashes: the consumer runs
:func:`publish_backup` in a password thread.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.errors import ServiceError
from accounts.models import Device, User
from accounts.services import check_password_again
from chatproto.backup import MAX_BACKUP_SESSIONS, backup_signature_valid
from chatproto.codes import ErrorCode
from chatproto.messages import answer

from . import delivery
from .models import BackupRecord, BackupSession, KeyBackup, UserKey
from .services import format_ts

log = logging.getLogger("chat.backup")

RESET_CONFLICT = "your key backup was reset or changed meanwhile: fetch it again (backup_get)"

# (session_id, first_index, blob), as chatproto.messages validated them.
Uploaded = tuple[str, int, dict[str, Any]]


def _bad(message: str) -> ServiceError:
    return ServiceError(ErrorCode.BAD_REQUEST, message)


def _conflict(message: str = RESET_CONFLICT) -> ServiceError:
    return ServiceError(ErrorCode.CONFLICT, message)


# --- the backup object -----------------------------------------------------------------------


def publish_backup(
    user: User,
    device: str,
    backup: dict[str, Any],
    password: str | None,
    address: str,
    *,
    origin: str | None = None,
) -> None:
    """Store ``backup``, published by ``device`` (the session's, ``origin`` its channel).

    ``version`` one more than the current (1 when there is none) is a **new backup**:
    the previous version's sessions are deleted, the change is recorded and, after
    commit, ``backup_changed`` goes to the user's sessions but ``origin``. Replacing an
    existing backup needs ``password`` (wrong or missing: ``invalid_credentials``, counted
    as a failed login). The current version with the same public
    key is an **update**: the object is replaced, the sessions stay, nobody is told.
    Anything else is ``conflict``. Runs in a password thread (it may hash).
    """
    if backup["user"] != user.username:
        raise _bad("backup.user must be your own username")
    published = UserKey.objects.filter(user=user).values_list("key", flat=True).first()
    if published is None:
        raise _bad("publish your user key before a key backup: the user key signs the backup")
    if not backup_signature_valid(backup, published["ed25519"]):
        raise _bad(
            "the backup's signature does not verify with your current user key: fetch your "
            "keys (keys_query) and sign it again"
        )
    current = KeyBackup.objects.filter(user=user).values_list("version", "public_key").first()
    new = _judge(current, backup)
    if new and current is not None:
        # Outside the transaction (it hashes); a missing password is a wrong one: counted.
        check_password_again(user, password or "", address)
    with transaction.atomic():
        locked = (
            KeyBackup.objects.select_for_update()
            .filter(user=user)
            .values_list("version", "public_key")
            .first()
        )
        if locked != current:
            raise _conflict()  # another device published meanwhile: judge again
        if new:
            _store_new_version(user, device, backup, replaced=current is not None, origin=origin)
        else:
            KeyBackup.objects.filter(user=user).update(backup=backup)


def _judge(current: tuple[int, str] | None, backup: dict[str, Any]) -> bool:
    """True for a new backup, False for an update of the current one; else ``conflict``."""
    version = backup["version"]
    expected = 1 if current is None else current[0] + 1
    if version == expected:
        return True
    if current is not None and version == current[0]:
        if backup["public_key"] == current[1]:
            return False
        raise _conflict(
            f"version {version} of your key backup has another public key: a new backup "
            f"is version {expected}"
        )
    raise _conflict(f"the next version of your key backup is {expected}: fetch it again")


def _store_new_version(
    user: User, device: str, backup: dict[str, Any], *, replaced: bool, origin: str | None
) -> None:
    """Inside the caller's transaction: the new version, its record, and the push."""
    now = timezone.now()
    version = backup["version"]
    fields = {
        "version": version,
        "public_key": backup["public_key"],
        "backup": backup,
        "created": now,
        "device": device,
    }
    if replaced:  # the row is locked (publish_backup)
        BackupSession.objects.filter(backup_id=user.pk).delete()
        KeyBackup.objects.filter(user=user).update(**fields)
    else:
        try:
            with transaction.atomic():
                KeyBackup.objects.create(user=user, **fields)
        except IntegrityError:  # another device published a first backup meanwhile
            raise _conflict() from None
    name = Device.objects.filter(pk=device).values_list("name", flat=True).first() or ""
    kind = "reset" if replaced else "created"  # BackupRecord.Kind
    BackupRecord.objects.create(
        user=user, created=now, kind=kind, version=version, device=device, device_name=name
    )
    log.info("account %s %s key backup version %d", user.username, kind, version)
    message = {"type": "backup_changed", "version": version, "device": device, "name": name}
    transaction.on_commit(
        functools.partial(delivery.backup_changed_sync, user.pk, message, exclude=origin)
    )


def backup_answer(user: User, ref: str | None) -> dict[str, Any]:
    """The ``backup`` answer: the current object, when and by which device its version was
    published; all null when the user has none."""
    row = KeyBackup.objects.filter(user=user).first()
    if row is None:
        return answer("backup", ref, backup=None, created=None, device=None)
    return answer(
        "backup", ref, backup=row.backup, created=format_ts(row.created), device=row.device
    )


# --- the sessions ----------------------------------------------------------------------------


def _current_version(user: User, version: int, *, lock: bool = False) -> None:
    """``conflict`` unless ``version`` is the user's current backup's (the row stays locked
    until the commit with ``lock``, so that a reset cannot interleave with a put)."""
    rows = KeyBackup.objects.filter(user=user)
    if lock:
        rows = rows.select_for_update()
    current = rows.values_list("version", flat=True).first()
    if current is None:
        raise _conflict("you have no key backup (it may have been deleted): fetch it again")
    if current != version:
        raise _conflict()


def put_sessions(user: User, version: int, sessions: Sequence[Uploaded]) -> tuple[int, int]:
    """Store each session's blob in the current backup; ``(stored, count)``.

    Per ``session_id`` the blob with the lowest ``first_index`` is kept: a stored one is
    replaced only by a lower one (an equal one with the same blob is a retried upload,
    and counts as kept). ``stored``: how many of the request's sessions are now the
    ones kept; ``count``: the sessions in the backup. Past
    :data:`~chatproto.backup.MAX_BACKUP_SESSIONS`: ``too_large``, nothing stored.
    """
    lowest: dict[str, Uploaded] = {}
    for entry in sessions:  # a session listed twice: its lowest first_index
        known = lowest.get(entry[0])
        if known is None or entry[1] < known[1]:
            lowest[entry[0]] = entry
    with transaction.atomic():
        _current_version(user, version, lock=True)
        keys = {session_id.encode("ascii"): entry for session_id, entry in lowest.items()}
        stored_rows = {
            bytes(row.session_id): row
            for row in BackupSession.objects.filter(backup_id=user.pk, session_id__in=list(keys))
        }
        count = BackupSession.objects.filter(backup_id=user.pk).count()
        fresh = [key for key in keys if key not in stored_rows]
        if count + len(fresh) > MAX_BACKUP_SESSIONS:
            raise ServiceError(
                ErrorCode.TOO_LARGE,
                f"a key backup holds at most {MAX_BACKUP_SESSIONS} sessions and yours has "
                f"{count}: reset it to start again",
            )
        BackupSession.objects.bulk_create(
            [
                BackupSession(
                    backup_id=user.pk, session_id=key, first_index=keys[key][1], blob=keys[key][2]
                )
                for key in fresh
            ]
        )
        stored, lower = len(fresh), []
        for key, row in stored_rows.items():
            _, first_index, blob = keys[key]
            if first_index < row.first_index:
                row.first_index, row.blob = first_index, blob
                lower.append(row)
            elif first_index == row.first_index and blob == row.blob:
                stored += 1
        BackupSession.objects.bulk_update(lower, ["first_index", "blob"])
        return stored + len(lower), count + len(fresh)


def fetch_sessions(
    user: User, version: int, after: str | None, limit: int, ref: str | None
) -> dict[str, Any]:
    """The ``backup_sessions`` answer: the sessions after ``after`` in ``session_id`` order,
    at most ``limit``; ``next`` the last one's id if more follow. ``conflict`` unless
    ``version`` is current. One transaction, so a page is of one version."""
    with transaction.atomic():
        _current_version(user, version)
        rows = BackupSession.objects.filter(backup_id=user.pk)
        if after is not None:
            rows = rows.filter(session_id__gt=after.encode("ascii"))
        page = list(
            rows.order_by("session_id").values_list("session_id", "first_index", "blob")[
                : limit + 1
            ]
        )
    more = len(page) > limit
    sessions = [
        {"session_id": bytes(session_id).decode("ascii"), "first_index": index, "blob": blob}
        for session_id, index, blob in page[:limit]
    ]
    last = sessions[-1]["session_id"] if more else None
    return answer("backup_sessions", ref, version=version, sessions=sessions, next=last)
