"""Abuse limits: how much one user (or one address) may do, and when a session is closed for it.

Every limit is a setting (``chatsite/env.py``; ``docs/server.md`` has the table)
and is answered the same way: ``error`` with code ``rate_limited`` and a message
saying when to try again (``login_failed`` with ``retry_after`` for the session
limit, the only one met at login). A session that goes on after being refused
is closed: its ``CHAT_RATE_LIMITED_CLOSE[0]``-th ``rate_limited`` answer within
``CHAT_RATE_LIMITED_CLOSE[1]`` seconds (10 in 60 by default) is followed by a
close with 4008 (PROTOCOL.md: "continued flooding after ``rate_limited``"), as
the 10th ``bad_request`` of a session is. A client that waits as it is told is
never closed; one that keeps sending regardless is.

======================  ==========================  ========================================
limit                   setting (default)           counted
======================  ==========================  ========================================
messages                ``CHAT_MESSAGE_RATE``       ``send`` and ``pm`` of a user, in each
                        (30/10)                     process (token bucket)
requests                ``CHAT_REQUEST_RATE``       every request of a user but the steps of
                        (200/20)                    a transfer, in each process (token bucket)
room creations          ``CHAT_ROOM_CREATE_RATE``   successful ``create_room`` of a user,
                        (20/3600)                   across processes (sliding window)
sessions                ``CHAT_MAX_SESSIONS`` (10)  logged-in sessions of a user, across
                                                    processes (presence)
open transfers          ``CHAT_MAX_OPEN_TRANSFERS`` transfers a user offered and that are
                        (8)                         not over, unanswered offers included, in
                                                    each process (``TransferRegistry``)
handshakes              ``CHAT_HANDSHAKE_RATE``     new connections per client address,
                        (300/60)                    across processes (sliding window); past
                                                    it, close 4008 before any RSA work
handshake queue         ``CHAT_HANDSHAKE_QUEUE``    key messages waiting for or in RSA work,
                        (250 per RSA thread)        all addresses, in each process
                                                    (``chat/workers.py``); while full, close
                                                    4008 before the hello or any RSA work
======================  ==========================  ========================================

Two counters, for two costs. ``send`` and ``pm`` are the hot path (a fan-out
sender sends hundreds a second), so messages and requests are counted in
process memory (:class:`TokenBuckets`: a dict lookup and some arithmetic, no
I/O). A user's sessions on one process share one bucket; sessions on P
processes get up to P times the rate, which the session limit bounds. The rare
events, room creations and handshakes, are counted in the cache with
:class:`accounts.throttle.SlidingWindow`, shared by every process. The open
transfers are counted by chatproto's registry (``chat/transfers.py``).

Rates are ``COUNT/SECONDS``. For a token bucket that means bursts of up to
COUNT, then COUNT per SECONDS on average; for a sliding window, at most COUNT in
any SECONDS. A refused request takes nothing from a bucket or window.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Hashable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

from accounts.throttle import SlidingWindow
from chatproto.messages import Request
from chatproto.transfer import TRANSFER_TYPES
from chatproto.wording import in_words, try_again

from . import presence

MESSAGE_TYPES = frozenset({"send", "pm"})


class TokenBuckets:
    """A token bucket per key, in this process's memory.

    Each key's bucket holds up to ``count`` tokens and refills at ``count /
    seconds`` tokens a second; every admitted hit takes one. A full bucket
    says nothing that a missing one does not, so full buckets are swept away
    now and then: memory follows the users who are busy, not every user seen.
    """

    def __init__(self, count: int, seconds: float) -> None:
        self.rate = (count, seconds)
        self.capacity = float(count)
        self.per_second = count / seconds
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, as of when)
        self._sweep_at = 1024

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: Hashable, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - then) * self.per_second)

    def _wait(self, tokens: float, cost: float = 1.0) -> int | None:
        if tokens >= cost:
            return None
        return max(1, math.ceil((cost - tokens) / self.per_second))

    def wait(self, key: Hashable, now: float) -> int | None:
        """Whole seconds until ``key`` has a token, or None if it has one now (nothing taken).

        ``now`` is a monotonic time in seconds (``time.monotonic()``).
        """
        return self._wait(self._tokens(key, now))

    def take(self, key: Hashable, now: float, cost: int = 1) -> int | None:
        """Take ``cost`` tokens for ``key``, all or none: None if they were there, else the
        whole seconds until they will be (nothing taken, so a refusal costs nothing)."""
        tokens = self._tokens(key, now)
        if tokens < cost:
            return self._wait(tokens, cost)
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > self._sweep_at:
            self._sweep(now)
        return None

    def _sweep(self, now: float) -> None:
        full = [
            key
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.per_second >= self.capacity
        ]
        for key in full:
            del self._buckets[key]
        self._sweep_at = max(1024, 2 * len(self._buckets))


class LimitCounters:
    """This process's counters: the token buckets, and the logins under way per username.

    One per :class:`chat.runtime.ChatRuntime`; every session's :class:`SessionLimits`
    shares it.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBuckets] = {}
        # Logins of each username between their session check and their entry in presence.
        self._arriving: collections.Counter[str] = collections.Counter()

    def bucket(self, name: str, rate: tuple[int, int]) -> TokenBuckets:
        """This process's buckets for ``name``, new whenever the configured rate changes."""
        buckets = self._buckets.get(name)
        if buckets is None or buckets.rate != tuple(rate):
            buckets = self._buckets[name] = TokenBuckets(*rate)
        return buckets

    @contextlib.asynccontextmanager
    async def session_place(self, username: str) -> AsyncIterator[int | None]:
        """Hold a place for a login of ``username`` until it is in presence (or failed).

        Yields None when the session may go ahead, else the ``retry_after`` (the
        user has ``CHAT_MAX_SESSIONS`` sessions already). The login must complete
        (``presence.session_started``) inside the ``async with``. Logins of one
        user in this process count each other while they are under way, so
        simultaneous logins here can never get past the limit together (at worst
        both are refused and retry); logins completing at the same instant on
        different processes can, by one each.
        """
        arriving = self._arriving
        arriving[username] += 1
        try:
            live = await sync_to_async(_sessions_of)(username)
            full = live + arriving[username] > settings.CHAT_MAX_SESSIONS
            yield session_retry_after() if full else None
        finally:
            arriving[username] -= 1
            if arriving[username] <= 0:
                del arriving[username]


def _sessions_of(username: str) -> int:
    """The user's logged-in sessions: those in presence, and those still setting up
    two-factor login (PROTOCOL.md 3.4), which presence does not hold yet."""
    return presence.session_count(username) + presence.enrolling_count(username)


def room_window() -> SlidingWindow:
    return SlidingWindow("create-room", *settings.CHAT_ROOM_CREATE_RATE)


def handshake_window() -> SlidingWindow:
    return SlidingWindow("handshake", *settings.CHAT_HANDSHAKE_RATE)


def handshake_allowed(address: str) -> bool:
    """Count a new connection from ``address``; False past the limit (PROTOCOL.md 1.3).

    Synchronous (cache calls). A refused connection is not counted: it cost no RSA work.
    """
    window = handshake_window()
    if window.retry_after(address):
        return False
    window.hit(address)
    return True


def _cache_is_local() -> bool:
    """Whether the default cache lives in this process's memory (no I/O behind its calls)."""
    return isinstance(caches["default"], LocMemCache)


async def admit_handshake(address: str) -> bool:
    """:func:`handshake_allowed` from the event loop, without a thread hop when it can.

    With the local-memory cache (one server process) the check is a few dict
    operations and pickles under the cache's lock, about half of what the hop to a
    thread and back cost the loop (the two hops of a handshake, this one and the
    RSA work, were a tenth of the loop's time in a burst of handshakes). A shared
    cache (Redis) means network I/O, so then it runs in a thread.
    """
    if _cache_is_local():
        return handshake_allowed(address)
    return await sync_to_async(handshake_allowed)(address)


class SessionLimits:
    """One session's side of the limits: whether a request may go ahead, and when to close.

    The consumer asks :meth:`admit` before it serves a request of a logged-in
    user, tells :meth:`succeeded` after it served one, and :meth:`refused`
    whenever it answers ``rate_limited`` (whichever limit refused).
    """

    def __init__(self, counters: LimitCounters) -> None:
        self.counters = counters
        # Created at the first refusal: most sessions never get one, and an empty deque
        # costs 760 bytes in every idle session.
        self._refusals: collections.deque[float] | None = None

    async def admit(self, user_id: int, request: Request) -> tuple[str, int] | None:
        """None when ``request`` may go ahead; else the message and ``retry_after`` (seconds)
        of its ``rate_limited`` answer.

        The steps of a file transfer are never refused here: the transfer's own
        window of 16 chunks paces them, and a refused acknowledgement would
        only break a transfer.
        """
        kind = request.type
        if kind in TRANSFER_TYPES:
            return None
        if kind == "create_room":
            wait = await sync_to_async(room_window().retry_after)(str(user_id))
            if wait is not None:
                count, seconds = settings.CHAT_ROOM_CREATE_RATE
                words = f"You may create {count} rooms in {in_words(seconds)}; {try_again(wait)}"
                return words, wait
        # From here on nothing awaits: the buckets are checked, then taken from, in one go,
        # so that a refused request takes from none of them.
        now = time.monotonic()
        requests = self.counters.bucket("requests", settings.CHAT_REQUEST_RATE)
        messages = (
            self.counters.bucket("messages", settings.CHAT_MESSAGE_RATE)
            if kind in MESSAGE_TYPES
            else None
        )
        if messages is not None and (wait := messages.wait(user_id, now)) is not None:
            return f"You are sending messages too fast; {try_again(wait)}", wait
        if (wait := requests.wait(user_id, now)) is not None:
            return f"Too many requests; {try_again(wait)}", wait
        requests.take(user_id, now)
        if messages is not None:
            messages.take(user_id, now)
        return None

    async def succeeded(self, user_id: int, request: Request) -> None:
        """``request`` was served: count what counts only when done (a room created)."""
        if request.type == "create_room":
            await sync_to_async(room_window().hit)(str(user_id))

    @property
    def keeps_refusals(self) -> bool:
        """Whether the session holds a record of refusals yet (none until its first)."""
        return self._refusals is not None

    def refused(self, now: float | None = None) -> bool:
        """Count a ``rate_limited`` answer; True when the session must now be closed (4008)."""
        count, seconds = settings.CHAT_RATE_LIMITED_CLOSE
        now = time.monotonic() if now is None else now
        if self._refusals is None:
            self._refusals = collections.deque()
        refusals = self._refusals
        refusals.append(now)
        while now - refusals[0] >= seconds:
            refusals.popleft()
        return len(refusals) >= count


def session_retry_after() -> int:
    """The ``retry_after`` of a login refused for the session limit.

    Sessions end when their users close them, which no timer predicts; but a
    session of a server process that died stops counting three heartbeats
    after the process's last (``chat.presence``), so that is worth waiting for.
    """
    return 3 * settings.CHAT_HEARTBEAT_SECONDS
