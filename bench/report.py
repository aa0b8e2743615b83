"""The report: ``docs/benchmarks.md`` and ``docs/benchmarks.png`` from a run's results.

Everything printed here comes from the results dict of one run (saved as JSON
under ``bench/results/``); ``python -m bench --report-only FILE`` rewrites the
report from such a file. Ratios are always "ours / baseline" of the figure in
the same row, so above 1 means ours is higher (better for rates, worse for
CPU, memory and latency).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

PACKAGES = (
    "Django",
    "channels",
    "daphne",
    "Twisted",
    "autobahn",
    "channels-redis",
    "redis",
    "websockets",
    "cryptography",
    "argon2-cffi",
    "psycopg",
    "psutil",
    "matplotlib",
    "py-spy",
)
WARN = "⚠"


# --- machine -------------------------------------------------------------------------------


def machine_info(cfg: Any, argv: list[str], nofile: int) -> dict[str, Any]:
    """What the figures were measured on, and with what."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "redis_server": _redis_version(cfg.redis_url),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "nofile": nofile,
        "git": _git_revision(),
        "command": " ".join(["python -m bench", *argv]),
        "quick": cfg.quick,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _redis_version(url: str) -> str:
    try:
        import redis

        return str(redis.Redis.from_url(url, socket_connect_timeout=2).info()["redis_version"])
    except Exception:
        return "not reachable"


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except Exception:
        return "unknown (no commit yet)"


# --- formatting ----------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ratio(ours: Any, base: Any) -> str:
    if not ours or not base or any(isinstance(v, float) and math.isnan(v) for v in (ours, base)):
        return "-"
    return f"{ours / base:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _status(ok: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[ok]


# --- sections ------------------------------------------------------------------------------


def _fanout_points(result: dict[str, Any], name: str) -> dict[str, Any]:
    server = result.get("servers", {}).get(name, {})
    return server.get("points", {})


def _fanout(result: dict[str, Any], targets: list[list[str]]) -> list[str]:
    if "error" in result and "servers" not in result:
        return ["## Fan-out", "", f"Not measured: {result['error']}", ""]
    ns = [str(n) for n in result["n_values"]]
    servers = result["servers"]
    ours = _fanout_points(result, "product")
    cfg = result["config"]
    out = [
        "## Fan-out: 1 sender → N receivers in one room",
        "",
        f"{cfg['message_size']}-byte messages. **Saturation**: the sender keeps {cfg['window']} "
        "messages in flight (a message leaves the window when the server's copy reaches the "
        "sender's own session); deliveries/s counted at the receivers over "
        f"{cfg['duration_s']:g} s, median of {cfg['runs']} runs. **Latency**: "
        f"{cfg['rate']:g} messages/s for {cfg['rate_duration_s']:g} s, send-to-receive time at "
        "every receiver. Server CPU is the server process's user+system time (psutil) over the "
        "same window. The ratio columns are ours / that row.",
        "",
        "### Deliveries per second at saturation",
        "",
    ]
    header = ["server"] + [h for n in ns for h in (f"N={n}", "ours / this")]
    rows = []
    for name, server in servers.items():
        if "error" in server:
            rows.append(
                [_label(server, name)]
                + [f"error: {server['error'][:80]}"]
                + [""] * (2 * len(ns) - 1)
            )
            continue
        row = [_label(server, name)]
        for n in ns:
            p = server["points"].get(n, {})
            flag = f" {WARN}" if p.get("loadgen_bound") else ""
            loss = p.get("loss") or 0
            lost = f" (lost {loss:.1%})" if loss > 0.001 else ""
            errors = {k for r in p.get("runs", []) for k in r.get("sender_errors", {})}
            if errors:
                lost += f" (errors: {', '.join(sorted(errors))})"
            row.append(_num(p.get("deliveries_per_s")) + flag + lost)
            row.append(_ratio(ours.get(n, {}).get("deliveries_per_s"), p.get("deliveries_per_s")))
        rows.append(row)
    out += _table(header, rows)
    out += [
        f"{WARN}: the load generator may have been the limit (see the load-generator table "
        "below); the server's true capacity is then higher than the figure.",
        "",
        "### Server CPU per delivery (µs)",
        "",
    ]
    rows = []
    for name, server in servers.items():
        if "error" in server:
            continue
        row = [_label(server, name)]
        for n in ns:
            p = server["points"].get(n, {})
            row.append(_num(p.get("server_us_per_delivery"), 1))
            row.append(
                _ratio(
                    ours.get(n, {}).get("server_us_per_delivery"), p.get("server_us_per_delivery")
                )
            )
        rows.append(row)
    out += _table(header, rows)
    out += [f"### Latency at {cfg['rate']:g} messages/s: p50 / p99 (ms)", ""]
    lat_header = ["server"] + [f"N={n}" for n in ns]
    rows = []
    for name, server in servers.items():
        if "error" in server:
            continue
        row = [_label(server, name)]
        for n in ns:
            lat = server["points"].get(n, {}).get("latency", {})
            over = " (overloaded)" if lat.get("overloaded") else ""
            row.append(f"{_num(lat.get('p50_ms'), 1)} / {_num(lat.get('p99_ms'), 1)}{over}")
        rows.append(row)
    out += _table(lat_header, rows)
    out += [
        "(overloaded): the fixed rate times N exceeds what this server delivers at "
        "saturation, so these latencies are mostly time spent queueing.",
        "",
        "### Load generator and machine during the saturation runs",
        "",
        "Cores used by the load generator's processes (sum), by the server, and the whole "
        "machine's utilisation, median run.",
        "",
    ]
    rows = []
    for name, server in servers.items():
        if "error" in server:
            continue
        row = [_label(server, name)]
        for n in ns:
            p = server["points"].get(n, {})
            runs = p.get("runs") or [{}]
            run = sorted(runs, key=lambda r: r.get("deliveries_per_s", 0))[len(runs) // 2]
            lg = run.get("loadgen", {})
            cpu = run.get("cpu", {})
            flag = f" {WARN} {lg.get('why')}" if lg.get("bound") else ""
            row.append(
                f"load gen {_num(lg.get('total_cores'), 2)}, "
                f"server {_num(cpu.get('server_cores'), 2)}, "
                f"machine {_num((cpu.get('machine_util') or 0) * 100)}%{flag}"
            )
        rows.append(row)
    out += _table(lat_header, rows)
    prof = servers.get("product", {}).get("profile")
    if prof:
        out += [
            "### Where our server's time goes in fan-out",
            "",
        ]
        if "summary" in prof:
            out += [
                f"py-spy samples of the server process over {prof['seconds']:g} s of extra "
                f'saturation runs at N={prof["n"]} (after the measured runs). "Own" is time '
                'in the function itself; "including callees" keeps the application\'s and '
                "its frameworks' functions. Samples cover every thread, waiting included "
                "(`select`, a thread pool's `_worker`, `psycopg` `Connection.wait` are waits "
                "for the network, for work and for the database). `python -m bench.profile "
                "--what logins|sessions` profiles logins and session setup the same way.",
                "",
                "```",
                prof["summary"],
                "```",
                "",
            ]
        else:
            out += [f"Not profiled: {prof.get('unavailable') or prof.get('error')}", ""]
    # targets of issue 6
    plain = _fanout_points(result, "channels")
    sealed = _fanout_points(result, "ws-sealed")
    for n in ns:
        o = ours.get(n, {}).get("deliveries_per_s")
        c = plain.get(n, {}).get("deliveries_per_s")
        s = sealed.get(n, {}).get("deliveries_per_s")
        targets.append(
            [
                f"fan-out N={n}: ≥ 3x the plain Channels broadcast",
                _ratio(o, c),
                _status(None if not (o and c) else o >= 3 * c),
            ]
        )
        bound = sealed.get(n, {}).get("loadgen_bound")
        targets.append(
            [
                f"fan-out N={n}: ≥ 40% of bare websockets with the same encryption",
                _ratio(o, s) + (f" {WARN} baseline load-generator bound" if bound else ""),
                _status(None if not (o and s) else o >= 0.4 * s),
            ]
        )
    return out


def _label(server: dict[str, Any], name: str) -> str:
    return f"{server.get('label', name)} (`{name}`)"


def _handshake(result: dict[str, Any], targets: list[list[str]]) -> list[str]:
    if "raw" not in result:
        return ["## Handshake + login", "", f"Not measured: {result.get('error')}", ""]
    raw = result["raw"]
    argon = result.get("argon2", {})
    out = [
        "## Handshake + login",
        "",
        "### Raw costs, in-process, one core",
        "",
        'Rates by wall time and by CPU time ("on one core", which a busy machine disturbs '
        "less); the server-side handshake is `ServerHandshake()` + `hello()` + "
        "`receive_key()` (the client's part untimed).",
        "",
    ]
    rows = []
    names = {
        "rsa_oaep_decrypt": "RSA-3072 OAEP decrypt",
        "x25519": "X25519 (new key + exchange)",
        "hkdf": "HKDF-SHA256 key schedule",
        "server_handshake": "whole server handshake",
    }
    for key, label in names.items():
        r = raw.get(key, {})
        rows.append(
            [label, _num(r.get("per_s")), _num(r.get("cpu_per_s")), _num(r.get("cpu_us_each"), 1)]
        )
    if argon:
        params = argon.get("params", {})
        rows.append(
            [
                f"Argon2 verify (Django defaults: t={params.get('time_cost')}, "
                f"m={params.get('memory_cost_kib')} KiB, p={params.get('parallelism')})",
                _num(argon.get("per_s"), 1),
                _num(argon.get("cpu_per_s"), 1),
                _num(argon.get("cpu_us_each"), 0),
            ]
        )
    out += _table(["operation", "per s (wall)", "per s (one core)", "CPU µs each"], rows)
    raw_rate = raw.get("server_handshake", {}).get("cpu_per_s")
    cfg = result.get("config", {})
    out += [
        "### Sessions opened against the servers",
        "",
        f"{cfg.get('concurrency')} connections ({cfg.get('login_concurrency')} for logins) "
        f"in progress at a time for {cfg.get('duration_s')} s ({cfg.get('login_duration_s')} s "
        "for logins), each timed from TCP connect "
        "to the greeting "
        "(handshake) or to `login_ok` (login, with a correct password and the real Argon2 "
        "cost; resume, with a remembered device's token and no password hash, as many in "
        "progress and as long as handshakes), then closed. Meanwhile another logged-in "
        f"session pings at {cfg.get('ping_rate')}/s.",
        "",
    ]
    rows = []
    ping_ratios = {}
    for name, server in result.get("servers", {}).items():
        if "error" in server:
            rows.append(
                [_label(server, name), f"error: {server['error'][:100]}", "", "", "", "", ""]
            )
            continue
        idle = server.get("idle", {}).get("ping", {})
        rows.append(
            [
                _label(server, name),
                "idle",
                "-",
                "-",
                "-",
                "-",
                f"{_num(idle.get('p50_ms'), 2)} / {_num(idle.get('p99_ms'), 2)}",
            ]
        )
        for phase in ("handshakes", "logins", "resumes"):
            p = server.get(phase)
            if not p:
                continue
            if "error" in p:
                rows.append([_label(server, name), phase, f"error: {p['error'][:100]}"] + [""] * 4)
                continue
            ping = p.get("ping", {})
            ratio = _ratio(p.get("per_s"), raw_rate) if phase == "handshakes" else "-"
            flag = f" {WARN}" if p.get("loadgen", {}).get("bound") else ""
            failed = f" ({p.get('failed')} failed)" if p.get("failed") else ""
            rows.append(
                [
                    _label(server, name),
                    phase,
                    _num(p.get("per_s"), 1) + flag + failed,
                    ratio,
                    _num(p.get("time", {}).get("p50_ms"), 1),
                    _num(p.get("time", {}).get("p99_ms"), 1),
                    f"{_num(ping.get('p50_ms'), 2)} / {_num(ping.get('p99_ms'), 2)}",
                ]
            )
            if idle.get("p50_ms"):
                ping_ratios[(name, phase)] = (
                    ping.get("p50_ms"),
                    idle.get("p50_ms"),
                    ping.get("p99_ms"),
                    idle.get("p99_ms"),
                )
    out += _table(
        [
            "server",
            "phase",
            "per s",
            "ours / raw handshake (one core)",
            "p50 ms",
            "p99 ms",
            "ping p50 / p99 ms",
        ],
        rows,
    )
    ours = result.get("servers", {}).get("product", {})
    logins, resumes = ours.get("logins", {}).get("per_s"), ours.get("resumes", {}).get("per_s")
    if logins and resumes:
        out += [
            f"Resumes per second against logins per second, same server: "
            f"{_num(resumes, 1)} against {_num(logins, 1)} ({resumes / logins:.1f}x).",
            "",
        ]
    hs = ours.get("handshakes", {}).get("per_s")
    targets.append(
        [
            "handshakes/s ≥ 70% of the raw handshake crypto rate on one core",
            _ratio(hs, raw_rate),
            _status(None if not (hs and raw_rate) else hs >= 0.7 * raw_rate),
        ]
    )
    for phase in ("handshakes", "logins"):
        values = ping_ratios.get(("product", phase))
        if values and values[0] and values[1]:
            targets.append(
                [
                    f"ping round trip during {phase} ≤ 3x idle (p50; p99 beside)",
                    f"{values[0] / values[1]:.2f}x (p99 {_ratio(values[2], values[3])})",
                    _status(values[0] <= 3 * values[1]),
                ]
            )
        else:
            targets.append([f"ping round trip during {phase} ≤ 3x idle", "-", _status(None)])
    return out


def _idle(result: dict[str, Any], targets: list[list[str]]) -> list[str]:
    if "servers" not in result:
        return ["## Idle sessions", "", f"Not measured: {result.get('error')}", ""]
    servers = result["servers"]
    base = servers.get("raw-asgi", {})
    out = [
        "## Idle sessions",
        "",
        f"{result['sessions']:,} sessions opened (ours: handshake and login; the baselines: bare "
        "WebSocket connections) and held quiet. Memory per session = server RSS growth / "
        f"sessions; idle CPU = the server's CPU over {result['hold_s']:g} s of holding them. "
        f"Open-files limit: {result.get('nofile')}. Sessions that fail to open are tried "
        "again (retried); none is started after the connect budget (skipped).",
        "",
    ]
    if result.get("note"):
        out += [f"Note: {result['note']}", ""]
    rows = []
    for name, s in servers.items():
        if "error" in s:
            rows.append([_label(s, name), f"error: {s['error'][:100]}", "", "", "", "", ""])
            continue
        extras = [f"{s[key]} {key}" for key in ("failed", "skipped", "retried") if s.get(key)]
        failed = f" ({', '.join(extras)})" if extras else ""
        rows.append(
            [
                _label(s, name),
                _num(s.get("opened")) + failed,
                _num(s.get("sessions_per_s"), 0),
                _num(s.get("kib_per_session"), 1),
                _ratio(servers.get("product", {}).get("kib_per_session"), s.get("kib_per_session")),
                _num(s.get("idle_cpu_percent"), 2),
                _num(s.get("alive")),
            ]
        )
    out += _table(
        [
            "server",
            "sessions",
            "opened per s",
            "KiB per session",
            "ours / this",
            "idle CPU % of a core",
            "alive after hold",
        ],
        rows,
    )
    ours = servers.get("product", {})
    o, b = ours.get("kib_per_session"), base.get("kib_per_session")
    targets.append(
        [
            "idle memory per session ≤ 1.5x a bare daphne WebSocket connection's",
            _ratio(o, b),
            _status(None if not (o and b) else o <= 1.5 * b),
        ]
    )
    cpu = ours.get("idle_cpu_percent")
    bare_cpu = base.get("idle_cpu_percent")
    targets.append(
        [
            f"CPU to keep {result['sessions']:,} idle sessions ≤ bare daphne's own for as many "
            "connections",
            f"{_ratio(cpu, bare_cpu)} ({_num(cpu, 2)}% against {_num(bare_cpu, 2)}%)"
            if cpu is not None and bare_cpu is not None
            else "-",
            _status(
                None if cpu is None or bare_cpu is None or "error" in ours else cpu <= bare_cpu
            ),
        ]
    )
    targets.append(
        [
            f"CPU to keep {result['sessions']:,} idle sessions < 5% of a core",
            f"{_num(cpu, 2)}%" if cpu is not None else "-",
            _status(None if cpu is None or "error" in ours else cpu < 5),
        ]
    )
    return out


def _scaleout(result: dict[str, Any]) -> list[str]:
    if "configs" not in result:
        reason = result.get("unavailable") or result.get("error")
        return ["## Scale-out over Redis", "", f"Not measured: {reason}", ""]
    procs_ = [str(p) for p in result["processes"]]
    out = [
        "## Scale-out over Redis",
        "",
        f"The fan-out scenario with N={result['n']} receivers spread over P daphne processes "
        f"sharing Redis ({result['redis_url']}); the sender on the first process. Server CPU "
        "includes the local Redis server's. Cells: deliveries/s at saturation (median of "
        f"{result.get('runs', 1)} run(s)); µs of server CPU per delivery; p50 / p99 ms at the "
        "fixed rate.",
        "",
    ]
    rows = []
    for key, entry in result["configs"].items():
        row = [f"{entry['label']} (`{key}`)"]
        for p in procs_:
            point = entry["points"].get(p, {})
            if "error" in point:
                row.append(f"error: {point['error'][:80]}")
                continue
            lat = point.get("latency", {})
            flag = f" {WARN}" if point.get("loadgen_bound") else ""
            row.append(
                f"{_num(point.get('deliveries_per_s'))}{flag}; "
                f"{_num(point.get('server_us_per_delivery'), 1)} µs; "
                f"{_num(lat.get('p50_ms'), 1)} / {_num(lat.get('p99_ms'), 1)} ms"
            )
        rows.append(row)
    out += _table(["configuration"] + [f"P={p}" for p in procs_], rows)
    return out


def _files(result: dict[str, Any], targets: list[list[str]]) -> list[str]:
    if "raw" not in result:
        return ["## Files", "", f"Not measured: {result.get('error')}", ""]
    raw = result["raw"]
    size = result["size"]
    out = [
        "## Files",
        "",
        f"A {size / 2**20:,.0f} MiB file in {result['chunk_size'] // 1024} KiB chunks, window "
        "of 16, from one client to another through the server; throughput from the first "
        "chunk to `file_done`; the server's peak RSS growth sampled every 20 ms.",
        "",
    ]
    relay = result.get("relay", {})
    ours = result.get("product", {})
    rows = [
        [
            "AES-256-CBC + HMAC-SHA256 seal of a chunk record (raw, one core)",
            _num(raw.get("seal_mb_s"), 1),
            "-",
            "-",
            "-",
        ],
        [
            "AES-256-CBC + HMAC-SHA256 open of a chunk record (raw, one core)",
            _num(raw.get("open_mb_s"), 1),
            "-",
            "-",
            "-",
        ],
    ]
    for label, entry in (("bare websockets relay, no encryption", relay), ("our server", ours)):
        if "unavailable" in entry:
            rows.append([label, entry["unavailable"], "-", "-", "-"])
        elif "error" in entry:
            rows.append([label, f"error: {entry['error'][:120]}", "-", "-", "-"])
        else:
            sender = entry.get("sender_cpu_s", 0) / entry["seconds"] if entry.get("seconds") else 0
            rows.append(
                [
                    label,
                    _num(entry.get("mb_s"), 1),
                    _ratio(ours.get("mb_s"), entry.get("mb_s")),
                    _num((entry.get("peak_rss_growth") or 0) / 2**20, 1),
                    f"{sender:.0%}" + (f" {WARN}" if sender >= 0.9 else ""),
                ]
            )
    out += _table(
        ["what", "MB/s", "ours / this", "server peak growth MiB", "sending client's CPU"],
        rows,
    )
    if any(WARN in row[-1] for row in rows):
        out += [
            f"{WARN}: the sending client used most of a core (it seals every chunk): the "
            "transfer may be bounded by the load generator rather than the server.",
            "",
        ]
    if ours.get("server_cpu_s") and ours.get("seconds"):
        out += [
            f"Our server used {ours['server_cpu_s'] / ours['seconds']:.0%} of a core during "
            "the transfer.",
            "",
        ]
    o, r = ours.get("mb_s"), relay.get("mb_s")
    targets.append(
        [
            "file throughput ≥ half the bare relay's",
            _ratio(o, r)
            if "unavailable" not in ours
            else "not available until file transfer lands",
            _status(None if not (o and r) else o >= 0.5 * r),
        ]
    )
    growth = ours.get("peak_rss_growth")
    targets.append(
        [
            "server memory growth over the transfer < 64 MiB",
            f"{growth / 2**20:.1f} MiB" if growth is not None else "-",
            _status(None if growth is None else growth < 64 * 2**20),
        ]
    )
    return out


def _e2e_files(result: dict[str, Any], targets: list[list[str]]) -> list[str]:
    """4.12's files beside 3.3's (``bench/scenarios/e2e_files.py``): throughput, memory, and
    the chunk cipher's cost beside the record layer's."""
    out = ["## End-to-end files", ""]
    size = result.get("size", 0)
    size_text = f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 2**20:,.0f} MiB"
    raw = result.get("raw", {})
    if "gcm" in raw:
        gcm, record = raw["gcm"], raw["record"]
        out += [
            "The chunk cipher of 4.12 (AES-256-GCM, 65,520-byte pieces: "
            "`chatproto.e2e_files.ChunkCipher`) beside the record layer's seal and open of "
            "a 64 KiB chunk record (AES-256-CBC + HMAC-SHA256), which every chunk costs each "
            "client already; raw, in one process on one core.",
            "",
            *_table(
                ["what", "MB/s", "µs per chunk"],
                [
                    [what, _num(costs[f"{op}_mb_s"], 1), _num(costs[f"{op}_us_per_chunk"], 1)]
                    for what, costs, op in (
                        ("ChunkCipher encrypt (sender)", gcm, "encrypt"),
                        ("ChunkCipher decrypt (receiver)", gcm, "decrypt"),
                        ("record seal of a chunk", record, "seal"),
                        ("record open of a chunk", record, "open"),
                    )
                ],
            ),
            f"Encrypt + decrypt: {_num(raw['gcm_ns_per_byte'], 2)} ns per byte, "
            f"{raw['gcm_vs_record']:.2f}x the record layer's seal + open "
            f"({_num(raw['record_ns_per_byte'], 2)} ns per byte): a chunk's crypto costs the "
            f"sender {_more(gcm['encrypt_us_per_chunk'], record['seal_us_per_chunk'])} and "
            f"the receiver {_more(gcm['decrypt_us_per_chunk'], record['open_us_per_chunk'])} "
            "more than today's record alone.",
            "",
        ]
    if "error" in result:
        out += [f"Transfers not measured: {result['error']}", ""]
    plain, e2e = result.get("plain", {}), result.get("e2e", {})
    rows = []
    for label, entry in (
        ("today's transfer (3.3: name, hash and bytes seen by the server)", plain),
        ("end to end (4.12: Megolm offer, AES-GCM chunks)", e2e),
    ):
        if "mb_s" not in entry:
            reason = entry.get("unavailable") or result.get("error") or "not measured"
            rows.append([label, str(reason)[:160], "-", "-", "-", "-", "-"])
            continue
        rows.append(
            [
                label,
                f"{_num(entry['mb_s'], 1)} ("
                + ", ".join(_num(v, 1) for v in entry["mb_s_each"])
                + ")",
                _ratio(entry["mb_s"], plain.get("mb_s")),
                _num(entry["peak_rss_growth"] / 2**20, 1),
                _num(entry["server_cpu_us_per_mib"]),
                _num(entry["sender_cpu_us_per_mib"]),
                _num(entry["receiver_cpu_us_per_mib"]),
            ]
        )
    if rows and ("runs" in result or "error" not in result):
        out += [
            f"A {size_text} file from one client to another through our server, in "
            f"{result.get('rounds', '-')} round(s) of one transfer of each kind (the order "
            "alternating), between the same two sessions; throughput from the first chunk "
            "to `file_done` (median, each transfer in brackets), the file's own bytes; the "
            "server's peak RSS growth over a transfer (the worst); each process's CPU per MiB "
            "of the file over the transfer (median), which other work on the machine moves "
            "less than the throughput. The e2e sender encrypts every piece, the e2e "
            "receiver decrypts the offer and every chunk before its SHA-256.",
            "",
            *_table(
                [
                    "transfer",
                    "MB/s",
                    "vs today's",
                    "server peak growth MiB",
                    "server CPU µs/MiB",
                    "sender CPU µs/MiB",
                    "receiver CPU µs/MiB",
                ],
                rows,
            ),
        ]
        if result.get("ratios"):
            out += [
                "The target's ratio is the median of the rounds' ratios (e2e / plain, the two "
                "transfers of a round back to back): "
                + ", ".join(f"{r:.2f}" for r in result["ratios"])
                + ".",
                "",
            ]
        if "mb_s" in plain and "mb_s" in e2e:
            cpu = [
                f"{who} {_ratio(e2e[key], plain[key])}"
                for who, key in (
                    ("sender", "sender_cpu_us_per_mib"),
                    ("receiver", "receiver_cpu_us_per_mib"),
                    ("server", "server_cpu_us_per_mib"),
                )
            ]
            out += [f"CPU per MiB of the file, e2e / today's: {', '.join(cpu)}.", ""]
        if result.get("whole_peak_rss_growth") is not None:
            out += [
                "The server's peak RSS growth over all the transfers, from before the first: "
                f"{result['whole_peak_rss_growth'] / 2**20:.1f} MiB.",
                "",
            ]
    ratio = result.get("ratio")
    targets.append(
        [
            "end-to-end file throughput ≥ 0.80x today's transfer",
            f"{ratio:.2f}x" if ratio else "-",
            _status(None if not ratio else ratio >= 0.80),
        ]
    )
    growth = e2e.get("peak_rss_growth")
    targets.append(
        [
            f"server memory growth over a {size_text} end-to-end transfer < 64 MiB",
            f"{growth / 2**20:.1f} MiB" if growth is not None else "-",
            _status(None if growth is None else growth < 64 * 2**20),
        ]
    )
    return out


def _more(extra: float, base: float) -> str:
    """``extra`` µs on top of ``base`` µs, as a percentage of ``base``."""
    return f"{extra / base:.0%}" if base else "-"


def _storm_label(key: str) -> str:
    """``"1"`` -> "1 process", ``"2-resume"`` -> "2 processes on Redis, resumes"."""
    count, _, how = key.partition("-")
    label = "1 process" if count == "1" else f"{count} processes on Redis"
    return f"{label}, resumes" if how == "resume" else label


def _storm(result: dict[str, Any], targets: list[list[str]]) -> list[str]:
    if "runs" not in result:
        return ["## Login storm", "", f"Not measured: {result.get('error')}", ""]
    n, block = result["sessions"], result["block"]
    runs = result["runs"]
    out = [
        "## Login storm",
        "",
        f"{n:,} distinct users log in (handshake, login, `users` snapshot) and stay connected: "
        "to one process, then to processes sharing Redis (sessions round-robin). "
        f"{result['concurrency']} logins in flight over {result['workers']} load-generator "
        "processes; every session reads all it receives and counts its `presence` messages "
        "and the usernames in them. The accounts use the **bench's cheap password hash**, "
        f"{result['hasher']}, so that Argon2 at Django's cost (see the handshake section) does "
        f"not hide the rest. Open rate per block of {block:,} sessions in the order their "
        "logins completed: the block's size / the time since the previous block's last login "
        "(the storm's start for the first); p50: the block's median time from TCP connect to "
        "`login_ok`. After the last login the sessions stay at least two presence intervals. "
        "Server CPU: user+system time of the server processes (and the local Redis server's "
        f"with Redis), not the database's; no login starts after {result['budget_s']:g} s "
        f"(skipped). The accounts were created beforehand ({result.get('accounts_s', 0):g} s, "
        "not timed in the storm); the first block includes the server's warm-up (its first "
        "database connections, its presence view). The target's ratio is taken in steady "
        "state: the first block timed from its first `login_ok` (the first round of logins "
        "takes one login time whatever the rate), the last block being the last "
        f"{block:,} logins completed before the last login started (after that, the logins "
        "in flight finish on a less and less busy server); the table's first block includes "
        "that fill and its last the drain, which flatters their ratio.",
        "",
    ]
    keys = list(runs)
    labels = {k: _storm_label(k) for k in keys}
    measured = {k: r for k, r in runs.items() if "blocks" in r}
    count = max((len(r["blocks"]) for r in measured.values()), default=0)
    rows = []
    for i in range(count):
        first = i * block + 1
        row = [f"{first:,}-{first + block - 1:,}"]
        for k in keys:
            blocks = measured.get(k, {}).get("blocks", [])
            if i < len(blocks):
                b = blocks[i]
                part = f" ({b['sessions']:,} only)" if b["sessions"] != block else ""
                row.append(f"{_num(b['per_s'], 1)} / {_num(b['p50_ms'])}{part}")
            else:
                row.append("-")
        rows.append(row)
    out += _table(
        ["sessions (login order)"] + [f"{labels[k]}: opened per s / p50 ms" for k in keys], rows
    )
    what = [
        "sessions opened",
        "total time (s)",
        "opened per s (whole storm)",
        f"last {block:,} / first {block:,} (open rate, steady state)",
        f"open rate first {block:,} / last {block:,} in steady state (per s)",
        f"last {block:,} / first {block:,} of the table above (fill and drain included)",
        "time to `login_ok` p50 / p99 (ms)",
        "`users` snapshots per session: min / max",
        "`presence` messages per session: mean / max",
        "usernames in them per session: mean / max",
        "`presence_interval` (s) / hold after the last login (s)",
        "server CPU during the storm (cores) / ms per session",
        "machine utilisation during the storm",
        "server CPU while holding (% of a core)",
        "server memory growth (MiB)",
        "sessions alive after the hold",
        "load generator (cores)",
    ]
    rows = [[w] for w in what]
    for k in keys:
        r = runs[k]
        if "blocks" not in r:
            reason = r.get("unavailable") or f"error: {str(r.get('error'))[:100]}"
            for i, row in enumerate(rows):
                row.append(reason if i == 0 else "")
            continue
        extras = [f"{r[key]} {key}" for key in ("failed", "skipped", "retried") if r.get(key)]
        lg = r.get("loadgen", {})
        values = [
            f"{r['opened']:,} of {r['sessions']:,}" + (f" ({', '.join(extras)})" if extras else ""),
            _num(r["storm_s"], 1),
            _num(r["per_s"], 1),
            _num(r["ratio"], 2),
            f"{_num(r.get('steady', {}).get('first_per_s'), 1)} / "
            f"{_num(r.get('steady', {}).get('last_per_s'), 1)}"
            + (
                f" (logins {r['steady']['last_from']:,}-{r['steady']['last_from'] + block - 1:,})"
                if r.get("steady", {}).get("last_from")
                else ""
            ),
            _num(r.get("blocks_ratio"), 2),
            f"{_num(r['open_time']['p50_ms'])} / {_num(r['open_time']['p99_ms'])}",
            f"{r['users_snapshots']['min']} / {r['users_snapshots']['max']}",
            f"{_num(r['presence']['mean'], 1)} / {r['presence']['max']}",
            f"{_num(r['presence_names']['mean'], 0)} / {_num(r['presence_names']['max'])}",
            f"{r['presence_interval']} / {_num(r['hold_s'])}",
            f"{_num(r['storm_cpu']['server_cores'], 2)} / {_num(r['server_ms_per_session'], 1)}",
            f"{_num(r['storm_cpu']['machine_util'] * 100)}%",
            _num(r["hold_cpu"]["server_cores"] * 100, 1),
            _num(r["rss_growth"] / 2**20, 0),
            f"{r['alive']:,}",
            _num(lg.get("total_cores"), 2)
            + (f" {WARN} {lg.get('why')}" if lg.get("bound") else ""),
        ]
        for row, value in zip(rows, values, strict=True):
            row.append(value)
    out += _table(["what"] + [labels[k] for k in keys], rows)
    if any(k.endswith("-resume") for k in keys):
        out += [
            "The columns that say *resumes* are the same storm with every session logging in "
            "by `resume` with a remembered device's token (PROTOCOL.md 3.4: no password hash), "
            "as clients do after a server restart; the devices were made beforehand "
            f"({result.get('devices_s', 0):g} s, not timed).",
            "",
        ]
    for k in keys:
        r = runs[k]
        if k.endswith("-resume"):
            continue  # the targets are the password storm's; the resume columns inform
        ok = None
        measured_text = "-"
        if "blocks" in r:
            ratio = r["ratio"]
            if not math.isnan(ratio):
                ok = ratio >= 0.8 and r["opened"] == r["sessions"]
                measured_text = f"{ratio:.2f}, {r['opened']:,} of {r['sessions']:,} opened"
        targets.append(
            [
                f"login storm of {n:,}, {labels[k]}: open rate of the last {block:,} ≥ 80% of "
                f"the first {block:,}; all {n:,} opened",
                measured_text,
                _status(ok),
            ]
        )
    return out


def _e2e(result: dict[str, Any]) -> list[str]:
    """Section 4's costs (``bench/scenarios/e2e.py``): fan-out, the sender, rotation."""
    out = ["## End-to-end encryption", ""]
    if "error" in result:
        return [*out, f"Not measured: {result['error']}", ""]
    fan = result.get("fanout", {})
    if "points" in fan:
        sizes = fan.get("sizes", {})
        out += [
            "The same N receivers in the public `lobby` (`send` with a "
            f"{sizes.get('text_chars', '-')}-character `text`) and in a private room (`send` "
            f"with a {sizes.get('e2e_bytes', '-')}-byte `e2e` object: the Megolm ciphertext "
            "of that text), saturated in turn. Cells: deliveries/s (median of "
            f"{fan['config']['runs']} run(s)); µs of server CPU per delivery. Ratios: "
            f"private / public. {WARN}: the load generator was the limit.",
            "",
        ]
        rows = []
        for n, point in fan["points"].items():
            cells = []
            for room in ("public", "e2e"):
                p = point[room]
                flag = f" {WARN}" if p.get("loadgen_bound") else ""
                cells.append(
                    f"{_num(p['deliveries_per_s'])}{flag}; "
                    f"{_num(p['server_us_per_delivery'], 1)} µs"
                )
            rows.append(
                [
                    n,
                    *cells,
                    _ratio(point["e2e"]["deliveries_per_s"], point["public"]["deliveries_per_s"]),
                    _ratio(
                        point["e2e"]["server_us_per_delivery"],
                        point["public"]["server_us_per_delivery"],
                    ),
                ]
            )
        out += _table(
            ["N", "public room", "private room (e2e)", "ratio deliveries/s", "ratio CPU"], rows
        )
    else:
        out += [f"Fan-out not measured: {fan.get('error')}", ""]
    sender = result.get("sender", {})
    if "steady" in sender:
        plain = sender["plain"]
        out += [
            "The sender's CPU per message (this process, one core), the room key already "
            "shared: `E2EEngine.encrypt_for` and sealing its `send` in the record layer, "
            "beside sealing a `send` with the same text without E2E.",
            "",
        ]
        rows = [
            [
                "plain `send` (no E2E)",
                _num(plain["us"], 1),
                "-",
                "-",
                "1.00x",
                _num(plain["record_bytes"]),
            ]
        ]
        for m, p in sender["steady"].items():
            rows.append(
                [
                    f"E2E, {m} other device(s)",
                    _num(p["us"], 1),
                    _num(p["encrypt_for_us"], 1),
                    _num(p["megolm_us"], 1),
                    _ratio(p["us"], plain["us"]),
                    _num(p["record_bytes"]),
                ]
            )
        out += _table(
            ["message", "µs", "of which encrypt_for", "Megolm alone", "vs plain", "record bytes"],
            rows,
        )
    else:
        out += [f"Sender costs not measured: {sender.get('error')}", ""]
    rotation = result.get("rotation", {})
    rows = []
    for m, f in sender.get("first", {}).items():
        rows.append([f"first message to a room, {m} other device(s)", *_e2e_traffic(f)])
    if "to_device_messages" in rotation:
        rows.append(
            [
                f"after one of {rotation['members']} members left (rotation)",
                *_e2e_traffic(rotation),
            ]
        )
    if rows:
        out += [
            "What a message that shares a room key makes: the requests the engine sent (the "
            "key directory answered in process), the `to_device` room keys (Olm, one per "
            "device), their sealed bytes, and the sender's CPU from `encrypt_for` to the "
            "sealed records.",
            "",
            *_table(
                ["case", "requests", "to_device messages", "bytes (records)", "sender CPU ms"],
                rows,
            ),
        ]
    if "error" in rotation:
        out += [f"Rotation not measured: {rotation['error']}", ""]
    server = rotation.get("server", {})
    if "ms" in server:
        out += [
            f"On the server, the rotation's {server['messages']} `to_device` messages (one "
            f"request from the sender's device, to {server['target_devices']} offline devices "
            f"with keys) are accepted, stored and queued in {_num(server['ms'], 1)} ms from "
            f"request to `ok` (median of {server['repeats']}), "
            f"{_num(server['server_cpu_ms'], 1)} ms of server CPU each.",
            "",
        ]
    elif "error" in server:
        out += [f"Rotation on the server not measured: {server['error']}", ""]
    return out


def _e2e_traffic(entry: dict[str, Any]) -> list[str]:
    return [
        ", ".join(entry["requests"]),
        _num(entry["to_device_messages"]),
        f"{_num(entry['to_device_record_bytes'])} ({entry['to_device_requests']})",
        _num(entry.get("cpu_ms", entry.get("sender_cpu_ms")), 1),
    ]


# --- the document --------------------------------------------------------------------------


def render(results: dict[str, Any], plot_name: str | None) -> str:
    meta = results["meta"]
    targets: list[list[str]] = []
    sections: list[str] = []
    if "fanout" in results:
        sections += _fanout(results["fanout"], targets)
    if "handshake" in results:
        sections += _handshake(results["handshake"], targets)
    if "idle" in results:
        sections += _idle(results["idle"], targets)
    if "scaleout" in results:
        sections += _scaleout(results["scaleout"])
    if "files" in results:
        sections += _files(results["files"], targets)
    if "e2e" in results:
        sections += _e2e(results["e2e"])
    if "e2e_files" in results:
        sections += _e2e_files(results["e2e_files"], targets)
    if "storm" in results:
        sections += _storm(results["storm"], targets)
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`{meta['command']}`) on {meta['date']} in "
        f"{meta.get('duration_s', 0) / 60:.1f} minutes. **Do not edit by hand**: run "
        "`make bench` again (about 40 minutes, on a quiet machine, with Redis running), or "
        "`python -m bench --report-only bench/results/latest.json` to re-render.",
        "",
    ]
    if meta.get("quick"):
        lines += [
            f"> {WARN} **Quick smoke run** (`--quick`): small sizes and short windows on a "
            "possibly busy machine. These figures only show that every scenario runs; "
            "they are not the benchmark.",
            "",
        ]
    lines += [
        "## Machine",
        "",
        *_table(
            ["what", "value"],
            [
                [
                    "CPU",
                    f"{meta['cpu']}, {meta['cores_logical']} logical cores "
                    f"({meta['cores_physical']} physical)",
                ],
                ["RAM", f"{meta['ram_gib']} GiB"],
                ["OS", meta["os"]],
                ["Python", meta["python"]],
                ["packages", packages],
                ["Redis server", meta["redis_server"]],
                ["product database", str(meta.get("database") or "-")],
                ["open-files limit", str(meta["nofile"])],
                ["load average at start", " ".join(str(x) for x in meta["load_average_at_start"])],
                ["revision", meta["git"]],
            ],
        ),
        "## How to run",
        "",
        "```",
        "make bench                # everything (Redis on 127.0.0.1:6379 for scale-out)",
        "python -m bench --quick   # a smoke run of about 5 minutes",
        "python -m bench --only fanout --n 50,200 --servers product,channels",
        "python -m bench --report-only bench/results/latest.json",
        "```",
        "",
        f"This report: `{meta['command']}`. Every server runs in its own process on a free "
        "loopback port, started by the bench; the load generator runs in separate processes "
        "(`bench/loadgen.py`) and measures its own CPU.",
        "",
        "## Targets (issues 5, 6 and 12; docs/protocol.md 4.12)",
        "",
        *_table(["target", "measured", "status"], targets),
    ]
    if plot_name:
        lines += [f"![deliveries per second and latency against N]({plot_name})", ""]
    lines += sections
    lines += [
        "Files of several GiB between two desktop clients (time, memory of each process, "
        "SHA-256): [`large-file.md`](large-file.md), written by `make bench-large-file`.",
        "",
    ]
    lines += _engineering_notes()
    notes = list(meta.get("notes") or [])
    for name in ("fanout", "handshake", "idle", "scaleout", "files", "e2e", "e2e_files", "storm"):
        entry = results.get(name, {})
        if isinstance(entry, dict) and "error" in entry:
            notes.append(f"{name}: {entry['error']}")
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


NOTES = Path(__file__).with_name("NOTES.md")


def _engineering_notes() -> list[str]:
    """``bench/NOTES.md``, written by hand: what the profiles showed and what was changed.

    Its figures come from the development runs it names, not from this run.
    """
    if not NOTES.exists():
        return []
    return [NOTES.read_text(encoding="utf-8").strip(), ""]


def plot(results: dict[str, Any], path: Path) -> bool:
    """Deliveries/s against N per server, latency percentiles, and scale-out; False if no data."""
    fan = results.get("fanout", {})
    if "servers" not in fan:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -r requirements-dev.txt)")
        return False
    scale = results.get("scaleout", {}).get("configs")
    panels = 3 if scale else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8))
    ns = fan["n_values"]
    for name, server in fan["servers"].items():
        points = server.get("points")
        if not points:
            continue
        xs = [n for n in ns if str(n) in points]
        axes[0].plot(xs, [points[str(n)]["deliveries_per_s"] for n in xs], marker="o", label=name)
        p50 = [points[str(n)]["latency"]["p50_ms"] for n in xs]
        p99 = [points[str(n)]["latency"]["p99_ms"] for n in xs]
        (line,) = axes[1].plot(xs, p50, marker="o", label=f"{name} p50")
        axes[1].plot(
            xs, p99, marker="x", linestyle="--", color=line.get_color(), label=f"{name} p99"
        )
    axes[0].set(title="Fan-out at saturation", xlabel="receivers N", ylabel="deliveries / s")
    axes[0].set_yscale("log")
    axes[1].set(
        title=f"Latency at {fan['config']['rate']:g} msg/s", xlabel="receivers N", ylabel="ms"
    )
    axes[1].set_yscale("log")
    if scale:
        for key, entry in scale.items():
            xs = [int(p) for p, v in entry["points"].items() if "deliveries_per_s" in v]
            ys = [entry["points"][str(p)]["deliveries_per_s"] for p in xs]
            if xs:
                axes[2].plot(xs, ys, marker="o", label=key)
        axes[2].set(
            title=f"Scale-out on Redis, N={results['scaleout']['n']}",
            xlabel="server processes",
            ylabel="deliveries / s",
        )
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if results["meta"].get("quick"):
        fig.suptitle("quick smoke run: not the benchmark", color="red")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write benchmarks.md (and benchmarks.png when there is fan-out data) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "benchmarks.png"
    has_plot = plot(results, png)
    md = out_dir / "benchmarks.md"
    md.write_text(render(results, png.name if has_plot else None))
    return [md, png] if has_plot else [md]


if __name__ == "__main__":  # python -m bench.report RESULTS_JSON [OUT_DIR]
    import json

    data = json.loads(Path(sys.argv[1]).read_text())
    for written in write(data, Path(sys.argv[2] if len(sys.argv) > 2 else "docs")):
        print(f"wrote {written}")
