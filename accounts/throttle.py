"""Sliding-window rate limits kept in the cache, shared by every server process.

A window of ``seconds`` is approximated by two fixed buckets, the current one
and the one before, the older weighted by how much of it still overlaps the
window (the "sliding window counter" of Cloudflare's rate limiter). Counting is
``cache.incr``, which is atomic on Redis and on the local-memory cache, so
parallel attempts cannot slip through a read-modify-write race. Keys are
hashed: usernames and addresses never appear in the cache in clear.

:class:`StrictWindow` is for a limit that is a promise ("at most 100 in any
hour"), which the two-bucket estimate cannot keep; :class:`Recollection`
remembers keys for a while (the addresses an account logged in from).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass

from django.core.cache import cache


def _digest(name: str, key: str) -> str:
    return hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()[:32]


def _count_hit(counter: str, timeout: int) -> None:
    """Add one to ``counter`` atomically, creating it (with ``timeout``) if it is new."""
    cache.add(counter, 0, timeout=timeout)
    try:
        cache.incr(counter)
    except ValueError:  # expired between add and incr
        cache.set(counter, 1, timeout=timeout)


@dataclass(frozen=True)
class SlidingWindow:
    """At most ``limit`` hits per ``seconds`` for each key, under the name ``name``."""

    name: str
    limit: int
    seconds: int

    def _keys(self, key: str, now: float) -> tuple[str, str, float]:
        digest = _digest(self.name, key)
        bucket = int(now // self.seconds)
        elapsed = now - bucket * self.seconds
        return f"throttle:{digest}:{bucket}", f"throttle:{digest}:{bucket - 1}", elapsed

    def retry_after(self, key: str, now: float | None = None) -> int | None:
        """Whole seconds until the next hit would be allowed, or None when allowed now."""
        now = time.time() if now is None else now
        current_key, previous_key, elapsed = self._keys(key, now)
        counts = cache.get_many([current_key, previous_key])
        return wait_seconds(
            counts.get(previous_key, 0),
            counts.get(current_key, 0),
            elapsed,
            self.seconds,
            self.limit,
        )

    def hit(self, key: str, now: float | None = None) -> None:
        """Count one hit against ``key``."""
        now = time.time() if now is None else now
        current_key, _, _ = self._keys(key, now)
        # The bucket is read for one more window as "previous".
        _count_hit(current_key, timeout=2 * self.seconds + 1)

    def reset(self, key: str, now: float | None = None) -> None:
        """Forget the hits of ``key`` (a successful login clears its pair's failures)."""
        now = time.time() if now is None else now
        current_key, previous_key, _ = self._keys(key, now)
        cache.delete_many([current_key, previous_key])


def wait_seconds(
    previous: int, current: int, elapsed: float, window: int, limit: int
) -> int | None:
    """How long until ``previous * (window - t) / window + current`` drops below ``limit``.

    ``elapsed`` is the time since the current bucket began. Returns None when
    the estimate is already below the limit, else whole seconds (at least 1),
    assuming no further hits.
    """

    def estimate(prev: float, curr: float, into: float) -> float:
        return prev * (window - into) / window + curr

    if estimate(previous, current, elapsed) < limit:
        return None
    left_in_bucket = window - elapsed
    if current < limit and previous > 0:
        # The older bucket's weight shrinks to zero over the rest of this bucket.
        wait = left_in_bucket - (limit - current) * window / previous
        if wait < left_in_bucket:
            return max(1, math.floor(wait) + 1)
    # In the next bucket, this bucket's count is the one that fades.
    fade = window * (1 - limit / current) if current >= limit else 0.0
    return max(1, math.floor(left_in_bucket + fade) + 1)


@dataclass(frozen=True)
class StrictWindow:
    """At most ``limit`` hits in *any* interval of ``seconds``, for each key.

    Why not :class:`SlidingWindow`: its estimate assumes the older bucket's hits
    were spread evenly, so hits bunched at the end of a bucket fade too early and
    up to about twice the limit get through within one window. Here the window
    is cut into ``slices`` and every hit of every slice that overlaps the last
    ``seconds`` counts in full: a key may be refused up to one slice early or
    released up to one slice late, never let through once too often. A check
    reads ``slices + 1`` counters in one ``get_many`` (one MGET on Redis).
    """

    name: str
    limit: int
    seconds: int
    slices: int = 60

    @property
    def slice_seconds(self) -> int:
        return max(1, -(-self.seconds // self.slices))  # ceiling: whole seconds per slice

    def _slice_key(self, digest: str, index: int) -> str:
        return f"throttle:{digest}:{self.slice_seconds}:{index}"

    def _counts(self, key: str, now: float) -> list[tuple[int, int]]:
        """(slice index, hits) of every slice overlapping ``(now - seconds, now]``, oldest first."""
        step = self.slice_seconds
        first, last = int((now - self.seconds) // step), int(now // step)
        digest = _digest(self.name, key)
        keys = {index: self._slice_key(digest, index) for index in range(first, last + 1)}
        counts = cache.get_many(list(keys.values()))
        return [(index, counts.get(name, 0)) for index, name in keys.items()]

    def retry_after(self, key: str, now: float | None = None) -> int | None:
        """Whole seconds until the next hit would be allowed, or None when allowed now."""
        now = time.time() if now is None else now
        counts = self._counts(key, now)
        remaining = sum(hits for _, hits in counts)
        if remaining < self.limit:
            return None
        for index, hits in counts:
            remaining -= hits
            if remaining < self.limit:
                # Slice ``index`` ends at (index + 1) * step and stops overlapping the
                # window ``seconds`` after that.
                wait = (index + 1) * self.slice_seconds + self.seconds - now
                return max(1, math.ceil(wait))
        raise AssertionError("unreachable: an empty window is below any limit of 1 or more")

    def hit(self, key: str, now: float | None = None) -> None:
        """Count one hit against ``key``."""
        now = time.time() if now is None else now
        name = self._slice_key(_digest(self.name, key), int(now // self.slice_seconds))
        # Read until the window has passed the slice.
        _count_hit(name, timeout=self.seconds + 2 * self.slice_seconds + 1)


@dataclass(frozen=True)
class Recollection:
    """Keys remembered for ``seconds`` since they were last noted (hashed, like the counters)."""

    name: str
    seconds: int

    def _key(self, key: str) -> str:
        return f"recall:{_digest(self.name, key)}"

    def note(self, key: str) -> None:
        """Remember ``key`` for ``seconds`` from now (again, if it was remembered already)."""
        cache.set(self._key(key), 1, timeout=self.seconds)

    def knows(self, key: str) -> bool:
        return cache.get(self._key(key)) is not None


def network_of(address: str) -> str:
    """The network an address stands for: an IPv4 address itself, an IPv6 address its /64.

    A host's IPv6 address changes within its /64 (temporary addresses, RFC 8981,
    rotate daily), so remembering the /64 is what recognises the same
    network next week. Anything that is not an IP address stays as it is.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(parsed), 64), strict=False))
    return str(parsed)
