"""Handshake + login: how fast sessions open, and whether opening them stalls the others.

Baseline, in this process on one core: RSA-3072 OAEP decrypt, X25519, HKDF,
the whole server side of a handshake, and one Argon2 verification with
Django's default parameters.

Against the product (its real password hashing: ``BENCH_FAST_HASH=0``) and the
bare ``websockets`` server with the same handshake:

1. **idle**: a logged-in session pings at 20/s; round-trip times;
2. **handshakes**: connections opened back to back (several at a time per
   load-generator process) up to the greeting, then closed: handshakes/s and
   time to the greeting; the pinger goes on;
3. **logins** (product only): the same up to ``login_ok`` with a correct
   password: sessions/s, time to ``login_ok``; the pinger goes on;
4. **resumes** (product only, PROTOCOL.md 3.4): the same up to ``login_ok`` with
   ``resume`` and the token of a device remembered by one login with ``remember``
   just before (no password hash: what clients do after a server restart), with as
   many in progress as for handshakes; resumes/s beside logins/s, same server.

The ping round trips during 2 and 3 against 1 show whether RSA and password
hashing run off the event loop. Connections come from many loopback source
addresses so that the per-address handshake limit sees many clients.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from .. import procs, product, stats
from ..config import Config
from ..loadgen import LoadGen, loopback_addresses
from ..servers import KINDS, Context, Kind
from . import crypto

PINGER_WORKER = 0


def run(ctx: Context, cfg: Config) -> dict[str, Any]:
    print("[handshake] raw costs in-process", flush=True)
    result: dict[str, Any] = {
        "raw": crypto.handshake_costs(str(ctx.key_file), cfg.crypto_seconds),
        "argon2": _argon2(cfg),
        "config": {
            "duration_s": cfg.handshake_duration,
            "login_duration_s": cfg.login_duration,
            "concurrency": cfg.handshake_concurrency * cfg.workers,
            "login_concurrency": cfg.login_concurrency * cfg.workers,
            "ping_rate": cfg.ping_rate,
        },
        "servers": {},
    }
    for name in ("product", "ws-sealed"):
        kind = KINDS[name]
        print(f"[handshake] {name}", flush=True)
        try:
            result["servers"][name] = _server(ctx, cfg, kind)
        except Exception as exc:
            result["servers"][name] = {
                "label": kind.label,
                "error": f"{type(exc).__name__}: {exc}"[:600],
            }
            print(f"[handshake] {name}: {exc}", flush=True)
            if not isinstance(exc, (procs.ServerError, product.ProductUnavailable)):
                traceback.print_exc()
    return result


def _argon2(cfg: Config) -> dict[str, Any]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure()
        django.setup()
    return crypto.password_hash_cost(max(cfg.crypto_seconds, 1.0))


def _server(ctx: Context, cfg: Config, kind: Kind) -> dict[str, Any]:
    if kind.name == "product":
        if ctx.product is None:
            raise product.ProductUnavailable("the product server could not be prepared")
        server = kind.make(ctx, fast_hash="0")
        pinger = (product.PINGER, product.PASSWORD)
        churner = [(product.ARGON, product.PASSWORD)]
    else:
        server = kind.make(ctx)
        pinger = ("pinger", "")
        churner = [("churn", "")]
    out: dict[str, Any] = {"label": kind.label}
    with procs.running([server]) as group, LoadGen(cfg.workers + 1) as lg:
        opened = lg.call(
            PINGER_WORKER,
            "connect",
            timeout=120,
            target=kind.target(server),
            accounts=[pinger],
            count=1,
            role="pinger",
        )
        if not opened["opened"]:
            raise RuntimeError(f"the pinger could not log in: {opened['errors']}")
        out["idle"] = _phase(cfg, group, lg, kind, server, churn=None, accounts=churner)
        out["handshakes"] = _phase(
            cfg, group, lg, kind, server, churn="handshake", accounts=churner
        )
        print(f"[handshake] {kind.name} handshakes: {_line(out['handshakes'])}", flush=True)
        if kind.name == "product":
            out["logins"] = _phase(cfg, group, lg, kind, server, churn="login", accounts=churner)
            print(f"[handshake] {kind.name} logins: {_line(out['logins'])}", flush=True)
            out["resumes"] = _resumes(cfg, group, lg, kind, server, churner)
    return out


def _resumes(
    cfg: Config,
    group: procs.ServerGroup,
    lg: LoadGen,
    kind: Kind,
    server: procs.ServerProcess,
    accounts: list[tuple[str, str]],
) -> dict[str, Any]:
    """The resume phase: one login with ``remember`` per account for a token, then churn."""
    try:
        tokens = lg.call(
            PINGER_WORKER,
            "remember",
            timeout=120,
            target=kind.target(server),
            accounts=accounts,
            device_name="bench-churn",
        )["tokens"]
    except Exception as exc:  # a server without PROTOCOL.md 3.4 devices: said, not fatal
        print(f"[handshake] {kind.name} resumes: not measured: {exc}", flush=True)
        return {"error": f"no device token: {exc}"[:600]}
    phase = _phase(
        cfg, group, lg, kind, server, churn="resume", accounts=[(str(u), str(t)) for u, t in tokens]
    )
    print(f"[handshake] {kind.name} resumes: {_line(phase)}", flush=True)
    return phase


def _phase(
    cfg: Config,
    group: procs.ServerGroup,
    lg: LoadGen,
    kind: Kind,
    server: procs.ServerProcess,
    churn: str | None,
    accounts: list[tuple[str, str]],
) -> dict[str, Any]:
    duration = {
        None: cfg.idle_ping,
        "handshake": cfg.handshake_duration,
        "resume": cfg.handshake_duration,
    }.get(churn, cfg.login_duration)
    t_start = time.monotonic() + 0.5
    t_end = t_start + duration
    calls: list[tuple[int, str, dict[str, Any]]] = [
        (PINGER_WORKER, "ping", {"t_start": t_start, "t_end": t_end, "rate": cfg.ping_rate})
    ]
    if churn is not None:
        for worker in range(1, len(lg)):
            calls.append(
                (
                    worker,
                    "churn",
                    {
                        "target": kind.target(server),
                        "accounts": accounts,
                        "t_start": t_start,
                        "t_end": t_end,
                        "concurrency": cfg.login_concurrency
                        if churn == "login"
                        else cfg.handshake_concurrency,
                        "login": churn in ("login", "resume"),
                        "resume": churn == "resume",
                        "local_addrs": loopback_addresses(200, offset=worker * 200),
                    },
                )
            )
    results, cpu = stats.windowed(lg, group, calls, t_start, t_end, timeout=90 + duration)
    ping = results[0]
    phase: dict[str, Any] = {
        "ping": stats.latency_summary(ping["rtts"]),
        "ping_failures": ping["failures"],
        "cpu": cpu,
    }
    if churn is not None:
        churners = results[1:]
        times = stats.merge_sorted(r["times"] for r in churners)
        phase.update(
            {
                "completed": len(times),
                "per_s": len(times) / cpu["seconds"],
                "time": stats.latency_summary(times),
                "failed": sum(r["failed"] for r in churners),
                "errors": sorted({e for r in churners for e in r["errors"]})[:5],
                "loadgen": stats.loadgen_verdict([r["cpu"]["util"] for r in churners], cpu),
            }
        )
    return phase


def _line(phase: dict[str, Any]) -> str:
    return (
        f"{phase['per_s']:.1f}/s, p50 {phase['time']['p50_ms']:.1f} ms, "
        f"p99 {phase['time']['p99_ms']:.1f} ms, failed {phase['failed']}; "
        f"ping p50 {phase['ping']['p50_ms']:.1f} ms p99 {phase['ping']['p99_ms']:.1f} ms"
    )
