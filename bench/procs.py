"""Server processes under test: start on a free loopback port, watch CPU and memory, stop.

Every server runs in its own subprocess (its own session, so a stray child
cannot outlive the bench) and is measured from outside with psutil, so the
figures include whatever the server framework does in threads of its own.
Only processes this module started are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 90.0  # seconds: daphne + Django + a migrated database on a busy machine
STOP_TIMEOUT = 10.0


class ServerError(RuntimeError):
    """A server under test failed to start or died; the message quotes its log."""


def free_port() -> int:
    """A TCP port that was free a moment ago on the loopback interface."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_nofile_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (up to the hard limit).

    Children inherit it, so call this before starting servers and load
    generators. Returns the limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_for_port(port: int, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll until something accepts on ``port``; False if ``proc`` died or time ran out."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((HOST, port)) == 0:
                return True
        time.sleep(0.1)
    return False


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python: the repository importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONASYNCIODEBUG", None)  # a benchmark of debug mode measures nothing useful
    if extra:
        env.update(extra)
    return env


@dataclass
class CpuSample:
    """A snapshot of CPU seconds: the servers' processes and the whole machine."""

    when: float
    server: float
    machine_busy: float
    machine_total: float


class ServerProcess:
    """One server under test, listening on ``port`` on the loopback interface."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.env = python_env(env)
        self.log_path = log_dir / f"{name}-{port}.log"
        self.proc: subprocess.Popen | None = None
        self._ps: psutil.Process | None = None

    @property
    def url_base(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_for_port(self.port, time.monotonic() + START_TIMEOUT, self.proc):
            self.stop()
            raise ServerError(f"{self.name} did not start listening: {self.log_tail()}")
        self._ps = psutil.Process(self.proc.pid)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise ServerError(f"{self.name} exited: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process so far (all its threads)."""
        assert self._ps is not None
        times = self._ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        assert self._ps is not None
        return self._ps.memory_info().rss

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; only the process we started."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)


class ServerGroup:
    """Several processes measured as one server (scale-out), plus helper processes."""

    def __init__(self, servers: Sequence[ServerProcess], extra_pids: Sequence[int] = ()) -> None:
        self.servers = list(servers)
        self._extra = []
        for pid in extra_pids:
            with contextlib.suppress(psutil.Error):
                self._extra.append(psutil.Process(pid))

    def cpu_seconds(self) -> float:
        total = sum(s.cpu_seconds() for s in self.servers)
        for proc in self._extra:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        return sum(s.rss() for s in self.servers)

    def check_alive(self) -> None:
        for server in self.servers:
            server.check_alive()

    def sample(self) -> CpuSample:
        machine = psutil.cpu_times()
        busy = machine.user + machine.system + machine.nice + getattr(machine, "irq", 0.0)
        busy += getattr(machine, "softirq", 0.0) + getattr(machine, "steal", 0.0)
        total = busy + machine.idle + getattr(machine, "iowait", 0.0)
        return CpuSample(time.monotonic(), self.cpu_seconds(), busy, total)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def cpu_between(a: CpuSample, b: CpuSample) -> dict[str, float]:
    """Server CPU (cores) and machine utilisation (0..1) between two samples."""
    wall = max(b.when - a.when, 1e-9)
    total = max(b.machine_total - a.machine_total, 1e-9)
    return {
        "seconds": wall,
        "server_cpu_s": b.server - a.server,
        "server_cores": (b.server - a.server) / wall,
        "machine_util": (b.machine_busy - a.machine_busy) / total,
    }


class PeakRss:
    """Samples a server's RSS in a thread: the peak growth over a transfer."""

    def __init__(self, server: ServerProcess, interval: float = 0.02) -> None:
        self._server = server
        self._interval = interval
        self.start_rss = server.rss()
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(psutil.Error, AssertionError):
                self.peak = max(self.peak, self._server.rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def growth(self) -> int:
        return self.peak - self.start_rss


@contextlib.contextmanager
def running(
    servers: Sequence[ServerProcess], extra_pids: Sequence[int] = ()
) -> Iterator[ServerGroup]:
    """Start servers (stopping the ones started if a later one fails) and stop them after.

    ``extra_pids`` (e.g. the Redis server) are measured with them, never signalled.
    """
    started: list[ServerProcess] = []
    try:
        for server in servers:
            started.append(server.start())
        yield ServerGroup(started, extra_pids)
    finally:
        for server in started:
            server.stop()


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def daphne_argv(app: str, port: int, *extra: str) -> list[str]:
    """daphne on the loopback interface, at its default verbosity.

    That writes an access-log line per connection event (about 2% of the loop's time in a
    handshake burst), for our server and the Channels baselines alike; verbosity 0 would also
    hide the "Listening on" line that the start-up waits for.
    """
    return python_argv("-m", "daphne", "-b", HOST, "-p", str(port), *extra, app)
