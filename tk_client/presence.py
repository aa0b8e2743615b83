"""Who exists and who is online: a snapshot and the deltas that follow it. No tkinter.

PROTOCOL.md revision 1.1, 3.2: ``users`` (``online``, ``all``,
``presence_interval``) is a snapshot, sent once after login and as the answer to
a ``users`` request; then ``presence`` messages (``online``, ``offline``,
``added``, ``removed``) apply to it in order: ``added`` joins ``all``,
``removed`` leaves ``all`` and ``online``, then ``online`` and ``offline``. A
server of revision 1 pushes a whole ``users`` instead; that is simply a new
snapshot.

:class:`UserDirectory` holds the result and says, for every message, exactly
which users changed (:class:`UsersChange`), so the views move those rows and
touch nothing else: in a storm of logins a list of a thousand users must not be
redrawn a thousand times. :func:`parse_snapshot` and :func:`parse_presence`
judge a message's shape; a malformed one raises :class:`PresenceError` and
changes nothing (the caller asks for a fresh snapshot).
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chatproto.messages import USERNAME_RE

# PROTOCOL.md 3.2: ``presence_interval`` is whole seconds, 1 to 60.
MIN_PRESENCE_INTERVAL, MAX_PRESENCE_INTERVAL = 1, 60
PRESENCE_FIELDS = ("online", "offline", "added", "removed")


class PresenceError(ValueError):
    """A ``users`` or ``presence`` message that breaks PROTOCOL.md 3.2; nothing was changed."""


class Status(enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Snapshot:
    """A ``users`` message: everyone (``all`` with ``online``) and who is online."""

    online: frozenset[str]
    everyone: frozenset[str]
    interval: int | None  # None from a server of revision 1


@dataclass(frozen=True)
class Delta:
    """A ``presence`` message, each list as the server sent it (sorted usernames)."""

    online: tuple[str, ...] = ()
    offline: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class UsersChange:
    """What one message changed: ``user -> (before, after)``, None where absent.

    Only users whose status (online, offline, or not listed) changed are in it;
    ``full`` is True for a snapshot (the first one fills an empty list).
    """

    moved: Mapping[str, tuple[Status | None, Status | None]]
    full: bool = False

    def __bool__(self) -> bool:
        return bool(self.moved)

    def went(self, before: Status | None, after: Status | None) -> list[str]:
        """The users that went from ``before`` to ``after``, sorted."""
        return sorted(u for u, (b, a) in self.moved.items() if b is before and a is after)


def _usernames(message: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = message.get(name)
    if not isinstance(value, list):
        raise PresenceError(f"'{name}' must be a list of usernames")
    for user in value:
        if not isinstance(user, str) or not USERNAME_RE.fullmatch(user):
            raise PresenceError(f"'{name}' must be a list of usernames")
    return tuple(value)


def parse_snapshot(message: Mapping[str, Any]) -> Snapshot:
    """A ``users`` message as a :class:`Snapshot`; PresenceError if it is malformed.

    ``presence_interval`` is optional (a revision 1 server sends none) but
    checked when present.
    """
    online, everyone = _usernames(message, "online"), _usernames(message, "all")
    interval = message.get("presence_interval")
    if interval is not None and (
        type(interval) is not int or not MIN_PRESENCE_INTERVAL <= interval <= MAX_PRESENCE_INTERVAL
    ):
        raise PresenceError(
            f"'presence_interval' must be whole seconds, "
            f"{MIN_PRESENCE_INTERVAL} to {MAX_PRESENCE_INTERVAL}"
        )
    return Snapshot(frozenset(online), frozenset(everyone) | frozenset(online), interval)


def parse_presence(message: Mapping[str, Any]) -> Delta:
    """A ``presence`` message as a :class:`Delta`; PresenceError if it breaks 3.2.

    Each of the four lists must be there (possibly empty), hold usernames, and be
    sorted; not all four may be empty.
    """
    lists = {name: _usernames(message, name) for name in PRESENCE_FIELDS}
    for name, users in lists.items():
        if list(users) != sorted(users):
            raise PresenceError(f"'{name}' is not sorted")
    if not any(lists.values()):
        raise PresenceError("a presence message with nothing in it")
    return Delta(**lists)


def _sort_key(user: str) -> tuple[str, str]:
    return (user.lower(), user)


class UserDirectory:
    """The users as the last snapshot and the deltas since say; the one place they change.

    :attr:`ordered` is everyone in display order (case-insensitive), kept sorted
    as users come and go rather than sorted again for every message.
    """

    def __init__(self) -> None:
        self.online: set[str] = set()
        self.ordered: list[str] = []
        self.interval: int | None = None
        self._known: set[str] = set()

    def status(self, user: str) -> Status | None:
        if user not in self._known:
            return None
        return Status.ONLINE if user in self.online else Status.OFFLINE

    def by_presence(self) -> tuple[list[str], list[str]]:
        """(online, offline), each in display order."""
        online = [u for u in self.ordered if u in self.online]
        return online, [u for u in self.ordered if u not in self.online]

    def replace(self, snapshot: Snapshot) -> UsersChange:
        """A ``users`` message: the new state, and who differs from the old one."""
        touched = self._known | snapshot.everyone
        return self._change(
            touched, snapshot.everyone, set(snapshot.online), snapshot.interval, full=True
        )

    def apply(self, delta: Delta) -> UsersChange:
        """A ``presence`` message, applied in the order PROTOCOL.md 3.2 gives."""
        everyone = set(self._known)
        online = set(self.online)
        everyone.update(delta.added)
        everyone.difference_update(delta.removed)
        online.difference_update(delta.removed)
        online.update(delta.online)
        online.difference_update(delta.offline)
        everyone |= online  # someone online is someone (the lists should say so anyway)
        touched = set(delta.online) | set(delta.offline) | set(delta.added) | set(delta.removed)
        return self._change(touched, everyone, online, self.interval)

    def _change(
        self,
        touched: Iterable[str],
        everyone: Iterable[str],
        online: set[str],
        interval: int | None,
        *,
        full: bool = False,
    ) -> UsersChange:
        before = {user: self.status(user) for user in touched}
        everyone = set(everyone)
        for user in before:
            if user in everyone and user not in self._known:
                bisect.insort(self.ordered, user, key=_sort_key)
            elif user not in everyone and user in self._known:
                del self.ordered[bisect.bisect_left(self.ordered, _sort_key(user), key=_sort_key)]
        self._known, self.online, self.interval = everyone, online, interval
        moved = {u: (b, self.status(u)) for u, b in before.items() if b is not self.status(u)}
        return UsersChange(moved, full)
