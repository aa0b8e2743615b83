"""Per-operation costs for the scaling model (``docs/scaling.md``): what one message, one
login and one resume cost the server processes, Redis and PostgreSQL.

    python -m bench.costs                      # 2 processes on a private Redis, PostgreSQL
    python -m bench.costs --messages 400 --logins 200 --processes 2

Starts a private ``redis-server`` on a free loopback port (so that other work on the
machine's Redis does not count), a fresh PostgreSQL database (as ``python -m bench``
does; it needs the local PostgreSQL) and P product processes sharing them (the core
channel layer; ``--layer pubsub`` for the other). One receiver session is logged in on
every process (so each message crosses Redis to every process, as in an organisation
whose rooms have members everywhere) and one sender on the first. Then, each phase
measured as deltas of Redis's ``INFO commandstats``, of PostgreSQL's
``pg_stat_database`` row for the bench database, and of the CPU of the servers and of
Redis, minus the idle rate of the same counters measured first:

1. **idle**: ``--idle`` seconds with the sessions quiet (heartbeats, presence ticks);
2. **messages**: ``--messages`` room messages at ``--rate`` per second (200 bytes);
   then as many protocol ``ping`` requests (a client's keepalive after silence);
3. **logins**: ``--logins`` new sessions of distinct users (the bench's cheap Argon2, as
   in the login storm; Django's default Argon2 costs ~380 ms of CPU more per login, the
   handshake scenario's raw table), spread over the processes, then kept open, with the
   presence ticks that announce them;
4. **resumes**: as many sessions by ``resume`` with remembered devices (PROTOCOL.md 3.4;
   skipped where the product does not serve it).

Prints a table and writes ``bench/results/costs.json``. Figures are per operation
(per message: one ``send``, delivered to P+1 sessions on P processes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from chatproto import crypto_utils

from . import procs
from .loadgen import LoadGen, loopback_addresses
from .product import Product, ProductUnavailable, receiver_name
from .servers import KINDS, Context

ROOM = "lobby"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Counters:
    """Redis commands (by name), PostgreSQL row/transaction counts and CPU, as one sample."""

    def __init__(self, redis_url: str, redis_pid: int, database: str | None, group: Any) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.redis_proc = psutil.Process(redis_pid)
        self.database = database
        self.group = group

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {"when": time.monotonic()}
        for name, stats in self.redis.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            if command not in ("info",):
                out[f"redis.{command}"] = float(stats["calls"])
        out["redis.total"] = sum(v for k, v in out.items() if k.startswith("redis."))
        out["mem.redis"] = float(self.redis.info("memory")["used_memory"])
        times = self.redis_proc.cpu_times()
        out["cpu.redis"] = times.user + times.system
        out["cpu.servers"] = self.group.cpu_seconds()
        out.update(self._postgres())
        return out

    def _postgres(self) -> dict[str, float]:
        if not self.database:
            return {}
        import psycopg

        time.sleep(1.2)  # PostgreSQL flushes a backend's statistics at most once a second
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, tup_fetched "
                "FROM pg_stat_database WHERE datname = %s",
                (self.database,),
            ).fetchone()
        names = ("pg.transactions", "pg.inserted", "pg.updated", "pg.deleted", "pg.fetched")
        return dict(zip(names, map(float, row or (0,) * 5), strict=True))


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b)}


def _per_op(delta: dict[str, float], idle_rate: dict[str, float], ops: int) -> dict[str, float]:
    """Per operation, with the idle rate over the same time taken off."""
    wall = delta["when"]
    out = {}
    for key, value in delta.items():
        if key == "when":
            continue
        value -= idle_rate.get(key, 0.0) * wall
        out[key] = value / max(ops, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.costs", description=__doc__.split("\n")[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--rate", type=float, default=50.0, help="messages per second")
    p.add_argument("--logins", type=int, default=100)
    p.add_argument("--idle", type=float, default=10.0, help="seconds of the idle phase")
    p.add_argument("--layer", choices=("core", "pubsub"), default="core")
    p.add_argument("--results", default="bench/results/costs.json")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="chat-costs-"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    key_file = tmp / "server_key.pem"
    crypto_utils.load_private_key(key_file)
    port = _free_port()
    redis_proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    redis_url = f"redis://127.0.0.1:{port}/0"
    ctx = Context(tmp=tmp, key_file=key_file, redis_url=redis_url, log_dir=log_dir)
    product = Product(tmp, key_file, log_dir)
    results: dict[str, Any] = {"args": vars(args), "database": product.database}
    try:
        product.prepare(receivers=max(args.processes, 2))
        ctx.product = product
        accounts = product.storm_accounts(args.logins)
        try:
            tokens: list[tuple[str, str]] | None = product.storm_devices(accounts)
        except ProductUnavailable as exc:
            tokens = None
            results["resumes"] = f"not measured: {exc}"[:300]
        kind = KINDS["product"]
        servers = [
            kind.make(ctx, redis_url=redis_url, prefix="costs", tag=f"-costs-{i}", layer=args.layer)
            for i in range(args.processes)
        ]
        with procs.running(servers) as group, LoadGen(1, nofile=8192) as lg:
            targets = [kind.target(s) for s in servers]
            counters = Counters(redis_url, redis_proc.pid, product._own_database, group)
            lg.call(
                0,
                "connect",
                timeout=120,
                target=targets[0],
                role="sender",
                accounts=[(receiver_name(0), _password())],
                count=1,
            )
            for target in targets:
                lg.call(
                    0,
                    "connect",
                    timeout=120,
                    target=target,
                    accounts=[(receiver_name(1), _password())],
                    count=1,
                )
            time.sleep(3.0)
            a = counters.sample()
            time.sleep(args.idle)
            b = counters.sample()
            idle = _delta(a, b)
            idle_rate = {k: v / idle["when"] for k, v in idle.items() if k != "when"}
            results["idle_per_s"] = idle_rate
            # messages
            a = counters.sample()
            now = time.monotonic()
            sent = lg.call(
                0,
                "send",
                timeout=120 + args.messages / args.rate,
                run=1,
                room=ROOM,
                t_begin=now + 0.2,
                t_start=now + 0.2,
                t_end=now + 0.2 + args.messages / args.rate,
                size=200,
                rate=args.rate,
            )
            time.sleep(2.0)
            b = counters.sample()
            results["per_message"] = _per_op(_delta(a, b), idle_rate, sent["sent"])
            results["messages_sent"] = sent["sent"]
            # application-level pings (what a client sends after silence: a request and
            # its sealed answer), against which daphne's WebSocket pings are weighed
            a = counters.sample()
            now = time.monotonic()
            pinged = lg.call(
                0,
                "ping",
                timeout=120 + args.messages / args.rate,
                t_start=now + 0.2,
                t_end=now + 0.2 + args.messages / args.rate,
                rate=args.rate,
            )
            b = counters.sample()
            results["per_app_ping"] = _per_op(_delta(a, b), idle_rate, len(pinged["rtts"]))
            # logins, then resumes: new sessions kept open, over every process
            for phase, creds, resume in (("login", accounts, False), ("resume", tokens, True)):
                if creds is None:
                    continue
                a = counters.sample()
                opened = 0
                for i, target in enumerate(targets):
                    part = creds[i :: len(targets)]
                    r = lg.call(
                        0,
                        "connect",
                        timeout=600,
                        target=target,
                        accounts=part,
                        count=len(part),
                        concurrency=8,
                        resume=resume,
                        local_addrs=loopback_addresses(50),
                    )
                    opened += r["opened"]
                time.sleep(4.0)  # the presence ticks that announce them (interval 1 s)
                b = counters.sample()
                results[f"per_{phase}"] = _per_op(_delta(a, b), idle_rate, opened)
                results[f"{phase}s_opened"] = opened
                lg.call(0, "close_all", timeout=120)
                lg.call(
                    0,
                    "connect",
                    timeout=120,
                    target=targets[0],
                    role="sender",
                    accounts=[(receiver_name(0), _password())],
                    count=1,
                )
                time.sleep(4.0)
    finally:
        product.cleanup()
        redis_proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    out = procs.REPO / args.results
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    _print(results)
    print(f"raw results: {out}")
    return 0


def _password() -> str:
    from .product import PASSWORD

    return PASSWORD


def _print(results: dict[str, Any]) -> None:
    rows = [("idle, per second (all processes)", results.get("idle_per_s", {}))]
    rows += [
        (f"per {k.replace('_', ' ')}", results[f"per_{k}"])
        for k in ("message", "app_ping", "login", "resume")
        if f"per_{k}" in results
    ]
    keys = [
        "mem.redis",
        "cpu.servers",
        "cpu.redis",
        "redis.total",
        "pg.transactions",
        "pg.inserted",
        "pg.updated",
        "pg.deleted",
    ]
    print("| what | " + " | ".join(keys) + " | top Redis commands |")
    print("|" + " --- |" * (len(keys) + 2))
    for label, r in rows:
        cells = [
            f"{r.get(k, 0) * 1e3:.2f} ms" if k.startswith("cpu.") else f"{r.get(k, 0):.2f}"
            for k in keys
        ]
        top = sorted(
            (
                (v, k[6:])
                for k, v in r.items()
                if k.startswith("redis.") and k != "redis.total" and v > 0.05
            ),
            reverse=True,
        )
        cells.append(", ".join(f"{name} {v:.2f}" for v, name in top[:6]))
        print(f"| {label} | " + " | ".join(cells) + " |")
    if isinstance(results.get("resumes"), str):
        print(f"resumes: {results['resumes']}")


if __name__ == "__main__":
    raise SystemExit(main())
