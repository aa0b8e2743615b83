"""The sliding-window counters behind login, registration and handshake limits, and the
recollection of the addresses an account logged in from."""

from __future__ import annotations

import pytest

from accounts.throttle import (
    Recollection,
    SlidingWindow,
    StrictWindow,
    network_of,
    wait_seconds,
)


def test_below_the_limit_nothing_to_wait():
    assert wait_seconds(previous=0, current=4, elapsed=10, window=60, limit=5) is None


def test_at_the_limit_in_a_fresh_bucket_wait_for_the_next_bucket():
    assert wait_seconds(previous=0, current=5, elapsed=10, window=60, limit=5) == 51


def test_the_previous_bucket_fades_over_the_current_one():
    # 10 failures last minute, none now, 15 s in: estimate 10 * 45/60 = 7.5 >= 5;
    # it drops below 5 once less than 30 s of the old bucket overlap: after 15 more s.
    assert wait_seconds(previous=10, current=0, elapsed=15, window=60, limit=5) == 16


def test_far_over_the_limit_waits_into_the_next_bucket():
    # 20 now: next bucket starts at 60 - 30 = 30 s; 20 * (60 - s) / 60 < 5 when s > 45.
    assert wait_seconds(previous=0, current=20, elapsed=30, window=60, limit=5) == 76


def test_retry_after_never_exceeds_two_windows():
    for previous in range(0, 50, 7):
        for current in range(0, 50, 7):
            wait = wait_seconds(previous, current, 59.9, 3600, 5)
            assert wait is None or 1 <= wait <= 2 * 3600


@pytest.fixture
def window(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "throttle-tests",
        }
    }
    from django.core.cache import cache

    cache.clear()
    return SlidingWindow("test", limit=3, seconds=100)


def test_hits_are_counted_per_key_and_expire_with_the_window(window):
    now = 1_000_000.0
    for _ in range(3):
        assert window.retry_after("a", now) is None
        window.hit("a", now)
    assert window.retry_after("a", now) == 101  # strictly after the bucket ends
    assert window.retry_after("b", now) is None
    # Two windows later nothing is left.
    assert window.retry_after("a", now + 200) is None


def test_reset_forgets_a_key(window):
    now = 2_000_000.0
    for _ in range(3):
        window.hit("a", now)
    window.reset("a", now)
    assert window.retry_after("a", now) is None


# --- the strict window: a promise of "at most limit in any interval" ---------------------------


def hits_allowed(window, times: list[float]) -> list[float]:
    """Offer a hit at each time; the times at which it was allowed (and counted)."""
    allowed = []
    for now in times:
        if window.retry_after("k", now) is None:
            window.hit("k", now)
            allowed.append(now)
    return allowed


def most_in_any_interval(times: list[float], seconds: float) -> int:
    """The largest number of ``times`` inside one half-open interval of ``seconds``."""
    return max(sum(1 for t in times if start - seconds < t <= start) for start in times)


def bunched_at_a_bucket_edge(bucket: int) -> list[float]:
    """Hits offered in a burst just before a bucket boundary, then steadily for a window and a half:
    the pattern the two-bucket estimate underestimates."""
    edge = 1_000 * bucket
    return [edge - 5 + i * 0.01 for i in range(400)] + [edge + i * 2.5 for i in range(600)]


def test_the_two_bucket_estimate_lets_through_more_than_its_limit_in_one_window(window):
    """Control: why the account limit needs StrictWindow. Hits bunched at the end of a bucket
    fade early, and about twice the limit gets through within one window."""
    sliding = SlidingWindow("control", limit=100, seconds=1000)
    allowed = hits_allowed(sliding, bunched_at_a_bucket_edge(3_000))
    assert most_in_any_interval(allowed, 1000) > 150


def test_a_strict_window_never_lets_more_than_its_limit_into_any_interval(window):
    strict = StrictWindow("strict", limit=100, seconds=1000)
    allowed = hits_allowed(strict, bunched_at_a_bucket_edge(3_000))
    assert most_in_any_interval(allowed, 1000) == 100
    # It is a limit, not a lockout: hits keep being allowed as the old ones leave the window.
    assert len(allowed) > 100


def test_a_strict_window_says_when_the_oldest_hits_leave_it(window):
    strict = StrictWindow("strict", limit=3, seconds=600, slices=60)  # 10 s slices
    now = 1_000_005.0  # 5 s into a slice
    strict.hit("k", now)
    strict.hit("k", now + 20)
    strict.hit("k", now + 20)
    assert strict.retry_after("k", now + 30) == 575  # the first slice ends at +5, leaves at +605
    assert strict.retry_after("k", now + 604) == 1
    assert strict.retry_after("k", now + 605) is None
    assert strict.retry_after("other", now + 30) is None


def test_a_strict_window_keeps_its_counts_as_long_as_the_window(window):
    strict = StrictWindow("strict", limit=2, seconds=3600)
    now = 3_000_000.0
    strict.hit("k", now)
    strict.hit("k", now)
    assert 3600 <= strict.retry_after("k", now + 1) <= 3600 + strict.slice_seconds
    assert strict.retry_after("k", now + 3600 + strict.slice_seconds) is None


def test_a_recollection_knows_a_key_for_its_time_then_forgets_it(window, monkeypatch):
    import time

    clock = [time.time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # the local-memory cache's expiry
    known = Recollection("test-known", seconds=100)
    assert not known.knows("alice\0192.0.2.1")
    known.note("alice\0192.0.2.1")
    assert known.knows("alice\0192.0.2.1")
    assert not known.knows("alice\0192.0.2.2")
    clock[0] += 101
    assert not known.knows("alice\0192.0.2.1")


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_an_address_stands_for_its_network(address, network):
    assert network_of(address) == network
