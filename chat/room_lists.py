"""The public rooms' part of ``rooms``, read from the database once per change, not per login.

Every login answers ``login_ok`` with the room objects the user sees (PROTOCOL.md
3.1), and lobby's ``members`` lists every account: read per login, that list made
each login cost O(N) database rows and Python objects, and a login storm slowed as
it went (bench/NOTES.md, "The login storm, profiled"). The public rooms are the same
for everyone, so each process keeps them, built once, until they change.

"Until they change" across processes: every change of a room or a membership
(service, admin, shell, cascade) sets a new random **version** in the shared cache
after its transaction commits (:func:`changed`, connected in :mod:`chat.signals`;
``create_room``'s ``bulk_create`` calls it itself, since bulk writes send no
signal). A process rebuilds its copy when the version differs from the one it was
built under. A reader that read the old version and then the new rows keeps them
under the old version: the next reader rebuilds, nothing stale outlives a login.
What no signal tells (an account renamed in the admin changes the names in member
lists) shows within :data:`MAX_AGE`.

A private room is seen only by its members and stays a per-login query, over the
user's own private rooms only.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import transaction

from chatproto.framing import encode_json_value

from .models import Membership, Room

VERSION_KEY = "chat:public-rooms:version"
MAX_AGE = 60.0  # seconds


def changed() -> None:
    """Rooms or memberships changed: after the commit, every process's copy is stale."""
    transaction.on_commit(_new_version)


def _new_version() -> None:
    cache.set(VERSION_KEY, secrets.token_hex(8), timeout=None)


def _current_version() -> str:
    version = cache.get(VERSION_KEY)
    if version is None:  # never set, or the cache was emptied: start a version everyone uses
        cache.add(VERSION_KEY, secrets.token_hex(8), timeout=None)
        version = cache.get(VERSION_KEY)
    return str(version)


def room_objects(rooms: Any, members_of: Any) -> list[dict[str, Any]]:
    """Room objects ``{name, private, owner, members}`` from plain rows: ``rooms`` a queryset
    of rooms, ``members_of`` one of their memberships (no model instances: lobby's member
    list has every account in it)."""
    listed = list(rooms.order_by("name").values_list("pk", "name", "private", "owner__username"))
    members: dict[int, list[str]] = {row[0]: [] for row in listed}
    for room_id, username in members_of.values_list("room_id", "user__username"):
        if room_id in members:
            members[room_id].append(username)
    return [
        {"name": name, "private": private, "owner": owner, "members": sorted(members[pk])}
        for pk, name, private, owner in listed
    ]


def read_public_rooms() -> list[dict[str, Any]]:
    """Every public room's object, from the database."""
    return room_objects(
        Room.objects.filter(private=False), Membership.objects.filter(room__private=False)
    )


@dataclass(frozen=True)
class _Copy:
    version: str
    made: float  # time.monotonic()
    rooms: list[dict[str, Any]]
    encoded: list[bytes]  # each room object as JSON (chatproto.framing.encode_json_value)

    def fresh(self, version: str) -> bool:
        return self.version == version and time.monotonic() - self.made < MAX_AGE


class PublicRooms:
    """One process's copy of the public rooms' objects (owned by :class:`chat.runtime.ChatRuntime`).

    Read from the database threads, several at once: the copy is one object, replaced whole.
    The room objects it hands out are shared by every caller and must not be changed. Each
    is kept encoded too, so that ``login_ok`` does not encode lobby's N names again
    (:func:`chatproto.framing.encode_json_with_lists`).
    """

    def __init__(self) -> None:
        self._copy: _Copy | None = None
        self._rebuilding = threading.Lock()

    def rooms(self) -> list[dict[str, Any]]:
        return self.current().rooms

    def current(self) -> _Copy:
        """The copy for the current version (rebuilt if it is stale)."""
        version = _current_version()
        copy = self._copy
        if copy is not None and copy.version == version and time.monotonic() - copy.made < MAX_AGE:
            return copy
        with self._rebuilding:  # a storm's logins wait for one rebuild instead of each doing it
            copy = self._copy
            if (
                copy is not None
                and copy.version == version
                and time.monotonic() - copy.made < MAX_AGE
            ):
                return copy
            rooms = read_public_rooms()
            copy = _Copy(version, time.monotonic(), rooms, [encode_json_value(r) for r in rooms])
            self._copy = copy
            return copy
