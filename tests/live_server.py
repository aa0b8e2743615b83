"""Real chat servers for end-to-end tests: daphne in a subprocess, on a free port.

::

    with start_live_server(tmp_path) as server:    # SQLite + in-memory layer, one process
        server.create_user("alice", "pw")
        ...  connect to server.url with Origin server.origin, pin server.fingerprint
        server.stop(); server.start()              # same port and data dir (reconnect tests)

    with start_live_server(tmp_path, env={"REDIS_URL": ..., "DATABASE_URL": ...},
                           processes=2) as cluster:  # cluster.servers[0], cluster.servers[1]
        ...

Leaving the ``with`` block stops every process, whether the test passed or not.

Every server runs with its own environment (never the test process's Django
settings): accounts are made through ``manage.py chatuser`` in a subprocess
with the same environment, as an operator would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0

# Variables of the developer's shell that must not leak into a test server.
_SCRUBBED = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "REDIS_URL",
    "CHAT_REDIS_PREFIX",
    "CHAT_SERVER_KEY",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "CHAT_TRUSTED_PROXIES",
    "CHAT_BEHIND_TLS_PROXY",
)


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the test process dies (no orphaned daphne)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test server: its own data dir, open registration, fast heartbeat."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(
        {
            "CHAT_DATA_DIR": str(data_dir),
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CHAT_OPEN_REGISTRATION": "1",
            "CHAT_HEARTBEAT_SECONDS": "1",
            "CHAT_SERVER_NAME": "Test server",
            # Suites register many accounts and open many sessions from 127.0.0.1.
            "CHAT_REGISTER_RATE": "100000/60",
            "CHAT_HANDSHAKE_RATE": "100000/60",
            # ...and measure with floods of pings and messages from one user; the abuse
            # limits (chat/limits.py) are tested in process (tests/chat/test_limits.py).
            "CHAT_MESSAGE_RATE": "1000000000/1",
            "CHAT_REQUEST_RATE": "1000000000/1",
            "CHAT_ROOM_CREATE_RATE": "1000000000/1",
            "CHAT_MAX_SESSIONS": "1000000000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def manage(env: Mapping[str, str], *args: str, input: str | None = None) -> str:
    """Run ``manage.py`` with ``env``; its output, or AssertionError with its errors."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        )
    return result.stdout


def prepare(env: Mapping[str, str]) -> str:
    """Migrate the database and make the server key; returns the key's fingerprint."""
    manage(env, "migrate", "--noinput", "-v", "0")
    output = manage(env, "server_key")
    for line in output.splitlines():
        if line.startswith("fingerprint: "):
            return line.removeprefix("fingerprint: ").strip()
    raise AssertionError(f"server_key printed no fingerprint:\n{output}")


class LiveServer:
    """One daphne process serving the chat (``url``, ``origin``, ``fingerprint``)."""

    def __init__(self, data_dir: Path, env: Mapping[str, str], fingerprint: str, port: int) -> None:
        self.data_dir = Path(data_dir)
        self.env = dict(env)
        self.fingerprint = fingerprint
        self.port = port
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / f"server-{port}.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) daphne on this server's port and data dir; waits until it listens.

        The first start moves to another free port if the one picked was taken
        meanwhile (other test runs share the machine); a restart keeps its port.
        """
        if self.process is not None and self.process.poll() is None:
            return
        for _attempt in range(5):
            if self._spawn_and_wait():
                self._started_once = True
                return
            if self._started_once:
                break
            self.port = free_port()
            self.log_path = self.data_dir / f"server-{self.port}.log"
        raise RuntimeError(f"daphne could not listen on port {self.port}:\n{self.log()}")

    _started_once = False

    def _spawn_and_wait(self) -> bool:
        """True once our daphne says it listens; False if the port was taken."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until stopped
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "chatsite.asgi:application",
            ],
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        log.close()
        listening = f"Listening on TCP address 127.0.0.1:{self.port}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            written = self._log_bytes()[offset:].decode("utf-8", "replace")
            if listening in written:
                return True
            if self.process.poll() is not None:
                self.process = None
                if "Address already in use" in written or "address already in use" in written:
                    return False
                raise RuntimeError(f"daphne exited:\n{written}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"daphne did not listen on {self.port} in time:\n{self.log()}")

    def stop(self) -> None:
        """Stop daphne (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """Kill daphne without letting it clean up (a crashed process)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        """Everything daphne wrote (all starts of this server)."""
        return self._log_bytes().decode("utf-8", "replace")

    def _log_bytes(self) -> bytes:
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def manage(self, *args: str, input: str | None = None) -> str:
        return manage(self.env, *args, input=input)

    def create_user(self, username: str, password: str) -> None:
        """Create an active account (password validators not applied)."""
        self.manage(
            "chatuser",
            "create",
            username,
            "--password-stdin",
            "--no-password-validation",
            input=password + "\n",
        )

    def set_active(self, username: str, active: bool) -> None:
        """Activate or deactivate an account; deactivation ends its live sessions (4003)."""
        self.manage("chatuser", "activate" if active else "deactivate", username)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class LiveCluster:
    """Several daphne processes sharing one database, Redis and data dir; one port each."""

    def __init__(self, servers: list[LiveServer]) -> None:
        self.servers = servers

    def __getitem__(self, index: int) -> LiveServer:
        return self.servers[index]

    def __len__(self) -> int:
        return len(self.servers)

    @property
    def fingerprint(self) -> str:
        return self.servers[0].fingerprint

    @property
    def data_dir(self) -> Path:
        return self.servers[0].data_dir

    def create_user(self, username: str, password: str) -> None:
        self.servers[0].create_user(username, password)

    def set_active(self, username: str, active: bool) -> None:
        self.servers[0].set_active(username, active)

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> LiveCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_live_server(
    data_dir: Path, *, env: Mapping[str, str] | None = None, processes: int = 1
) -> LiveServer | LiveCluster:
    """Prepare ``data_dir`` (migrate, server key) and start ``processes`` daphne processes.

    One process gives a :class:`LiveServer`; more give a :class:`LiveCluster`
    (they must share REDIS_URL, and DATABASE_URL unless SQLite is enough).
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    environment = server_env(data_dir, env)
    fingerprint = prepare(environment)
    servers = []
    try:
        for _ in range(processes):
            server = LiveServer(data_dir, environment, fingerprint, free_port())
            servers.append(server)
            server.start()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers[0] if processes == 1 else LiveCluster(servers)
