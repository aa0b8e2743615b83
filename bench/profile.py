"""Where the product's time goes: py-spy on the server during a fan-out or a login burst.

``python -m bench.profile [--what fanout|logins|sessions|idle] [--n 50] [--seconds 15]`` starts the
product as the bench does (temp data dir, fresh database), loads it, and samples
the server process with py-spy (``pip install py-spy``; it reads the process
from outside, nothing in the server changes). It prints the functions with the
most samples, by own time and including callees, and keeps the raw collapsed
stacks (for flame-graph tools) under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import procs, product
from .config import Config
from .loadgen import LoadGen, loopback_addresses
from .servers import KINDS, Context

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


FOCUS = (
    "chat/",
    "chatproto/",
    "accounts/",
    "channels/",
    "channels_redis/",
    "django/",
    "asgiref/",
    "psycopg/",
    "redis/",
    "argon2/",
    "cryptography/",
)


def summarize(raw: str, top: int = 25, focus: tuple[str, ...] = ()) -> str:
    """Own and inclusive sample counts per function from py-spy's collapsed stacks; with
    ``focus``, the inclusive list keeps only functions whose file path contains one of them
    (the application and its frameworks, not the event loop's plumbing)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_name(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples (was the server busy? is py-spy allowed to read it?)"
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines += ["", "including callees:"]
    ranked = [
        (name, n)
        for name, n in inclusive.most_common()
        if not focus or any(f"({part}" in name or f"/{part}" in name for part in focus)
    ]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in ranked[:top]]
    return "\n".join(lines)


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.replace(str(procs.REPO) + "/", "")
    return f"{match['func']} ({path})"


def py_spy_path() -> str | None:
    """py-spy from the PATH or beside this Python, or None when it is not installed."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else None


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen:
    """Start sampling ``pid`` for ``seconds`` into ``out`` (collapsed stacks); non-blocking
    sampling, so the server is never paused. Raises FileNotFoundError without py-spy."""
    py_spy = py_spy_path()
    if py_spy is None:
        raise FileNotFoundError("py-spy is not installed: pip install py-spy")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument(
        "--what",
        choices=("fanout", "logins", "sessions", "idle"),
        default="fanout",
        help="fanout: saturation with N receivers; logins: session churn with the real "
        "Argon2 cost; sessions: the same churn with the bench's cheap hash (setup cost only); "
        "idle: N logged-in sessions held quiet, sampled after daphne's first keepalive pings",
    )
    parser.add_argument("--n", type=int, default=50, help="receivers (fan-out)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = parser.parse_args()
    if py_spy_path() is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    from .scenarios import fanout  # here: fanout itself uses this module

    tmp = Path(tempfile.mkdtemp(prefix="chat-bench-profile-"))
    (tmp / "logs").mkdir()
    from chatproto import crypto_utils

    key_file = tmp / "server_key.pem"
    crypto_utils.load_private_key(key_file)
    cfg = dataclasses.replace(Config(), fanout_n=(args.n,), duration=3.0, runs=1)
    ctx = Context(tmp=tmp, key_file=key_file, redis_url=cfg.redis_url, log_dir=tmp / "logs")
    prod = product.Product(tmp, key_file, tmp / "logs")
    out = procs.REPO / "bench" / "results" / f"profile-{args.what}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        prod.prepare(receivers=args.n)
        ctx.product = prod
        kind = KINDS["product"]
        server = kind.make(ctx, fast_hash="0" if args.what == "logins" else "1")
        with procs.running([server]) as group, LoadGen(cfg.workers + 1) as lg:
            if args.what == "fanout":
                fanout._connect_receivers(ctx, cfg, kind, group, lg, 0, args.n)
                fanout._reconnect_sender(ctx, kind, group, lg)
            if args.what == "idle":
                _open_idle(kind, server, lg, prod, args.n)
            spy = record(server.proc.pid, args.seconds, out, args.rate)
            ends = time.monotonic() + args.seconds
            while time.monotonic() < ends and spy.poll() is None:
                if args.what == "fanout":
                    fanout._saturation_run(cfg, group, lg, args.n)
                elif args.what == "idle":
                    time.sleep(0.5)
                else:
                    account = product.ARGON if args.what == "logins" else product.receiver_name(0)
                    seconds = min(5.0, ends - time.monotonic())
                    _login_burst(kind, server, lg, cfg, seconds, account)
            _, err = spy.communicate(timeout=60)
            if spy.returncode:
                raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    finally:
        prod.cleanup()
    print(summarize(out.read_text(), focus=FOCUS))
    print(f"\ncollapsed stacks: {out}")
    return 0


def _open_idle(kind, server, lg: LoadGen, prod: product.Product, count: int) -> None:
    """``count`` sessions over the receiver accounts, then past daphne's first keepalive
    pings (20 s after each session's last message), so that the sample sees them."""
    accounts = prod.receiver_accounts()
    per = [count // len(lg) + (w < count % len(lg)) for w in range(len(lg))]
    lg.call_many(
        [
            (
                w,
                "connect",
                {
                    "target": kind.target(server),
                    "accounts": accounts,
                    "count": n,
                    "concurrency": 16,
                    "local_addrs": loopback_addresses(200, offset=w * 200),
                },
            )
            for w, n in enumerate(per)
            if n
        ],
        timeout=900,
    )
    time.sleep(25.0)


def _login_burst(kind, server, lg: LoadGen, cfg: Config, seconds: float, account: str) -> None:
    t_start = time.monotonic() + 0.3
    calls = [
        (
            w,
            "churn",
            {
                "target": kind.target(server),
                "accounts": [(account, product.PASSWORD)],
                "t_start": t_start,
                "t_end": t_start + max(seconds, 1.0),
                "concurrency": cfg.handshake_concurrency,
                "login": True,
                "local_addrs": loopback_addresses(200, offset=w * 200),
            },
        )
        for w in range(len(lg))
    ]
    lg.call_many(calls, timeout=120 + seconds)


if __name__ == "__main__":
    raise SystemExit(main())
