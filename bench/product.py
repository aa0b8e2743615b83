"""The product server as the bench runs it: a temp data dir, a migrated database, users.

The server is ``daphne chatsite.asgi:application`` with ``DJANGO_DEBUG=0`` and
the product's settings (through :mod:`bench.product_settings`, which changes
only the password-hash cost where a scenario asks for it). The database is a
fresh PostgreSQL database when the server at 127.0.0.1:5432 accepts us (dropped
at the end), else SQLite in the temp data dir; the report says which.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

from chatsite.keepalive import DAPHNE_ARGS

from . import procs

PASSWORD = secrets.token_urlsafe(16)  # one throwaway password for every bench account
SENDER = "bench-sender"
PINGER = "bench-pinger"
ARGON = "bench-argon"  # hashed with Django's default Argon2 cost: the login benchmark
FILE_FROM = "bench-files-a"
FILE_TO = "bench-files-b"


def receiver_name(i: int) -> str:
    return f"bench-r{i}"


def storm_name(i: int) -> str:
    return f"bench-s{i:05d}"


class ProductUnavailable(RuntimeError):
    """The product cannot be run here yet (not built, does not start); the reason says why."""


class Product:
    def __init__(
        self, tmp: Path, key_file: Path, log_dir: Path, database_url: str | None = None
    ) -> None:
        self.data_dir = tmp / "product-data"
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.key_file = key_file
        self.log_dir = log_dir
        self._own_database: str | None = None
        if database_url == "sqlite":  # the product's default: SQLite in its data dir
            self.database_url = None
        else:
            self.database_url = database_url or self._postgres_database()
        self.database = (
            "SQLite (in the temp data dir)"
            if not self.database_url
            else "PostgreSQL (a fresh database, dropped after the run)"
            if self._own_database
            else self.database_url.split("://", 1)[0]
        )
        self.receivers = 0

    # -- database
    def _postgres_database(self) -> str | None:
        """A fresh database on the local PostgreSQL, if one accepts us; None for SQLite."""
        try:
            import psycopg
        except ImportError:
            return None
        name = f"chat_bench_{os.getpid()}"
        try:
            with psycopg.connect(
                "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                autocommit=True,
                connect_timeout=3,
            ) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except Exception:
            return None
        self._own_database = name
        return f"postgres://postgres@127.0.0.1:5432/{name}"

    def cleanup(self) -> None:
        if self._own_database is None:
            return
        import psycopg

        with (
            contextlib.suppress(Exception),
            psycopg.connect(
                "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                autocommit=True,
                connect_timeout=3,
            ) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{self._own_database}" WITH (FORCE)')
        self._own_database = None

    # -- processes
    def env(
        self,
        *,
        fast_hash: bool = True,
        redis_url: str | None = None,
        prefix: str = "",
        layer: str = "",
    ) -> dict:
        env = {
            "DJANGO_SETTINGS_MODULE": "bench.product_settings",
            "DJANGO_DEBUG": "0",
            "CHAT_DATA_DIR": str(self.data_dir),
            "CHAT_SERVER_KEY": str(self.key_file),
            "BENCH_FAST_HASH": "1" if fast_hash else "0",
            # The scenarios measure delivery, not the abuse limits (chat/limits.py): one
            # sender sends hundreds of messages a second, the idle scenario holds a thousand
            # sessions per user.
            "CHAT_MESSAGE_RATE": "1000000000/1",
            "CHAT_REQUEST_RATE": "1000000000/1",
            "CHAT_MAX_SESSIONS": "1000000000",
        }
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if redis_url:
            env["REDIS_URL"] = redis_url
            env["CHAT_REDIS_PREFIX"] = prefix or f"bench{os.getpid()}"
            if layer:  # "core" or "pubsub" (CHAT_REDIS_LAYER); the product's default otherwise
                env["CHAT_REDIS_LAYER"] = layer
        return env

    def _run(self, args: Sequence[str], stdin: str | None = None, timeout: float = 600) -> str:
        result = subprocess.run(
            procs.python_argv(*args),
            cwd=procs.REPO,
            env=procs.python_env(self.env()),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-8:])
            raise ProductUnavailable(f"{' '.join(args[:3])} failed: {tail}")
        return result.stdout

    def prepare(self, receivers: int) -> None:
        """Migrate and create the accounts (receivers are spread over at most 100 users)."""
        if not (procs.REPO / "chat" / "consumers.py").exists():
            raise ProductUnavailable("chat/consumers.py does not exist yet")
        self._run(["manage.py", "migrate", "--noinput"])
        self.receivers = max(1, min(receivers, 100))
        users = [[receiver_name(i), PASSWORD, True] for i in range(self.receivers)]
        users += [[name, PASSWORD, True] for name in (SENDER, PINGER, FILE_FROM, FILE_TO)]
        users.append([ARGON, PASSWORD, False])
        self._run(["-m", "bench.product_users"], stdin=json.dumps(users))

    def storm_accounts(self, count: int) -> list[tuple[str, str]]:
        """``count`` distinct accounts for the login storm, created on first use with the
        bench's cheap Argon2 (:class:`bench.product_settings.BenchArgon2PasswordHasher`)."""
        users = [[storm_name(i), PASSWORD, True] for i in range(count)]
        self._run(["-m", "bench.product_users"], stdin=json.dumps(users), timeout=1800)
        return [(name, password) for name, password, _ in users]

    def storm_devices(self, accounts: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """A remembered device for each storm account: ``(username, token)`` pairs for the
        storm's resume variant (:mod:`bench.product_devices`). Raises
        :class:`ProductUnavailable` where the product does not serve ``resume`` yet."""
        request = {
            "usernames": [name for name, _ in accounts],
            "name": "bench",
            "address": "127.0.0.1",
        }
        answer = json.loads(
            self._run(["-m", "bench.product_devices"], stdin=json.dumps(request), timeout=1800)
        )
        return [(name, token) for name, token in answer["tokens"]]

    def receiver_accounts(self, users: int | None = None) -> list[tuple[str, str]]:
        count = min(users or self.receivers, self.receivers)
        return [(receiver_name(i), PASSWORD) for i in range(count)]

    def server(
        self,
        port: int,
        *,
        fast_hash: str = "1",
        redis_url: str = "",
        prefix: str = "",
        tag: str = "",
        layer: str = "",
        daphne_args: tuple[str, ...] = (),
    ) -> procs.ServerProcess:
        env = self.env(
            fast_hash=fast_hash == "1", redis_url=redis_url or None, prefix=prefix, layer=layer
        )
        # The product's own keepalive first (as it is started: chatsite/keepalive.py); the run's
        # --daphne-args after it, so that they win for every daphne server alike.
        argv = procs.daphne_argv("chatsite.asgi:application", port, *DAPHNE_ARGS, *daphne_args)
        return procs.ServerProcess(f"product{tag}", argv, port, self.log_dir, env)
