"""Idle sessions: N logged-in, quiet sessions held by one server process.

Per server: the RSS before any session (after a warm-up of a few connections)
and after N sessions have settled gives the memory per session; the server's
CPU over a hold window of ``idle_hold`` seconds is what keeping them costs
(the server's own keepalive pings, presence heartbeats, timers). Baselines: a
raw ASGI app on daphne that accepts and holds (a bare daphne WebSocket
connection) and a bare ``websockets`` server; their clients only connect.

Client sockets are spread over several load-generator processes and loopback
source addresses; the open-files limit is raised as far as the hard limit allows.
"""

from __future__ import annotations

import statistics
import time
import traceback
from typing import Any

from .. import procs, product, stats
from ..config import Config
from ..loadgen import LoadGen, Target, loopback_addresses
from ..servers import KINDS, Context, Kind

WARMUP_SESSIONS = 20


def run(ctx: Context, cfg: Config) -> dict[str, Any]:
    nofile = procs.raise_nofile_limit(cfg.idle_sessions * 3)
    result: dict[str, Any] = {
        "sessions": cfg.idle_sessions,
        "hold_s": cfg.idle_hold,
        "nofile": nofile,
        "servers": {},
    }
    if cfg.idle_sessions + 200 > nofile:
        result["note"] = (
            f"the open-files limit is {nofile}: a server may fail past that; raise the hard "
            "limit (ulimit -Hn) to measure more sessions"
        )
    for name in cfg.idle_servers:
        kind = KINDS[name]
        print(f"[idle] {name}", flush=True)
        try:
            result["servers"][name] = _server(ctx, cfg, kind, nofile)
            r = result["servers"][name]
            print(
                f"[idle] {name}: {r['kib_per_session']:.1f} KiB/session, "
                f"{r['idle_cpu_percent']:.2f}% of a core, {r['alive']} alive",
                flush=True,
            )
        except Exception as exc:
            result["servers"][name] = {
                "label": kind.label,
                "error": f"{type(exc).__name__}: {exc}"[:600],
            }
            print(f"[idle] {name}: {exc}", flush=True)
            if not isinstance(exc, (procs.ServerError, product.ProductUnavailable)):
                traceback.print_exc()
    return result


def _rss(server: procs.ServerProcess, seconds: float = 1.0) -> int:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(server.rss())
        time.sleep(0.1)
    return int(statistics.median(samples))


def _server(ctx: Context, cfg: Config, kind: Kind, nofile: int) -> dict[str, Any]:
    if kind.name == "product":
        if ctx.product is None:
            raise product.ProductUnavailable("the product server could not be prepared")
        accounts = ctx.product.receiver_accounts(cfg.idle_users)
    else:
        accounts = [("", "")]
    server = kind.make(ctx)
    login = kind.name == "product"  # the baselines hold bare connections
    with procs.running([server]) as group, LoadGen(cfg.idle_workers, nofile=nofile) as lg:
        target = kind.target(server, login=login)
        _open(lg, target, accounts, WARMUP_SESSIONS, cfg)
        lg.call_many([(w, "close_all", {}) for w in range(len(lg))], timeout=60)
        time.sleep(1.0)
        rss_before = _rss(server)
        began = time.monotonic()
        connect = _open(lg, target, accounts, cfg.idle_sessions, cfg)
        connect_s = time.monotonic() - began
        time.sleep(2.0)  # let the login bursts (presence pushes, last_login writes) settle
        rss_after = _rss(server)
        t_start = time.monotonic() + 0.5
        t_end = t_start + cfg.idle_hold
        calls = [(w, "hold", {"t_start": t_start, "t_end": t_end}) for w in range(len(lg))]
        results, cpu = stats.windowed(lg, group, calls, t_start, t_end, timeout=60 + cfg.idle_hold)
        opened = sum(r["opened"] for r in connect)
        return {
            "label": kind.label,
            "opened": opened,
            "failed": sum(r["failed"] for r in connect),
            "skipped": sum(r["skipped"] for r in connect),
            "errors": sorted({e for r in connect for e in r["errors"]})[:5],
            "connect_s": connect_s,
            "sessions_per_s": opened / connect_s if connect_s else 0.0,
            "rss_before": rss_before,
            "rss_after": rss_after,
            "kib_per_session": (rss_after - rss_before) / max(opened, 1) / 1024,
            "idle_cpu_percent": cpu["server_cores"] * 100,
            "hold_cpu": cpu,
            "alive": sum(r["alive"] for r in results),
            "messages_during_hold": sum(r["messages"] for r in results),
            "closed_reasons": sorted({c for r in results for c in r["closed_reasons"]})[:5],
            "retried": sum(r.get("retried", 0) for r in connect),
            "loadgen_cores": sum(r["cpu"]["util"] for r in results),
        }


def _open(
    lg: LoadGen, target: Target, accounts: list[tuple[str, str]], count: int, cfg: Config
) -> list[dict[str, Any]]:
    per = [count // len(lg) + (1 if w < count % len(lg) else 0) for w in range(len(lg))]
    calls = [
        (
            w,
            "connect",
            {
                "target": target,
                "accounts": accounts,
                "count": n,
                "concurrency": 32,
                "local_addrs": loopback_addresses(250, offset=w * 250),
                "deadline": time.monotonic() + cfg.idle_connect_budget,
            },
        )
        for w, n in enumerate(per)
        if n
    ]
    return lg.call_many(calls, timeout=cfg.idle_connect_budget + 120)
