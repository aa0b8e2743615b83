"""Login storm: N distinct users log in to the product and stay connected.

The N accounts (``bench-s00000`` ...) are created before the first storm, one by
one as the other bench accounts are (so the product's signals run), with the
bench's cheap Argon2 (:class:`bench.product_settings.BenchArgon2PasswordHasher`:
t=1, m=64 KiB, p=1): at Django's default cost the hashing alone would bound the
storm (see the handshake scenario's Argon2 row) and hide everything else.

Each storm starts fresh server processes: one process, then (when Redis answers)
P processes sharing Redis, the sessions spread round-robin over them. The load
generator logs the users in with ``storm_concurrency`` logins in flight over its
processes, many loopback source addresses, and keeps every session open, reading
all it receives and counting, per session, the ``users`` snapshots, the
``presence`` messages and the usernames listed in them (counters in arrays, no
message kept: a few KiB per session, as in the idle scenario). After the last
login the sessions stay for ``storm_hold`` seconds, or two presence intervals
if longer, so that the last deltas arrive; then they are closed.

Figures: for each block of ``storm_block`` sessions in the order their logins
completed, the open rate (block size / time since the previous block's last
login, the storm's start for the first) and the block's median time from TCP
connect to ``login_ok``; the ratio of the last block's rate to the first's, both
in steady state (:func:`_steady`); the same ratio of the table's blocks beside it;
sessions opened of N; total time; presence messages and names per session; the
servers' CPU (and Redis's when it is used) over the storm and the hold.

With resumes (``storm_resume_processes``, ``--storm-resume``; PROTOCOL.md 3.4): the
same storm where every session logs in with ``resume`` and a remembered device's token
instead of its password (what clients do after a server restart). The devices are made
beforehand by the product's own code (:mod:`bench.product_devices`, not timed); the
run's key and its report column say ``resume``.

Bounded: no login starts after ``storm_budget`` seconds (those are counted as
skipped), every load-generator call has a timeout, and only loopback is used.
"""

from __future__ import annotations

import bisect
import os
import statistics
import time
import traceback
from typing import Any

from .. import procs, product, stats
from ..config import Config
from ..loadgen import LoadGen, loopback_addresses
from ..servers import KINDS, Context
from .scaleout import _redis_ok, _redis_pids

MAX_HOLD = 125.0  # two of the longest presence intervals (60 s), and a little


def run(ctx: Context, cfg: Config) -> dict[str, Any]:
    if not isinstance(ctx.product, product.Product):
        raise product.ProductUnavailable("the product server could not be prepared")
    nofile = procs.raise_nofile_limit(max(65536, cfg.storm_sessions * 3))
    print(f"[storm] creating {cfg.storm_sessions:,} accounts", flush=True)
    began = time.monotonic()
    accounts = ctx.product.storm_accounts(cfg.storm_sessions)
    result: dict[str, Any] = {
        "sessions": cfg.storm_sessions,
        "block": cfg.storm_block,
        "concurrency": cfg.storm_concurrency,
        "workers": cfg.storm_workers,
        "budget_s": cfg.storm_budget,
        "hasher": "Argon2id t=1, m=64 KiB, p=1 (bench.product_settings.BenchArgon2PasswordHasher)",
        "accounts_s": round(time.monotonic() - began, 1),
        "nofile": nofile,
        "runs": {},
    }
    redis_ok = _redis_ok(cfg.redis_url)
    tokens: list[tuple[str, str]] | None = None
    plan = [(count, False) for count in cfg.storm_processes]
    plan += [(count, True) for count in cfg.storm_resume_processes]
    for count, resume in plan:
        key = run_key(count, resume)
        if count > 1 and not redis_ok:
            result["runs"][key] = {
                "unavailable": f"Redis does not answer at {cfg.redis_url}; start it to measure"
            }
            continue
        if resume and tokens is None:
            print(f"[storm] remembering a device for {len(accounts):,} accounts", flush=True)
            began = time.monotonic()
            try:
                tokens = ctx.product.storm_devices(accounts)
            except product.ProductUnavailable as exc:
                tokens = []
                result["devices_error"] = str(exc)[:600]
            result["devices_s"] = round(time.monotonic() - began, 1)
        if resume and not tokens:
            result["runs"][key] = {
                "unavailable": "no remembered devices (the server does not serve resume?): "
                + result.get("devices_error", "")[:300]
            }
            continue
        how = "resumes" if resume else "logins"
        print(f"[storm] {cfg.storm_sessions:,} {how} over {count} process(es)", flush=True)
        try:
            credentials = tokens if resume and tokens else accounts
            r = result["runs"][key] = _storm(ctx, cfg, credentials, count, nofile, resume=resume)
            print(
                f"[storm] {key}: {r['opened']:,}/{r['sessions']:,} opened in "
                f"{r['storm_s']:.1f} s, last/first block (steady) {r['ratio']:.2f}, "
                f"presence/session mean {r['presence']['mean']:.1f} max {r['presence']['max']}",
                flush=True,
            )
        except Exception as exc:
            result["runs"][key] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
            print(f"[storm] {key}: {exc}", flush=True)
            if not isinstance(exc, (procs.ServerError, product.ProductUnavailable)):
                traceback.print_exc()
    return result


def run_key(count: int, resume: bool) -> str:
    """The storm's key in the results: ``"2"`` for 2 processes with password logins,
    ``"2-resume"`` for the same with resumes (the report labels them so)."""
    return f"{count}-resume" if resume else str(count)


def _storm(
    ctx: Context,
    cfg: Config,
    accounts: list[tuple[str, str]],
    count: int,
    nofile: int,
    *,
    resume: bool = False,
) -> dict[str, Any]:
    kind = KINDS["product"]
    tag = "-resume" if resume else ""
    if count == 1:
        servers = [kind.make(ctx, tag=f"-storm{tag}")]
        extra: list[int] = []
    else:
        prefix = f"bench{os.getpid()}storm{count}{tag.replace('-', '')}"
        servers = [
            kind.make(ctx, redis_url=cfg.redis_url, prefix=prefix, tag=f"-storm{tag}-x{count}-{i}")
            for i in range(count)
        ]
        extra = _redis_pids()
    workers = max(1, cfg.storm_workers)
    in_flight = [
        max(1, cfg.storm_concurrency // workers + (w < cfg.storm_concurrency % workers))
        for w in range(workers)
    ]
    bounds = [len(accounts) * w // workers for w in range(workers + 1)]
    with procs.running(servers, extra) as group, LoadGen(workers, nofile=nofile) as lg:
        targets = [kind.target(s) for s in servers]
        t_start = time.monotonic() + 1.0
        deadline = t_start + cfg.storm_budget
        calls = [
            (
                w,
                "storm",
                {
                    "targets": targets,
                    "accounts": accounts[bounds[w] : bounds[w + 1]],
                    "first": bounds[w],
                    "t_start": t_start,
                    "concurrency": in_flight[w],
                    "local_addrs": loopback_addresses(250, offset=w * 250),
                    "deadline": deadline,
                    "resume": resume,
                },
            )
            for w in range(workers)
        ]
        for index, name, kwargs in calls:
            lg.submit(index, name, **kwargs)
        time.sleep(max(0.0, t_start - time.monotonic()))
        before = group.sample()
        rss_before = group.rss()
        # every login that started before the deadline may take its open timeout, then retry
        wait = cfg.storm_budget + 240
        opened = [lg.result(w, max(0.1, t_start + wait - time.monotonic())) for w in range(workers)]
        after = group.sample()
        group.check_alive()
        storm_cpu = procs.cpu_between(before, after)
        done = sorted((d, t) for r in opened for d, t in zip(r["done"], r["took"], strict=True))
        storm_s = (done[-1][0] - t_start) if done else after.when - t_start
        # the sessions stay: at least two presence intervals after the last login
        probe_end = time.monotonic() + 0.5
        hold_results = lg.call_many(
            [(w, "storm_hold", {"t_end": probe_end}) for w in range(workers)], timeout=30
        )
        interval = max(r["presence_interval"] for r in hold_results)
        hold = min(MAX_HOLD, max(cfg.storm_hold, 2 * interval + 2))
        hold_end = (done[-1][0] if done else time.monotonic()) + hold
        hold_before = group.sample()
        hold_results = lg.call_many(
            [(w, "storm_hold", {"t_end": hold_end}) for w in range(workers)], timeout=hold + 60
        )
        hold_after = group.sample()
        rss_after = group.rss()
        group.check_alive()
        hold_cpu = procs.cpu_between(hold_before, hold_after)
        lg.call_many([(w, "close_all", {}) for w in range(workers)], timeout=180)
    blocks = _blocks([d for d, _ in done], [t for _, t in done], t_start, cfg.storm_block)
    full = [b for b in blocks if b["sessions"] == cfg.storm_block]
    blocks_ratio = (
        full[-1]["per_s"] / full[0]["per_s"] if len(full) >= 2 and full[0]["per_s"] else None
    )
    steady = _steady(done, cfg.storm_block)
    presence = [p for r in hold_results for p in r["presence"]]
    names = [n for r in hold_results for n in r["names"]]
    users = [u for r in hold_results for u in r["users"]]
    return {
        "processes": count,
        "auth": "resume" if resume else "login",
        "sessions": len(accounts),
        "opened": len(done),
        "failed": sum(r["failed"] for r in opened),
        "skipped": sum(r["skipped"] for r in opened),
        "retried": sum(r["retried"] for r in opened),
        "errors": sorted({e for r in opened for e in r["errors"]})[:5],
        "storm_s": storm_s,
        "per_s": len(done) / storm_s if storm_s > 0 else 0.0,
        "blocks": blocks,
        "ratio": steady["ratio"],
        "steady": steady,
        "blocks_ratio": blocks_ratio if blocks_ratio is not None else float("nan"),
        "open_time": stats.latency_summary(sorted(t for _, t in done)),
        "presence_interval": interval,
        "hold_s": hold,
        "presence": _summary(presence),
        "presence_names": _summary(names),
        "users_snapshots": {"min": min(users, default=0), "max": max(users, default=0)},
        "alive": sum(r["alive"] for r in hold_results),
        "closed_reasons": sorted({c for r in hold_results for c in r["closed_reasons"]})[:5],
        "storm_cpu": storm_cpu,
        "server_ms_per_session": storm_cpu["server_cpu_s"] * 1e3 / max(len(done), 1),
        "hold_cpu": hold_cpu,
        "redis_cpu_included": bool(extra),
        "rss_growth": rss_after - rss_before,
        "loadgen": stats.loadgen_verdict([r["cpu"]["util"] for r in opened], storm_cpu),
    }


def _blocks(done: list[float], took: list[float], t_start: float, size: int) -> list[dict]:
    """Open rate and median login time per block of ``size`` logins, in completion order."""
    blocks = []
    previous = t_start
    for first in range(0, len(done), size):
        ends = done[first : first + size]
        seconds = ends[-1] - previous
        blocks.append(
            {
                "first": first + 1,
                "sessions": len(ends),
                "seconds": seconds,
                "per_s": len(ends) / seconds if seconds > 0 else 0.0,
                "p50_ms": statistics.median(took[first : first + size]) * 1e3,
            }
        )
        previous = ends[-1]
    return blocks


def _steady(done: list[tuple[float, float]], size: int) -> dict[str, Any]:
    """The open rate of the first and the last ``size`` logins in steady state.

    ``done`` holds (completed, took) in completion order. The first block is timed from its
    first ``login_ok``, not from the storm's start: the first round of logins takes one
    login time to complete whatever the rate (the fill). The last block is the last ``size``
    logins completed before the last login started (the drain: once no login is waiting,
    the ones in flight complete with the server less and less busy); the last block of the
    table includes the drain and the first includes the fill, which flatters their ratio.
    """
    nan = float("nan")
    out: dict[str, Any] = {"first_per_s": nan, "last_per_s": nan, "ratio": nan, "last_from": 0}
    if len(done) < 2 * size:
        return out
    drain = max(d - t for d, t in done)  # the last login's start
    end = bisect.bisect_right([d for d, _ in done], drain)  # logins completed before it
    if end < 2 * size:
        return out
    first_s = done[size - 1][0] - done[0][0]
    last_s = done[end - 1][0] - done[end - size - 1][0]
    if first_s <= 0 or last_s <= 0:
        return out
    out["first_per_s"] = (size - 1) / first_s
    out["last_per_s"] = size / last_s
    out["ratio"] = out["last_per_s"] / out["first_per_s"]
    out["last_from"] = end - size + 1
    out["drained"] = len(done) - end
    return out


def _summary(values: list[int]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values) if values else 0.0,
        "max": max(values, default=0),
        "min": min(values, default=0),
    }
