"""Small statistics and the timing harness shared by the scenarios."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .loadgen import BUSY_CORE, LoadGen
from .procs import ServerGroup, cpu_between

MACHINE_BUSY = 0.95  # the whole machine this busy: client and server fight for the cores


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence; NaN when empty."""
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def merge_sorted(lists: Iterable[Sequence[float]]) -> list[float]:
    merged: list[float] = []
    for values in lists:
        merged.extend(values)
    merged.sort()
    return merged


def median(values: Iterable[float]) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def latency_summary(sorted_seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9 and max, in milliseconds."""
    return {
        "samples": len(sorted_seconds),
        "p50_ms": percentile(sorted_seconds, 0.50) * 1e3,
        "p90_ms": percentile(sorted_seconds, 0.90) * 1e3,
        "p99_ms": percentile(sorted_seconds, 0.99) * 1e3,
        "p999_ms": percentile(sorted_seconds, 0.999) * 1e3,
        "max_ms": (sorted_seconds[-1] * 1e3) if sorted_seconds else math.nan,
    }


def windowed(
    lg: LoadGen,
    group: ServerGroup,
    calls: Sequence[tuple[int, str, dict[str, Any]]],
    t_start: float,
    t_end: float,
    timeout: float,
) -> tuple[list[Any], dict[str, float]]:
    """Submit ``calls`` (which measure [t_start, t_end) themselves), sample the servers'
    and the machine's CPU over the same window, and collect the results."""
    for index, name, kwargs in calls:
        lg.submit(index, name, **kwargs)
    _sleep_until(t_start)
    before = group.sample()
    _sleep_until(t_end)
    after = group.sample()
    deadline = time.monotonic() + timeout
    results = [lg.result(index, max(0.1, deadline - time.monotonic())) for index, _, _ in calls]
    group.check_alive()
    return results, cpu_between(before, after)


def loadgen_verdict(worker_utils: Sequence[float], cpu: dict[str, float]) -> dict[str, Any]:
    """Was the load generator, rather than the server, the limit of this measurement?

    Bound when one of its processes used most of a core, or when the machine
    was saturated while the server itself was not using a full core.
    """
    busiest = max(worker_utils, default=0.0)
    starved = cpu["machine_util"] >= MACHINE_BUSY and cpu["server_cores"] < BUSY_CORE
    reasons = []
    if busiest >= BUSY_CORE:
        reasons.append(f"a load-generator process used {busiest:.0%} of a core")
    if starved:
        reasons.append(
            f"machine {cpu['machine_util']:.0%} busy while the server used "
            f"{cpu['server_cores']:.2f} cores"
        )
    return {
        "worker_utils": [round(u, 3) for u in worker_utils],
        "total_cores": round(sum(worker_utils), 3),
        "bound": bool(reasons),
        "why": "; ".join(reasons),
    }


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)
