"""Presence as coalesced deltas (PROTOCOL.md 3.1, 3.2): one :class:`PresenceFeed` per process.

:mod:`chat.presence` says, in the cache, whether a login or an ending was a
user's first or last session. This module turns those facts into what the
sessions are told:

- each session gets one ``users`` snapshot (after login, and as the answer to
  ``users``), built from the process's **view** (who is online, which accounts
  are active), read from the database and the cache once when the process gets
  its first session and kept up to date by deltas after that;
- a change seen here (a user came online or went offline with this process's
  session, or with a dead process's: :func:`chat.presence.reap`) is applied to
  the view and kept; at every tick (wall-clock multiples of the interval) the
  process publishes what changed net since its last tick as **one** layer
  message ``chat.presence`` to the process group: one per process per interval,
  whatever the number of logins; a first or last session is published even if
  this view had it already (another's view may not);
- every process applies what it receives (and account changes, published by
  :func:`chat.delivery.accounts_changed` when an account is created, activated,
  deactivated or deleted) to its view, the users named online or offline as the
  cache says when the message arrives (messages arrive in any order), and
  shortly after each tick pushes each of its sessions one ``presence``: the net
  difference between the view now and what that session was last sent, or
  nothing if there is none; a delta that a newer snapshot of the session has
  overtaken (it waited for the session's lock) is not sent.

The differences come from a log of the view's changes since the last push:
``(username, field, value before)``. A session remembers the log position of
what it was last sent (its snapshot, or the last push); the sessions whose
snapshot is older than the last push share one message, one made mid-interval
gets its own from the log's tail. Nothing here is O(N) per login but the bytes
the protocol requires: a login changes the view by one name (kept sorted with
``bisect``, beside its JSON encoding), and its snapshot joins the encoded names
(:func:`chatproto.framing.encode_json_with_lists`) instead of encoding N names.

Each session is pushed at the interval its snapshot told it, even after the
process's interval has changed (sessions come and go): the tick runs at the
greatest common divisor of the intervals told to the live sessions (usually
all the same), and a session is pushed at the ticks that fall on its own
cadence. So it gets at most one ``presence`` per interval it was told, and no
change is held back from it longer than that.

The heartbeat (:meth:`chat.sessions.SessionRegistry.beat`) reconciles the view
with the database and the cache every ``CHAT_HEARTBEAT_SECONDS``, for changes no
layer message carried; what it corrects reaches this process's sessions as
deltas like any change.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import secrets
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings

from chatproto.framing import encode_json, encode_json_value, encode_json_with_lists

from . import delivery, presence, services

if TYPE_CHECKING:
    from .sessions import Session, SessionRegistry

log = logging.getLogger("chat.sessions")

# Deliveries per second that one process sustains (docs/benchmarks.md: about 5,000 at
# N=50..500); presence may take at most a tenth of them: N sessions at one ``presence`` per
# interval each cost N / interval deliveries per second.
DELIVERY_CAPACITY = 5_000
PRESENCE_SHARE = 0.1
MAX_INTERVAL = 60
# After a tick, how long a process waits for the other processes' messages of the same tick
# before it pushes: ticks fall on the same wall-clock instants in every process.
SETTLE_SECONDS = 0.1

ONLINE, ALL = "online", "all"


def interval_for(sessions: int) -> int:
    """The ``presence_interval`` (whole seconds) for a process with ``sessions`` logged in."""
    fixed = settings.CHAT_PRESENCE_INTERVAL
    if fixed:
        return int(fixed)
    budget = DELIVERY_CAPACITY * PRESENCE_SHARE
    return max(1, min(MAX_INTERVAL, math.ceil(sessions / budget)))


class _SortedSet:
    """A set that also keeps its members sorted, and each one's JSON encoding in the same
    order: a snapshot lists them without sorting or encoding N names at every login."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.members = set(names)
        self.ordered = sorted(self.members)
        self.encoded = [encode_json_value(name) for name in self.ordered]

    def __contains__(self, name: object) -> bool:
        return name in self.members

    def __len__(self) -> int:
        return len(self.members)

    def set(self, name: str, present: bool) -> bool:
        """Add or remove ``name``; True when that changed something."""
        if (name in self.members) == present:
            return False
        at = bisect.bisect_left(self.ordered, name)
        if present:
            self.members.add(name)
            self.ordered.insert(at, name)
            self.encoded.insert(at, encode_json_value(name))
        else:
            self.members.discard(name)
            del self.ordered[at]
            del self.encoded[at]
        return True


@dataclass
class _Told:
    """What a session was told: its interval, the log position it has, and the first tick
    (wall-clock seconds, a multiple of the interval) at which it may be pushed again."""

    interval: int
    since: int
    next_tick: float = -math.inf


class PresenceFeed:
    """This process's view of presence, its changes, its tick and its pushes (module doc)."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry
        self.origin = secrets.token_hex(8)  # tells this process's own layer messages apart
        self.online: _SortedSet | None = None
        self.all: _SortedSet | None = None
        self._log: list[tuple[str, str, bool]] = []
        self._log_start = 0  # the position of _log[0] since the process began
        self._pending: dict[str, tuple[bool, bool]] = {}  # name: (online at last tick, now)
        self._touched: set[str] = set()  # names changed while a reconciliation reads
        self._early: list[dict[str, Any]] | None = None  # received while the view is first read
        self._told: weakref.WeakKeyDictionary[Session, _Told] = weakref.WeakKeyDictionary()
        self._period = 0  # the tick: the gcd of the intervals told to the live sessions
        self._rescheduled = asyncio.Event()  # a session was told an interval off the tick
        self.processes = 1  # live server processes, as the last heartbeat counted them
        self._last_push = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()

    # --- the interval --------------------------------------------------------------------------

    def interval(self) -> int:
        """The interval a snapshot tells now: for the sessions this process has, or for its
        share of the active accounts if that is more. Counts, not copies: this runs at every
        login.

        A session keeps the interval it was told (PROTOCOL.md 3.2 has no way to lengthen it),
        so an interval sized only to the sessions of the moment would tell the first sessions
        of a burst of logins (a morning, a restart) 1 s, the next 2 s, and so on: a process
        that reached 5,000 sessions so pushed ~1,460 records a second, not its 500, to the
        burst's end (bench/NOTES.md, "The two-process storm"). Every active account may log
        in at once, so the interval is sized for that from the first login.
        """
        share = len(self.all) // max(1, self.processes) if self.all is not None else 0
        return interval_for(max(self.registry.local_count(), share))

    # --- snapshots -----------------------------------------------------------------------------

    async def snapshot(self, session: Session, ref: str | None = None) -> bytes:
        """The ``users`` message for ``session`` (login, or the answer to ``users``), encoded
        (``ServerConnection.send_plaintext``); the session's deltas start from it."""
        if self.online is None or self.all is None:
            await self._load()
        assert self.online is not None and self.all is not None
        session.presence_seq = self._log_start + len(self._log)
        told = self.interval()
        self._told[session] = _Told(told, session.presence_seq)
        if self._period and told % self._period:
            self._period = math.gcd(self._period, told)
            self._rescheduled.set()  # the tick must come round sooner for this session
        self._start()
        fields = services.answer("users", ref, presence_interval=told)
        return encode_json_with_lists(
            fields, {"online": self.online.encoded, "all": self.all.encoded}
        )

    async def _load(self) -> None:
        """Read the view whole; layer messages that arrive during the read are kept and
        applied after it (the read may predate them), not dropped."""
        if self._early is None:
            self._early = []
        try:
            truth = await self.registry.workers.database(services.users_snapshot)()
        finally:
            early, self._early = self._early or [], None
        if self.online is None or self.all is None:
            self.all = _SortedSet(truth["all"])
            self.online = _SortedSet(truth["online"])
        for event in early:
            await self.receive(event)

    # --- changes -------------------------------------------------------------------------------

    async def local_change(self, username: str, online: bool) -> None:
        """A user's first session (``online``) or last one (not) began or ended as this
        process saw it (its own sessions, or a dead process's it reaped)."""
        self._set(username, ONLINE, online)
        # The fact is published even if this view had it already: another process's view
        # may say otherwise (its receivers confirm it against the cache).
        before = self._pending.get(username, (not online, not online))[0]
        self._pending[username] = (before, online)
        if self._task is None or self._task.done():
            # No tick runs (this process has no session left): publish at once.
            task = asyncio.ensure_future(self._publish())
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def receive(self, event: dict[str, Any]) -> None:
        """A ``chat.presence`` layer message: apply it to the view (pushed at the next tick).

        The users it names as online or offline are set as the cache says now (one read per
        message), not as it says: messages from several processes arrive in any order, and
        the sender's view may have been behind. A user with a session here stays online.
        """
        if event.get("origin") == self.origin:
            return  # ours (applied already)
        if self.online is None:
            if self._early is not None:
                self._early.append(event)  # the view is being read: applied after
            return  # no view: read whole when one is needed
        for name in event.get("added", ()):
            self._set(name, ALL, True)
        for name in event.get("removed", ()):
            self._set(name, ALL, False)
            self._set(name, ONLINE, False)
        names = [*event.get("online", ()), *event.get("offline", ())]
        if not names:
            return
        confirmed = await sync_to_async(presence.online)(names)
        for name in names:
            if name in confirmed or not self.registry.has_username(name):
                self._set(name, ONLINE, name in confirmed)

    def _set(self, name: str, field: str, value: bool) -> bool:
        """Set one fact of the view, logging it if it changed; the value it had."""
        members = self.online if field == ONLINE else self.all
        if members is None:
            return not value  # no view: it is read whole, this change with it
        was = name in members
        if members.set(name, value):
            self._log.append((name, field, was))
            self._touched.add(name)
        return was

    async def reconcile(self) -> None:
        """Correct the view from the database and the cache (the heartbeat calls this)."""
        if self.online is None or self.all is None:
            return
        self._touched = set()
        truth = await self.registry.workers.database(services.users_snapshot)()
        touched, self._touched = self._touched, set()
        for field, members in ((ALL, self.all), (ONLINE, self.online)):
            facts = set(truth[field])
            for name in (facts ^ members.members) - touched:
                self._set(name, field, name in facts)

    # --- the tick ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-presence")

    def stop(self) -> None:
        """The process has no session left: stop ticking and forget the view.

        Unpublished changes are published now (or dropped if no loop runs): kept, they would
        go out much later, after the processes' views had moved on, and override them.
        """
        if self._task is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):  # its event loop may be closed already
                self._task.cancel()
        self._task = None
        pending, self._pending = self._pending, {}
        self._touched = set()
        with contextlib.suppress(RuntimeError):  # no running loop: nothing can be published
            task = asyncio.get_running_loop().create_task(self._publish(pending))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
        self.online = self.all = None
        self._log_start += len(self._log)
        self._log.clear()
        self._told.clear()
        self._period = 0
        self._last_push = -math.inf

    async def _run(self) -> None:
        while True:
            period = self._period or self.interval()
            self._period = period
            self._rescheduled.clear()
            tick = (time.time() // period + 1) * period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescheduled.wait(), tick - time.time())
                continue  # a session was told a shorter interval: come round on its cadence
            try:
                await self._publish()
                await asyncio.sleep(SETTLE_SECONDS)
                wait = self._last_push + period - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # a late tick: never two pushes within a tick
                await self.push(tick)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a presence tick failed")

    async def _publish(self, pending: dict[str, tuple[bool, bool]] | None = None) -> None:
        """One layer message with this process's net changes since its last one (if any).

        Never raises: a failed publish (the layer's Redis is down) is logged and its changes
        go back to ``_pending`` for the next tick, so the tick still pushes to the local
        sessions and nothing is lost. Changes handed over by :meth:`stop` are dropped instead:
        the feed has stopped, and they would go out late.
        """
        retry = pending is None
        if pending is None:
            pending, self._pending = self._pending, {}
        online = sorted(name for name, (was, now) in pending.items() if now and not was)
        offline = sorted(name for name, (was, now) in pending.items() if was and not now)
        if not (online or offline):
            return
        try:
            await delivery.presence_changed(
                {"origin": self.origin, "online": online, "offline": offline}
            )
        except Exception as exc:
            log.warning("publishing presence failed (%s)", type(exc).__name__)
            for name, (was, now) in pending.items() if retry else ():  # later changes win
                self._pending[name] = (was, self._pending.get(name, (was, now))[1])

    async def push(self, tick: float | None = None) -> None:
        """Each session that was sent a snapshot and whose cadence falls on ``tick`` (the
        scheduled wall-clock time; None: every session, whatever its cadence, as the tests
        push by hand): one ``presence`` with its net changes.

        The log keeps what the sessions not due yet still need; the period of the next tick
        is the gcd of the intervals the live sessions were told (one pass, no extra copy).
        """
        log_, start = self._log, self._log_start
        end = start + len(log_)
        self._last_push = time.monotonic()
        if not log_:
            # No change since every session's last push or snapshot: nobody is due anything,
            # so a quiet tick does not walk the sessions (an idle process's only per-session
            # work of ours). The tick's period is recomputed at the next tick with changes.
            return
        keep_from = end
        period = 0
        by_start: dict[int, list[Session]] = {}
        for session in self.registry.local_sessions():
            told = self._told.get(session)
            if told is None:
                if session.presence_seq is None:
                    continue  # no snapshot yet: it starts from its own
                told = self._told[session] = _Told(self.interval(), session.presence_seq)
            period = math.gcd(period, told.interval)
            if told.since >= end:
                continue
            if tick is not None and tick < told.next_tick:
                keep_from = min(keep_from, told.since)  # not its turn: its changes wait
                continue
            by_start.setdefault(max(told.since, start), []).append(session)
            told.since = end
            if tick is not None:
                told.next_tick = tick + told.interval
        if period:
            self._period = period
        # Every delta from the view as it is now, before anything awaits and changes it.
        messages = [
            (sessions, self._delta(log_[since - start :]))
            for since, sessions in sorted(by_start.items())
        ]
        del log_[: keep_from - start]
        self._log_start = keep_from
        for sessions, message in messages:
            if message is not None:
                # Tagged with the position it reaches: skipped if a snapshot overtakes it.
                await self.registry.push_to(sessions, encode_json(message), end)

    def _delta(self, changes: list[tuple[str, str, bool]]) -> dict[str, Any] | None:
        """The ``presence`` from the view before ``changes`` to the view now; None if equal."""
        assert self.online is not None and self.all is not None
        before: dict[tuple[str, str], bool] = {}
        for name, field, was in changes:
            before.setdefault((name, field), was)
        lists: dict[str, list[str]] = {"online": [], "offline": [], "added": [], "removed": []}
        for (name, field), was in before.items():
            now = name in (self.online if field == ONLINE else self.all)
            if now == was:
                continue  # came and went (or went and came) since: not mentioned
            if field == ALL:
                lists["added" if now else "removed"].append(name)
            else:
                lists["online" if now else "offline"].append(name)
        if not any(lists.values()):
            return None
        return {"type": "presence", **{key: sorted(names) for key, names in lists.items()}}
