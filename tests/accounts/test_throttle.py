"""The sliding-window counter behind login, registration and handshake limits."""

from __future__ import annotations

import pytest

from accounts.throttle import SlidingWindow, wait_seconds


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
