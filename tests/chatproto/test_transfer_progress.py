"""Progress: the fraction done, the rate over a sliding window, the time left."""

from __future__ import annotations

import pytest

from chatproto.transfer import (
    Progress,
)


def test_progress_rate_follows_the_last_seconds_and_gives_the_time_left():
    progress = Progress(1000, window=5.0)
    assert progress.rate is None and progress.remaining_seconds is None
    progress.update(0, 100.0)
    progress.update(100, 101.0)  # 100 B/s
    assert progress.rate == 100.0 and progress.remaining_seconds == 9.0
    for second in range(2, 12):  # then 10 B/s for ten seconds
        progress.update(100 + 10 * (second - 1), 100.0 + second)
    assert progress.rate == pytest.approx(10.0)  # the fast start has left the window
    assert progress.remaining_seconds == pytest.approx((1000 - 200) / 10.0)
    assert progress.fraction == pytest.approx(0.2)


def test_progress_of_an_empty_file_is_complete_and_a_stalled_one_has_no_time_left():
    assert Progress(0).fraction == 1.0 and Progress(0).remaining_seconds == 0.0
    stalled = Progress(100)
    stalled.update(10, 0.0)
    stalled.update(10, 1.0)
    assert stalled.rate == 0.0 and stalled.remaining_seconds is None


def test_progress_survives_a_clock_going_backwards():
    progress = Progress(100)
    progress.update(10, 5.0)
    progress.update(20, 4.0)
    assert progress.rate is None and progress.done == 20
