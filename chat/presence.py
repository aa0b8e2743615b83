"""Who is online, shared by every server process through the cache.

Data (all in the Django cache: local memory for one process, Redis for many):

``presence:user:<hash>``   the user's live sessions: ``{session key: process id}``
``presence:proc:<id>``     a process's heartbeat, expiring 3 heartbeats after the last
``presence:procs``         the processes that have had sessions
``presence:devices:<hash>`` the user's live sessions logged in as a remembered device,
                           or still setting up two-factor login (not in presence yet):
                           ``{session key: [device id or None, process id, enrolling]}``
                           (a device's ``online`` in the ``devices`` answer, and the
                           enrolling sessions that count toward the session limit)

A session counts only while its process's heartbeat lives, so when a process
dies its users drop out of ``online`` within three heartbeats (90 s by
default) without anyone cleaning up; the next heartbeat of any live process
then prunes the dead process's entries (see :func:`reap`), and the users who
went offline with them reach every session in the next ``presence`` delta
(:mod:`chat.presence_feed`). A process gets a fresh id at every start, so
nothing of its previous life counts once the old heartbeat expires: that is
the start-up cleaning. Read-modify-write of a user's entry is serialised with a short lock
(``cache.add``), so two processes logging the same user in at once cannot both
miss (or both claim) the first session.

Everything here is synchronous (cache calls may go over the network):
async callers use ``sync_to_async``.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.cache import cache

PROCESS_ID = secrets.token_hex(8)
_PROCS_KEY = "presence:procs"
_LOCK_SECONDS = 5


def _ttl() -> int:
    return 3 * settings.CHAT_HEARTBEAT_SECONDS


def _user_key(username: str) -> str:
    return "presence:user:" + hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]


def process_key(process_id: str) -> str:
    """The cache key of a process's heartbeat (deleting it is how a process dies, to the others)."""
    return f"presence:proc:{process_id}"


@contextlib.contextmanager
def _locked(key: str) -> Iterator[None]:
    """A short cross-process lock on ``key``; after 5 s a stuck holder is overridden."""
    lock = f"lock:{key}"
    token = secrets.token_hex(8)
    deadline = time.monotonic() + _LOCK_SECONDS
    while not cache.add(lock, token, timeout=_LOCK_SECONDS):
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    try:
        yield
    finally:
        if cache.get(lock) == token:
            cache.delete(lock)


def _devices_key(username: str) -> str:
    return "presence:devices:" + hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]


def heartbeat(process_id: str = PROCESS_ID) -> None:
    """Say this process is alive for three more heartbeats."""
    cache.set(process_key(process_id), 1, timeout=_ttl())
    procs = cache.get(_PROCS_KEY) or {}
    if process_id not in procs:
        with _locked(_PROCS_KEY):
            procs = cache.get(_PROCS_KEY) or {}
            procs[process_id] = True
            cache.set(_PROCS_KEY, procs, timeout=None)


def live_processes() -> int:
    """How many processes have a live heartbeat (this one's is taken first): at least 1."""
    return max(1, len(_alive(cache.get(_PROCS_KEY) or {})))


def _alive(process_ids: Iterable[str]) -> set[str]:
    ids = set(process_ids)
    if not ids:
        return set()
    found = cache.get_many([process_key(p) for p in ids])
    return {p for p in ids if process_key(p) in found}


def _live_entries(entries: dict[str, str]) -> dict[str, str]:
    alive = _alive(entries.values())
    return {session: proc for session, proc in entries.items() if proc in alive}


def session_started(username: str, session_key: str, process_id: str = PROCESS_ID) -> bool:
    """Record a logged-in session. True when it is the user's first: they came online."""
    heartbeat(process_id)
    key = _user_key(username)
    with _locked(key):
        entries = _live_entries(cache.get(key) or {})
        came_online = not entries
        entries[session_key] = process_id
        cache.set(key, entries, timeout=None)
    return came_online


def session_ended(username: str, session_key: str) -> bool:
    """Forget a session. True when it was the user's last: they went offline."""
    key = _user_key(username)
    with _locked(key):
        entries = _live_entries(cache.get(key) or {})
        was_online = bool(entries)
        entries.pop(session_key, None)
        if entries:
            cache.set(key, entries, timeout=None)
        else:
            cache.delete(key)
    return was_online and not entries


def session_alive(username: str, session_key: str) -> bool:
    """True while the session is recorded for the user on a process whose heartbeat lives.

    A session whose process died without cleaning up stops counting three
    heartbeats later, like everything else here.
    """
    return session_key in _live_entries(cache.get(_user_key(username)) or {})


def session_count(username: str) -> int:
    """The user's logged-in sessions on live processes, all processes together (session limit)."""
    return len(_live_entries(cache.get(_user_key(username)) or {}))


def online(usernames: Iterable[str]) -> set[str]:
    """Those of ``usernames`` with at least one session on a live process."""
    names = list(usernames)
    keys = {_user_key(name): name for name in names}
    found = cache.get_many(list(keys))
    alive = _alive(proc for entries in found.values() for proc in entries.values())
    return {
        keys[key] for key, entries in found.items() if any(p in alive for p in entries.values())
    }


def reap(usernames: Iterable[str]) -> set[str] | None:
    """Prune the sessions of dead processes; the users who went offline with them.

    Returns None when there was nothing to do (no dead process, or another
    process is reaping this heartbeat). ``usernames`` are the accounts to look
    through (every active account: small organisations, a few hundred keys).
    """
    procs = cache.get(_PROCS_KEY) or {}
    dead = set(procs) - _alive(procs)
    if not dead or not cache.add("presence:reaping", 1, timeout=settings.CHAT_HEARTBEAT_SECONDS):
        return None
    went_offline: set[str] = set()
    names = list(usernames)
    found = cache.get_many([_user_key(name) for name in names])
    for name in names:
        key = _user_key(name)
        entries = found.get(key)
        if not entries or not dead.intersection(entries.values()):
            continue
        with _locked(key):
            entries = cache.get(key) or {}
            remaining = {s: p for s, p in entries.items() if p not in dead}
            if remaining:
                cache.set(key, remaining, timeout=None)
            else:
                cache.delete(key)
        # Their sessions stopped counting when the heartbeat expired; nobody was told.
        if not _live_entries(remaining):
            went_offline.add(name)
    with _locked(_PROCS_KEY):
        procs = cache.get(_PROCS_KEY) or {}
        for process_id in dead:
            procs.pop(process_id, None)
        cache.set(_PROCS_KEY, procs, timeout=None)
    return went_offline


# --- devices ---------------------------------------------------------------------------------


def device_session_started(
    username: str,
    session_key: str,
    device: str | None,
    *,
    enrolling: bool = False,
    process_id: str = PROCESS_ID,
) -> None:
    """Record a logged-in session of ``username`` that is ``device`` (a remember or resume),
    or that must set up two-factor login first (``enrolling``: it is not in presence, and
    would otherwise escape the session limit)."""
    heartbeat(process_id)
    key = _devices_key(username)
    with _locked(key):
        entries = _live_device_entries(cache.get(key) or {})
        entries[session_key] = [device, process_id, enrolling]
        cache.set(key, entries, timeout=None)


def device_session_enrolled(username: str, session_key: str) -> None:
    """The session finished setting up two-factor login: presence counts it from now on."""
    key = _devices_key(username)
    with _locked(key):
        entries = _live_device_entries(cache.get(key) or {})
        entry = entries.get(session_key)
        if entry is None:
            return
        if entry[0] is None:
            entries.pop(session_key)
        else:
            entries[session_key] = [entry[0], entry[1], False]
        if entries:
            cache.set(key, entries, timeout=None)
        else:
            cache.delete(key)


def device_session_ended(username: str, session_key: str) -> None:
    """Forget a session recorded by :func:`device_session_started` (and dead processes' ones)."""
    key = _devices_key(username)
    with _locked(key):
        entries = _live_device_entries(cache.get(key) or {})
        entries.pop(session_key, None)
        if entries:
            cache.set(key, entries, timeout=None)
        else:
            cache.delete(key)


def online_devices(username: str) -> set[str]:
    """The devices of ``username`` that have a logged-in session on a live process."""
    entries = _live_device_entries(cache.get(_devices_key(username)) or {})
    return {entry[0] for entry in entries.values() if entry[0] is not None}


def enrolling_count(username: str) -> int:
    """The user's sessions still setting up two-factor login, on live processes."""
    entries = _live_device_entries(cache.get(_devices_key(username)) or {})
    return sum(1 for entry in entries.values() if len(entry) > 2 and entry[2])


def _live_device_entries(entries: dict[str, list[Any]]) -> dict[str, list[Any]]:
    alive = _alive(entry[1] for entry in entries.values())
    return {session: entry for session, entry in entries.items() if entry[1] in alive}
