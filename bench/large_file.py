"""Two desktop clients exchange one large file: time, throughput, memory, integrity.

``python -m bench.large_file --size 4GiB`` (``make bench-large-file``) shows issue 5's
first "done means" end to end, with nothing simulated:

1. a file of ``--size`` bytes is generated on disk (1 MiB of ``os.urandom`` at a
   time: never held in memory) and its SHA-256 computed;
2. a real server starts (daphne, the product's settings, its own data folder and
   SQLite database; see :mod:`tests.live_server`), with two accounts;
3. two real desktop clients start, each in its own process with its own config
   folder, each a real :class:`tk_client.gui.App` in a real Tk window on an X
   display (a private Xvfb unless ``--display`` names one). Each logs in
   through its login window. The sender's "send a file" path runs with the
   platform's file dialog answered by this script; the receiver accepts with
   the offer prompt's own Accept button, its save dialog answered likewise;
4. while the file crosses, this process samples the resident memory (RSS) of
   the two clients and of the server every 0.1 s, and each client reports what
   its transfer row's progress bar shows;
5. at the end: the received file's SHA-256 must equal the sent one's, and both
   progress bars must have moved forward through intermediate values to full.

The result (size, time, MB/s, peak RSS growth of each process over its value
just before the transfer) goes to ``docs/large-file.md`` (committed: issue 5 asks for
the demonstration) and stdout. The
generated and received files are deleted unless ``--keep``. Exit status 0 only
if every check passed.

The client side is this same module, run as ``python -m bench.large_file client``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
RESULT_FILE = REPO / "docs" / "large-file.md"
BLOCK = 1 << 20
SAMPLE_SECONDS = 0.1
TICK_MS = 50  # how often a client's script looks at its window
UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "KB": 10**3, "MB": 10**6}
UNITS["GB"] = 10**9
# The name of the variable that carries a client's password: never on a command line.
PASSWORD_VARIABLE = "CHAT_BENCH_PASSWORD"  # noqa: S105 - a variable name, not a password


def parse_size(text: str) -> int:
    """``4GiB``, ``8MiB``, ``500MB``, ``1234`` -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).upper() not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r}: use a size such as 4GiB, 512MiB or 1000000")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def size_argument(size: int) -> str:
    """The ``--size`` that reproduces ``size``: ``4GiB`` rather than ``4294967296``."""
    for unit in ("GiB", "MiB", "KiB"):
        if size and size % UNITS[unit.upper()] == 0:
            return f"{size // UNITS[unit.upper()]}{unit}"
    return str(size)


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def write_random_file(path: Path, size: int) -> str:
    """Stream ``size`` random bytes to ``path``; their SHA-256. Memory: one block."""
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        left = size
        while left:
            block = os.urandom(min(left, BLOCK))
            digest.update(block)
            file.write(block)
            left -= len(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


# --- the client processes (python -m bench.large_file client ...) -----------------------------


def emit(**fields: Any) -> None:
    """One JSON line to the orchestrator (stdout belongs to this protocol)."""
    fields.setdefault("t", time.time())
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def run_client(args: argparse.Namespace) -> int:
    """A real desktop client, driven through its window: log in, then send or receive."""
    import tkinter as tk

    from tk_client.files import TransferState
    from tk_client.gui import App
    from tk_client.views import transfers as transfer_views

    password = os.environ.pop(PASSWORD_VARIABLE, "")
    go = threading.Event()
    if args.role == "send":
        # The orchestrator says when, once it has measured both clients at rest.
        threading.Thread(target=lambda: sys.stdin.readline() and go.set(), daemon=True).start()
        transfer_views.filedialog.askopenfilename = lambda **_options: args.file
    else:
        transfer_views.filedialog.asksaveasfilename = lambda **_options: args.save_as

    root = tk.Tk(className="Chat")
    app = App(root, config_folder=Path(args.config), server=args.server, username=args.user)
    infos: dict[str, Any] = {}
    shown = app.transfer_changed

    def transfer_changed(info: Any) -> None:  # what the window is told, kept for the verdict
        infos[info.transfer] = info
        shown(info)

    app.transfer_changed = transfer_changed  # type: ignore[method-assign]  # a spy on the window's hook
    state: dict[str, Any] = {"step": "login", "last_report": 0.0, "last_value": None, "result": 1}

    def row() -> Any:
        rows = app.main_view.transfers.rows if app.main_view is not None else {}
        return next(iter(rows.values()), None)

    def tick() -> None:
        try:
            step = state["step"]
            if step == "login":
                login = app.login_view
                if login is not None and str(login.register_button.cget("state")) == "normal":
                    login.password.set(password)
                    login.password_entry.focus_force()
                    login.password_entry.event_generate("<Return>", when="tail")
                    state["step"] = "main"
            elif step == "main":
                if app.main_view is not None and app.controller and app.controller.all_users:
                    state["step"] = "ready"
            elif step == "ready":
                peer_online = app.controller is not None and args.peer in app.controller.online
                if peer_online:
                    emit(event="ready", pid=os.getpid())
                    state["step"] = "wait" if args.role == "send" else "offer"
            elif step == "wait" and go.is_set():
                app.choose_file(args.peer)  # as the "send a file" button, dialog answered
                emit(event="offered")
                state["step"] = "running"
            elif step == "offer" and app.offer_prompts:
                prompt = next(iter(app.offer_prompts.values()))
                prompt.accept_button.invoke()
                emit(event="accepted")
                state["step"] = "running"
            elif step == "running":
                current = row()
                now = time.monotonic()
                value = float(current.bar.cget("value")) if current is not None else None
                if current is not None and (
                    current.over
                    or value != state["last_value"]
                    or now - state["last_report"] >= 1.0
                ):
                    state["last_report"], state["last_value"] = now, value
                    info = infos.get(current.transfer)
                    emit(
                        event="progress",
                        stage=info.stage.value if info is not None else "",
                        value=float(current.bar.cget("value")),
                        maximum=float(current.bar.cget("maximum")),
                        detail=str(current.detail.cget("text")),
                    )
                if current is not None and current.over:
                    info = infos.get(current.transfer)
                    ok = info is not None and info.stage is TransferState.FINISHED
                    emit(event="done", ok=ok, detail=str(current.detail.cget("text")))
                    state["result"] = 0 if ok else 1
                    app.close()
                    return
        except Exception as exc:  # say what broke, then leave: the orchestrator reports it
            emit(event="error", detail=f"{type(exc).__name__}: {exc}")
            app.close()
            return
        root.after(TICK_MS, tick)

    root.after(TICK_MS, tick)
    root.mainloop()
    return int(state["result"])


# --- the orchestrator -------------------------------------------------------------------------


@dataclass
class Client:
    """A client process, the JSON lines it reported, and its memory samples."""

    name: str
    process: subprocess.Popen
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def start_readers(self) -> None:
        def read_out() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                with contextlib.suppress(ValueError):
                    self.lines.put(json.loads(line))

        def read_err() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.stderr.append(line.rstrip())

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()

    def wait_for(self, event: str, deadline: float) -> dict[str, Any]:
        while True:
            for seen in self.seen:
                if seen["event"] == event:
                    return seen
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchFailed(f"{self.name}: no {event!r} in time. {self.last_words()}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    raise BenchFailed(
                        f"{self.name} exited ({self.process.returncode}) before {event!r}. "
                        f"{self.last_words()}"
                    ) from None
                continue
            self.seen.append(line)
            if line["event"] == "error":
                raise BenchFailed(f"{self.name}: {line['detail']}")

    def drain(self) -> None:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return

    def last_words(self) -> str:
        return "stderr: " + (" | ".join(self.stderr[-8:]) or "(empty)")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class BenchFailed(Exception):
    """A check failed or a process misbehaved; the message says which."""


class RssSampler:
    """Samples the RSS of named processes every SAMPLE_SECONDS; baseline and peak per name."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.baseline: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> dict[str, int]:
        values = {}
        for name, process in self.processes.items():
            with contextlib.suppress(psutil.Error):
                values[name] = process.memory_info().rss
        return values

    def start(self) -> None:
        self.baseline = self._rss()
        self.peak = dict(self.baseline)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            for name, rss in self._rss().items():
                self.peak[name] = max(self.peak.get(name, 0), rss)
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self, name: str) -> int:
        return self.peak.get(name, 0) - self.baseline.get(name, 0)


def check_progress(name: str, reports: list[dict[str, Any]], seconds: float) -> str:
    """The bar must move forward through values between empty and full, and end full.

    Only the transfer counts: the sender's bar first shows its hashing pass
    (stage ``preparing``), then starts again from zero for the bytes sent. The
    window is told at most every 0.25 s (REPORT_INTERVAL), so a transfer of
    less than a second may show no value in between; a longer one must.
    """
    hashing = [r for r in reports if r.get("stage") == "preparing"]
    reports = [r for r in reports if r.get("stage") != "preparing"]
    values = [r["value"] for r in reports]
    if not values:
        raise BenchFailed(f"{name}: no progress reported")
    maximum = reports[-1]["maximum"]
    between = sorted({v for v in values if 0 < v < maximum})
    if values[-1] != maximum:
        raise BenchFailed(f"{name}: the bar ended at {values[-1]} of {maximum}")
    if any(b < a for a, b in itertools.pairwise(values)):
        raise BenchFailed(f"{name}: the bar went backwards: {values}")
    if not between and seconds >= 1.0:
        raise BenchFailed(f"{name}: the bar jumped to full without showing progress: {values}")
    shown = f" (after {len(hashing)} reports of its hashing pass)" if hashing else ""
    return f"advanced through {len(between)} intermediate values to full{shown}"


def client_command(role: str, **options: str) -> list[str]:
    argv = [sys.executable, "-m", "bench.large_file", "client", "--role", role]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return argv


def orchestrate(args: argparse.Namespace) -> int:
    from tests.live_server import start_live_server
    from tk_client.address import parse_address
    from tk_client.known_servers import KnownServers

    size: int = args.size
    base = Path(args.workdir) if args.workdir else None
    work = Path(tempfile.mkdtemp(prefix="chat-large-file-", dir=base))
    xvfb = None
    server = None
    clients: list[Client] = []
    sampler: RssSampler | None = None
    try:
        display = args.display or None
        if display is None:
            from tests.tk_client.xvfb import Xvfb

            xvfb = Xvfb().start()
            display = xvfb.display
        print(f"* generating {human(size)} of random data in {work}", file=sys.stderr)
        sent = work / "outgoing" / "large.bin"
        sent.parent.mkdir()
        started = time.monotonic()
        sent_sha = write_random_file(sent, size)
        print(f"  done in {time.monotonic() - started:.1f} s", file=sys.stderr)
        received = work / "incoming" / "large.bin"
        received.parent.mkdir()

        limit = str(max(size, 4 * 1024**3))
        server = start_live_server(work / "server", env={"CHAT_MAX_FILE_SIZE": limit})
        passwords = {name: secrets.token_urlsafe(16) for name in ("alice", "bob")}
        for name, password in passwords.items():
            server.create_user(name, password)
        address = parse_address(server.url)
        env = {k: v for k, v in os.environ.items() if k != PASSWORD_VARIABLE}
        env["DISPLAY"] = display
        roles = {
            "alice": ("send", {"peer": "bob", "file": str(sent)}),
            "bob": ("receive", {"peer": "alice", "save_as": str(received)}),
        }
        for name, (role, options) in roles.items():
            config = work / f"config-{name}"
            KnownServers(config / "known_servers").trust(address, server.fingerprint)
            argv = client_command(role, server=server.url, user=name, config=str(config), **options)
            child_env = dict(env, **{PASSWORD_VARIABLE: passwords[name]})
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=child_env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            clients.append(Client(f"{name}'s client ({role})", process))
            clients[-1].start_readers()
        sender, receiver = clients
        deadline = time.monotonic() + 120
        for client in clients:
            client.wait_for("ready", deadline)
        assert server.process is not None
        time.sleep(1.0)  # let both windows settle before the baseline
        sampler = RssSampler(
            {
                "sender": sender.process.pid,
                "receiver": receiver.process.pid,
                "server": server.process.pid,
            }
        )
        sampler.start()
        assert sender.process.stdin is not None
        sender.process.stdin.write("go\n")
        sender.process.stdin.flush()
        # The sender hashes the file before offering it (~2 s per GiB): part of the timeout.
        deadline = time.monotonic() + args.timeout
        offered = sender.wait_for("offered", deadline)
        accepted = receiver.wait_for("accepted", deadline)
        received_done = receiver.wait_for("done", deadline)
        sent_done = sender.wait_for("done", deadline)
        sampler.stop()
        for client in clients:
            client.process.wait(60)
            client.drain()

        transfer_seconds = received_done["t"] - accepted["t"]
        total_seconds = received_done["t"] - offered["t"]
        checks = []
        for client, done in ((sender, sent_done), (receiver, received_done)):
            if not done["ok"]:
                raise BenchFailed(f"{client.name}: the transfer failed: {done['detail']}")
            progress = [r for r in client.seen if r["event"] == "progress"]
            verdict = check_progress(client.name, progress, transfer_seconds)
            checks.append(f"{client.name}: progress bar {verdict}; last words: {done['detail']}")
        received_sha = file_sha256(received)
        if received_sha != sent_sha:
            raise BenchFailed(f"SHA-256 differs: sent {sent_sha}, received {received_sha}")
        if received.stat().st_size != size:
            raise BenchFailed(f"size differs: sent {size}, received {received.stat().st_size}")
        leftovers = [p.name for p in received.parent.iterdir() if p != received]
        if leftovers:
            raise BenchFailed(f"files left beside the received one: {leftovers}")
        checks.append(f"received file identical: SHA-256 {received_sha}")
        report = result_markdown(
            size=size,
            transfer_seconds=transfer_seconds,
            total_seconds=total_seconds,
            sampler=sampler,
            checks=checks,
        )
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report, encoding="utf-8")
        print(report)
        return 0
    except BenchFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if sampler is not None and sampler._thread.is_alive():
            sampler.stop()
        for client in clients:
            client.stop()
        if server is not None:
            server.stop()
        if xvfb is not None:
            xvfb.stop()
        if args.keep:
            print(f"* kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def result_markdown(
    *,
    size: int,
    transfer_seconds: float,
    total_seconds: float,
    sampler: RssSampler,
    checks: list[str],
) -> str:
    rate = size / transfer_seconds / 1e6 if transfer_seconds > 0 else float("inf")
    rows = [
        "# Large file between two desktop clients",
        "",
        f"`python -m bench.large_file --size {size_argument(size)}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs; "
        "two real Tk clients (one process each, under X) through one real server "
        "(daphne, in-memory layer), all on loopback.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| size | {human(size)} ({size:,} bytes) |",
        f"| transfer time (accept to saved, incl. final fsync) | {transfer_seconds:.1f} s |",
        f"| throughput | {rate:.1f} MB/s |",
        f"| time from the send click (incl. the sender's hashing pass) | {total_seconds:.1f} s |",
    ]
    for name in ("sender", "receiver", "server"):
        rows.append(
            f"| peak RSS growth, {name} | {human(sampler.growth(name))} "
            f"(from {human(sampler.baseline.get(name, 0))} "
            f"to {human(sampler.peak.get(name, 0))}) |"
        )
    rows += [
        f"| RSS samples | {sampler.samples} (every {SAMPLE_SECONDS} s) |",
        "",
        "Checks:",
        "",
        *[f"- {check}" for check in checks],
        "",
        "The machine is shared (2 cores, other work running): the times are indicative; "
        "the memory figures are what this demonstration is about.",
        "",
    ]
    return "\n".join(rows)


# --- command line ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m bench.large_file",
        description="Send one large file between two real desktop clients; check and measure.",
    )
    top.add_argument("--size", type=parse_size, default=parse_size("4GiB"))
    top.add_argument("--output", default=str(RESULT_FILE), help="where the markdown result goes")
    top.add_argument("--workdir", help="where the files are made (default: the temp folder)")
    top.add_argument("--display", help="an X display to use instead of starting Xvfb")
    top.add_argument("--timeout", type=float, default=3600.0, help="seconds for the transfer")
    top.add_argument("--keep", action="store_true", help="keep the files and logs afterwards")
    sub = top.add_subparsers(dest="command")
    client = sub.add_parser("client", help="(internal) one desktop client")
    client.add_argument("--role", choices=("send", "receive"), required=True)
    client.add_argument("--server", required=True)
    client.add_argument("--user", required=True)
    client.add_argument("--peer", required=True)
    client.add_argument("--config", required=True)
    client.add_argument("--file")
    client.add_argument("--save-as")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    runner: Callable[[argparse.Namespace], int] = (
        run_client if args.command == "client" else orchestrate
    )
    return runner(args)


if __name__ == "__main__":
    sys.exit(main())
