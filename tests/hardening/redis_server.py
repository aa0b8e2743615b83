"""A Redis server of the test's own, on a free port, that the test may stop and restart.

The machine's Redis on 6379 is shared with other test runs and CI: a fault test
must never restart it. This one is started as a subprocess without persistence,
so a restart loses everything in it, as a crashed Redis without a disk would.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests import services
from tests.live_server import _die_with_parent, free_port

START_TIMEOUT = 20.0


class PrivateRedis:
    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            services._unavailable(
                "redis-server (to run a private Redis)",
                "install Redis: apt-get install redis-server",
            )
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on this server's port; returns once it answers PING."""
        import redis

        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                client = redis.Redis(port=self.port, socket_connect_timeout=1)
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill it (no shutdown save: the data is gone, as in a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
