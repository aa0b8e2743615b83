"""The sizes of a bench run: full (``make bench``) or quick (``--quick``), then flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

# storm last: the thousands of accounts it creates would lengthen every later ``users``
SCENARIOS = ("fanout", "handshake", "idle", "scaleout", "files", "e2e", "e2e_files", "storm")
FANOUT_SERVERS = ("product", "ws-plain", "ws-sealed", "channels", "channels-nohop", "raw-asgi")
IDLE_SERVERS = ("product", "raw-asgi", "ws-plain")
MiB = 1024 * 1024


@dataclass
class Config:
    quick: bool = False
    scenarios: tuple[str, ...] = SCENARIOS
    runs: int = 3  # saturation runs per point; the median is reported
    workers: int = 2  # receiver processes of the load generator (the sender has its own)
    # fan-out
    fanout_n: tuple[int, ...] = (50, 200, 500)
    fanout_servers: tuple[str, ...] = FANOUT_SERVERS
    message_size: int = 200
    warmup: float = 0.5
    duration: float = 2.0
    window: int = 16  # messages in flight at saturation (sent, own echo not yet back)
    rate: float = 20.0  # messages/s for the latency measurement
    rate_duration: float = 5.0
    profile_seconds: float = 8.0  # py-spy on the product after its fan-out runs (0: off)
    settle: float = 1.0  # after a window: late deliveries count as delivered, not lost
    # handshake + login
    handshake_duration: float = 5.0
    login_duration: float = 8.0  # logins cost an Argon2 hash each: a longer window
    login_concurrency: int = 2  # per process; a few concurrent Argon2 hashes fill the cores
    handshake_concurrency: int = 8  # connections in progress per load-generator process
    idle_ping: float = 3.0
    ping_rate: float = 20.0
    crypto_seconds: float = 2.0  # per in-process primitive measurement
    # idle sessions
    idle_sessions: int = 10_000
    idle_servers: tuple[str, ...] = IDLE_SERVERS
    idle_hold: float = 45.0  # at least one keepalive cycle (chatsite/keepalive.py: 40 + 2 s)
    idle_workers: int = 4
    idle_users: int = 10
    idle_connect_budget: float = 360.0  # seconds; a slow server is measured with what opened
    # scale-out
    scaleout_processes: tuple[int, ...] = (1, 2, 4)
    scaleout_n: int = 200
    scaleout_layers: tuple[str, ...] = ("redis", "pubsub")
    scaleout_runs: int = 1  # saturation runs per scale-out point (9 points: time-bound)
    redis_url: str = "redis://127.0.0.1:6379/14"
    # login storm: distinct users log in and stay (accounts with the bench's cheap hash)
    storm_sessions: int = 10_000
    storm_block: int = 1_000  # open rate per block of this many sessions, in login order
    storm_concurrency: int = 64  # logins in flight, over all load-generator processes
    storm_workers: int = 4
    storm_processes: tuple[int, ...] = (1, 2)  # 2 and more: on Redis
    # the storm again with resumes (PROTOCOL.md 3.4 remembered devices), over these processes
    storm_resume_processes: tuple[int, ...] = (1,)
    storm_hold: float = 45.0  # seconds kept after the last login (presence_interval is 20 s)
    storm_budget: float = 600.0  # seconds; no login starts later, the rest count as skipped
    # files
    file_size: int = 1024 * MiB
    chunk_size: int = 65536
    crypto_chunks: int = 4096  # 256 MiB of 64 KiB chunks for the raw seal/open cost
    # end-to-end files beside plain ones (docs/protocol.md 4.12): rounds of one of each
    e2e_file_rounds: int = 3
    # end-to-end encryption (the sender's costs use crypto_seconds per measurement)
    e2e_n: tuple[int, ...] = (50, 200)  # receivers of the private room beside the public one
    e2e_devices: tuple[int, ...] = (10, 100)  # member devices of a room's first message
    e2e_rotation_members: int = 100  # members (one device each) of the rotating room
    # where things go
    database_url: str | None = None
    daphne_args: tuple[str, ...] = ()  # e.g. ("--ping-interval", "60"): every daphne server
    out_dir: str = "docs"
    results: str = "bench/results/latest.json"
    extra: dict = field(default_factory=dict)


QUICK = {
    "runs": 1,
    "fanout_n": (10, 40),
    "warmup": 0.3,
    "duration": 1.5,
    "rate_duration": 2.0,
    "settle": 0.8,
    "profile_seconds": 3.0,
    "handshake_duration": 2.0,
    "login_duration": 4.0,
    "handshake_concurrency": 4,
    "idle_ping": 1.5,
    "crypto_seconds": 0.3,
    "idle_sessions": 200,
    "idle_hold": 4.0,
    "idle_workers": 2,
    "idle_users": 4,
    "idle_connect_budget": 60.0,
    "scaleout_processes": (1, 2),
    "scaleout_n": 20,
    "storm_sessions": 1_000,
    "storm_block": 100,
    "storm_concurrency": 32,
    "storm_workers": 2,
    "storm_hold": 6.0,
    "storm_budget": 120.0,
    "file_size": 16 * MiB,
    "crypto_chunks": 256,
    "e2e_n": (10, 40),
    "out_dir": "bench/results/quick",
    "results": "bench/results/quick.json",
}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of the chat server beside their baselines; writes "
        "docs/benchmarks.md and its plot. The full run takes about 40 minutes and "
        "wants a quiet machine; --quick is a smoke run of about 5 minutes.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, short windows, 1 run")
    p.add_argument("--only", type=_names, help=f"scenarios to run, of: {','.join(SCENARIOS)}")
    p.add_argument("--servers", type=_names, help="fan-out servers (default: all)")
    p.add_argument("--n", type=_ints, dest="fanout_n", help="fan-out receivers, e.g. 50,200,500")
    p.add_argument("--runs", type=int, help="saturation runs per point (median reported)")
    p.add_argument("--workers", type=int, help="receiver processes of the load generator")
    p.add_argument("--duration", type=float, help="seconds per saturation window")
    p.add_argument("--idle-sessions", type=int, help="sessions in the idle scenario")
    p.add_argument("--idle-hold", type=float, help="seconds the idle sessions are watched")
    p.add_argument(
        "--idle-servers",
        type=_names,
        help=f"idle-scenario servers (default: {','.join(IDLE_SERVERS)})",
    )
    p.add_argument("--processes", type=_ints, dest="scaleout_processes", help="e.g. 1,2,4")
    p.add_argument("--scaleout-n", type=int, help="receivers in the scale-out scenario")
    p.add_argument("--storm-sessions", type=int, help="distinct users in the login storm")
    p.add_argument(
        "--storm-processes", type=_ints, help="server processes of the login storms, e.g. 1,2"
    )
    p.add_argument(
        "--storm-resume",
        type=_ints,
        dest="storm_resume_processes",
        help="process counts of the storm run again with resumes instead of password logins "
        "(default 1; an empty string: none)",
    )
    p.add_argument("--file-size", type=int, help="bytes in the file scenarios")
    p.add_argument(
        "--file-rounds",
        type=int,
        dest="e2e_file_rounds",
        help="rounds of one plain and one end-to-end transfer in e2e_files (default 3)",
    )
    p.add_argument("--redis-url", help="Redis for scale-out (default redis://127.0.0.1:6379/14)")
    p.add_argument(
        "--database-url",
        help="the product's DATABASE_URL, or 'sqlite' for SQLite in the temp data dir "
        "(default: a fresh PostgreSQL database on 127.0.0.1:5432 if reachable, else SQLite)",
    )
    p.add_argument(
        "--profile-seconds",
        type=float,
        help="seconds of py-spy sampling of the product after its fan-out runs (0: none)",
    )
    p.add_argument(
        "--daphne-args",
        type=str.split,
        help="extra options for every daphne-served server (ours and the Channels and raw "
        "ASGI baselines alike), e.g. '--ping-interval 60'; the report lists them",
    )
    p.add_argument("--out", dest="out_dir", help="where benchmarks.md and the plot go")
    p.add_argument("--results", help="where the raw results (JSON) go")
    p.add_argument(
        "--report-only",
        metavar="RESULTS_JSON",
        help="only rewrite the report from a results file of an earlier run",
    )
    return p


def from_args(args: argparse.Namespace) -> Config:
    cfg = Config()
    if args.quick:
        cfg.quick = True
        for key, value in QUICK.items():
            setattr(cfg, key, value)
    names = {f.name for f in fields(Config)}
    for key, value in vars(args).items():
        if value is None or key in ("quick", "report_only"):
            continue
        if key == "only":
            unknown = set(value) - set(SCENARIOS)
            if unknown:
                raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
            cfg.scenarios = value
        elif key == "servers":
            cfg.fanout_servers = value
        elif key == "idle_servers":
            unknown = set(value) - set(IDLE_SERVERS)
            if unknown:
                raise SystemExit(
                    f"unknown idle server(s) {sorted(unknown)}; choose from {IDLE_SERVERS}"
                )
            cfg.idle_servers = value
        elif key == "daphne_args":
            cfg.daphne_args = tuple(value)
        elif key in names:
            setattr(cfg, key, value)
    return cfg
