"""A transfer's progress for the user: fraction done, rate, time left. Presentation only."""

from __future__ import annotations

from collections import deque


class Progress:
    """Bytes done of a total, with a rate over a sliding window and the time left.

    Time is the caller's (a monotonic clock, in seconds). The rate is measured
    over the last ``window`` seconds, so it follows a network that speeds up or
    slows down instead of averaging since the start.
    """

    def __init__(self, total: int, *, window: float = 5.0) -> None:
        self.total = total
        self.done = 0
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, done: int, now: float) -> None:
        self.done = done
        if self._samples and now < self._samples[-1][0]:
            now = self._samples[-1][0]  # a clock that went backwards counts as standing still
        self._samples.append((now, done))
        # Keep one sample at or before the window's start, as the baseline of the rate.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    @property
    def fraction(self) -> float:
        """0.0 to 1.0 (an empty file is complete from the start)."""
        return 1.0 if self.total == 0 else min(1.0, self.done / self.total)

    @property
    def rate(self) -> float | None:
        """Bytes per second over the window; None until two samples span some time."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return max(0.0, (d1 - d0) / (t1 - t0))

    @property
    def remaining_seconds(self) -> float | None:
        """Seconds left at the current rate; None while it is unknown or zero."""
        left = self.total - self.done
        if left <= 0:
            return 0.0
        rate = self.rate
        if not rate:
            return None
        return left / rate
