"""Sliding-window rate limits kept in the cache, shared by every server process.

A window of ``seconds`` is approximated by two fixed buckets, the current one
and the one before, the older weighted by how much of it still overlaps the
window (the "sliding window counter" of Cloudflare's rate limiter). Counting is
``cache.incr``, which is atomic on Redis and on the local-memory cache, so
parallel attempts cannot slip through a read-modify-write race. Keys are
hashed: usernames and addresses never appear in the cache in clear.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.core.cache import cache


@dataclass(frozen=True)
class SlidingWindow:
    """At most ``limit`` hits per ``seconds`` for each key, under the name ``name``."""

    name: str
    limit: int
    seconds: int

    def _keys(self, key: str, now: float) -> tuple[str, str, float]:
        digest = hashlib.sha256(f"{self.name}\0{key}".encode()).hexdigest()[:32]
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
        timeout = 2 * self.seconds + 1  # the bucket is read for one more window as "previous"
        cache.add(current_key, 0, timeout=timeout)
        try:
            cache.incr(current_key)
        except ValueError:  # expired between add and incr
            cache.set(current_key, 1, timeout=timeout)

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
