"""Fan-out: 1 sender -> N receivers in one room, 200-byte messages.

For each server and each N:

- **saturation**: the sender keeps ``window`` messages in flight, a message
  leaving the window when the server's copy comes back to the sender's own
  session (every server here sends the room message to the sender too). The
  figure is deliveries per second counted at the receivers over a fixed
  window, the median of ``runs`` windows, with the server's CPU per delivery
  (psutil on the server process) and any deliveries lost;
- **latency**: the sender sends at a fixed moderate rate (20 msg/s) and every
  receiver records send-to-receive time; p50/p99 over all of them.

Receivers are spread over the load generator's processes; the sender has a
process of its own and connects after the receivers (last in every group).
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from .. import procs, product, profile, stats
from ..config import Config
from ..loadgen import LoadGen, loopback_addresses
from ..servers import KINDS, Context, Kind

ROOM = "lobby"
SENDER_WORKER = 0
MAX_DRAIN = 60.0  # seconds a backlogged server gets between measurements


def run(ctx: Context, cfg: Config) -> dict[str, Any]:
    result: dict[str, Any] = {
        "n_values": list(cfg.fanout_n),
        "config": {
            "message_size": cfg.message_size,
            "window": cfg.window,
            "runs": cfg.runs,
            "duration_s": cfg.duration,
            "rate": cfg.rate,
            "rate_duration_s": cfg.rate_duration,
            "workers": cfg.workers,
        },
        "servers": {},
    }
    for name in cfg.fanout_servers:
        kind = KINDS[name]
        print(f"[fanout] {name}", flush=True)
        try:
            result["servers"][name] = fanout_server(ctx, cfg, kind, profile_it=True)
        except Exception as exc:  # one server's failure must not cost the others' figures
            result["servers"][name] = {"label": kind.label, "error": _short(exc)}
            print(f"[fanout] {name}: {_short(exc)}", flush=True)
            if not isinstance(exc, (procs.ServerError, product.ProductUnavailable)):
                traceback.print_exc()
    return result


def fanout_server(
    ctx: Context,
    cfg: Config,
    kind: Kind,
    servers: list[procs.ServerProcess] | None = None,
    extra_pids: list[int] | None = None,
    profile_it: bool = False,
) -> dict[str, Any]:
    """Every N on one server (or on several processes of one, for scale-out)."""
    if kind.name == "product" and ctx.product is None:
        raise product.ProductUnavailable("the product server could not be prepared")
    servers = servers or [kind.make(ctx)]
    out: dict[str, Any] = {"label": kind.label, "points": {}, "processes": len(servers)}
    with (
        procs.running(servers, extra_pids or ()) as group,
        LoadGen(cfg.workers + 1, nofile=8192) as lg,
    ):
        connected = 0
        for n in sorted(cfg.fanout_n):
            if n > connected:
                _connect_receivers(ctx, cfg, kind, group, lg, connected, n - connected)
                connected = n
            _reconnect_sender(ctx, kind, group, lg)
            out["points"][str(n)] = measure_point(cfg, group, lg, n)
            print(f"[fanout] {kind.name} N={n}: {_point_line(out['points'][str(n)])}", flush=True)
        if profile_it and kind.name == "product" and cfg.profile_seconds > 0:
            out["profile"] = _profile(cfg, group, lg, max(cfg.fanout_n))
    return out


def _profile(cfg: Config, group: procs.ServerGroup, lg: LoadGen, n: int) -> dict[str, Any]:
    """py-spy on the server through extra saturation runs (after the measured ones, so the
    sampling never touches a reported figure)."""
    if profile.py_spy_path() is None:
        return {"unavailable": "py-spy is not installed (pip install -r requirements-dev.txt)"}
    out = procs.REPO / "bench" / "results" / "profile-fanout-bench.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = group.servers[0].proc
    assert proc is not None, "the profile runs while the servers are up"
    spy = profile.record(proc.pid, cfg.profile_seconds, out)
    ends = time.monotonic() + cfg.profile_seconds
    while time.monotonic() < ends and spy.poll() is None:
        _saturation_run(cfg, group, lg, n)
    _, err = spy.communicate(timeout=60)
    if spy.returncode or not out.exists():
        return {"error": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
    print(f"[fanout] profile of the product at N={n} in {out}", flush=True)
    return {
        "n": n,
        "seconds": cfg.profile_seconds,
        "summary": profile.summarize(out.read_text(), top=20, focus=profile.FOCUS),
    }


def _accounts(ctx: Context, kind: Kind, count: int) -> list[tuple[str, str]]:
    if kind.name == "product":
        assert ctx.product is not None, "the product kind runs with its users made"
        return ctx.product.receiver_accounts()
    return [(f"r{i}", "") for i in range(max(1, min(count, 100)))]


def _connect_receivers(
    ctx: Context,
    cfg: Config,
    kind: Kind,
    group: procs.ServerGroup,
    lg: LoadGen,
    first: int,
    count: int,
) -> None:
    """Add ``count`` receivers, round-robin over the servers and the receiver processes."""
    accounts = _accounts(ctx, kind, first + count)
    calls = []
    per_worker: dict[tuple[int, int], int] = {}
    for i in range(first, first + count):
        worker = 1 + i % cfg.workers
        server = (i // cfg.workers) % len(group.servers)
        per_worker[(worker, server)] = per_worker.get((worker, server), 0) + 1
    for (worker, server_index), n in sorted(per_worker.items()):
        server = group.servers[server_index]
        calls.append(
            (
                worker,
                "connect",
                {
                    "target": kind.target(server),
                    "accounts": accounts,
                    "count": n,
                    "local_addrs": loopback_addresses(50, offset=worker * 50),
                },
            )
        )
    results = lg.call_many(calls, timeout=120 + count * 0.5)
    failed = sum(r["failed"] for r in results)
    if failed:
        errors = sorted({e for r in results for e in r["errors"]})
        raise RuntimeError(f"{failed} of {count} receivers failed to connect: {errors[:3]}")


def _reconnect_sender(ctx: Context, kind: Kind, group: procs.ServerGroup, lg: LoadGen) -> None:
    lg.call(SENDER_WORKER, "close_all", timeout=30)
    account = (product.SENDER, product.PASSWORD) if kind.name == "product" else ("sender", "")
    result = lg.call(
        SENDER_WORKER,
        "connect",
        timeout=120,
        target=kind.target(group.servers[0]),
        accounts=[account],
        count=1,
        role="sender",
        local_addrs=["127.0.0.1"],
    )
    if not result["opened"]:
        raise RuntimeError(f"the sender could not connect: {result['errors']}")


_run_ids = iter(range(1, 1_000_000))


def _drain(lg: LoadGen) -> float:
    """Let a backlogged server deliver what it still holds before the next measurement."""
    calls = [(w, "drain", {"quiet_s": 0.5, "max_s": MAX_DRAIN}) for w in range(1, len(lg))]
    return max(r["waited_s"] for r in lg.call_many(calls, timeout=MAX_DRAIN + 30))


def measure_point(cfg: Config, group: procs.ServerGroup, lg: LoadGen, n: int) -> dict[str, Any]:
    saturation = []
    drained = 0.0
    for _ in range(cfg.runs):
        drained += _drain(lg)
        saturation.append(_saturation_run(cfg, group, lg, n))
    drained += _drain(lg)
    latency = _rate_run(cfg, group, lg, n)
    drained += _drain(lg)
    capacity = stats.median(r["deliveries_per_s"] for r in saturation)
    # the fixed rate asks more than the server delivers at saturation: latency is queueing
    latency["overloaded"] = bool(capacity) and capacity < 0.9 * cfg.rate * n
    return {
        "drain_s": drained,
        "deliveries_per_s": stats.median(r["deliveries_per_s"] for r in saturation),
        "server_us_per_delivery": stats.median(r["server_us_per_delivery"] for r in saturation),
        "server_cores": stats.median(r["cpu"]["server_cores"] for r in saturation),
        "loss": max(r["loss"] for r in saturation),
        "loadgen_bound": any(r["loadgen"]["bound"] for r in saturation),
        "loadgen_why": "; ".join(sorted({r["loadgen"]["why"] for r in saturation} - {""})),
        "runs": saturation,
        "latency": latency,
    }


def _window(
    cfg: Config, warmup: float, duration: float, workers: int
) -> tuple[float, float, float]:
    # commands must reach every process before the window opens, however busy they are
    begin = time.monotonic() + 0.3 + 0.05 * workers
    return begin, begin + warmup, begin + warmup + duration


def _saturation_run(cfg: Config, group: procs.ServerGroup, lg: LoadGen, n: int) -> dict[str, Any]:
    run = next(_run_ids)
    t_begin, t_start, t_end = _window(cfg, cfg.warmup, cfg.duration, len(lg))
    calls = [
        (
            SENDER_WORKER,
            "send",
            {
                "run": run,
                "room": ROOM,
                "t_begin": t_begin,
                "t_start": t_start,
                "t_end": t_end,
                "size": cfg.message_size,
                "window": cfg.window,
            },
        )
    ]
    calls += [
        (
            w,
            "fanout",
            {
                "run": run,
                "t_start": t_start,
                "t_end": t_end,
                "settle": cfg.settle,
                "record_latency": False,
            },
        )
        for w in range(1, len(lg))
    ]
    results, cpu = stats.windowed(lg, group, calls, t_start, t_end, timeout=60 + cfg.duration)
    sender, receivers = results[0], results[1:]
    delivered = sum(r["in_window"] for r in receivers)
    expected = sender["sent"] * sum(r["receivers"] for r in receivers)
    of_run = sum(r["of_run"] for r in receivers)
    utils = [sender["cpu"]["util"]] + [r["cpu"]["util"] for r in receivers]
    return {
        "deliveries_per_s": delivered / cpu["seconds"],
        "server_us_per_delivery": cpu["server_cpu_s"] / delivered * 1e6 if delivered else None,
        "sent": sender["sent"],
        "sender_errors": sender["error_codes"],
        "sender_stalls": sender["stalls"],
        "loss": 1 - of_run / expected if expected else 0.0,
        "cpu": cpu,
        "loadgen": stats.loadgen_verdict(utils, cpu),
    }


def _rate_run(cfg: Config, group: procs.ServerGroup, lg: LoadGen, n: int) -> dict[str, Any]:
    run = next(_run_ids)
    t_begin, t_start, t_end = _window(cfg, 0.5, cfg.rate_duration, len(lg))
    calls = [
        (
            SENDER_WORKER,
            "send",
            {
                "run": run,
                "room": ROOM,
                "t_begin": t_begin,
                "t_start": t_start,
                "t_end": t_end,
                "size": cfg.message_size,
                "rate": cfg.rate,
            },
        )
    ]
    calls += [
        (
            w,
            "fanout",
            {
                "run": run,
                "t_start": t_start,
                "t_end": t_end,
                "settle": cfg.settle,
                "record_latency": True,
            },
        )
        for w in range(1, len(lg))
    ]
    results, cpu = stats.windowed(lg, group, calls, t_start, t_end, timeout=60 + cfg.rate_duration)
    sender, receivers = results[0], results[1:]
    latencies = stats.merge_sorted(r["latencies"] for r in receivers)
    expected = sender["sent"] * sum(r["receivers"] for r in receivers)
    of_run = sum(r["of_run"] for r in receivers)
    utils = [sender["cpu"]["util"]] + [r["cpu"]["util"] for r in receivers]
    return {
        "rate": cfg.rate,
        **stats.latency_summary(latencies),
        "loss": 1 - of_run / expected if expected else 0.0,
        "sender_errors": sender["error_codes"],
        "server_cores": cpu["server_cores"],
        "loadgen": stats.loadgen_verdict(utils, cpu),
    }


def _point_line(point: dict[str, Any]) -> str:
    lat = point["latency"]
    flag = " (load generator bound)" if point["loadgen_bound"] else ""
    us = point["server_us_per_delivery"]
    problems = [
        f"sender errors {run['sender_errors']}" for run in point["runs"] if run["sender_errors"]
    ] + [f"{run['sender_stalls']} stalls" for run in point["runs"] if run["sender_stalls"]]
    if problems:
        flag += " [" + "; ".join(problems) + "]"
    return (
        f"{point['deliveries_per_s']:,.0f} deliveries/s{flag}, "
        f"{us or 0:.1f} us server CPU/delivery, loss {point['loss']:.2%}; "
        f"at {lat['rate']:g} msg/s p50 {lat['p50_ms']:.1f} ms p99 {lat['p99_ms']:.1f} ms"
    )


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:600]
