"""Deployments for end-to-end tests: one process on SQLite, or two on Redis and PostgreSQL.

The same tests run against both (``deployment`` fixture in ``conftest.py``).
Users are registered over the protocol, spread over the processes by index:
``deployment.register("alice", on=1)`` talks to the second process.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

from tests import services
from tests.live_server import LiveServer, start_live_server
from tests.protocol_client.sync import SyncClient, connect

PASSWORD = "correct horse battery staple"
_unique = itertools.count(1)


class Deployment:
    def __init__(self, name: str, servers: list[LiveServer]) -> None:
        self.name = name
        self.servers = servers
        self.clients: list[SyncClient] = []

    def server(self, on: int) -> LiveServer:
        return self.servers[on % len(self.servers)]

    def connect(self, on: int = 0) -> SyncClient:
        """A session on process ``on``, closed by the ``_close_clients`` fixture after the test."""
        server = self.server(on)
        client = connect(server.url, server.origin, expected_fingerprint=server.fingerprint)
        self.clients.append(client)
        return client

    def username(self, base: str) -> str:
        """A name no other test of the module uses."""
        return f"{base}-{next(_unique)}"

    def register(
        self, base: str, on: int = 0, *, remember: str | None = None
    ) -> tuple[str, SyncClient]:
        """A new account, logged in on process ``on``; login_ok and users already read.
        ``remember``: as a new device of that name (``client.device``), which private
        messages and private rooms need (their ``e2e`` objects name it, protocol 4.5)."""
        name = self.username(base)
        client = self.connect(on)
        request = {"type": "register", "username": name, "password": PASSWORD}
        if remember is not None:
            request["remember"] = remember
        answer = client.request(request)
        assert answer["type"] == "login_ok", answer
        client.device = answer.get("device")
        client.roster = Roster(client, client.find("users"))
        return name, client

    def login(self, name: str, on: int = 0, *, remember: str | None = None) -> SyncClient:
        """A new session of ``name`` on process ``on``; login_ok and users already read
        (``remember``: as in :meth:`register`)."""
        client = self.connect(on)
        client.login(name, PASSWORD, remember=remember)
        client.roster = Roster(client, client.after_login[-1])
        return client

    def set_active(self, name: str, active: bool) -> None:
        self.servers[0].set_active(name, active)

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()


class Roster:
    """What a client knows of presence: its ``users`` snapshot with each ``presence`` delta
    applied in order, as PROTOCOL.md 3.2 says a client does (``client.roster``)."""

    def __init__(self, client: SyncClient, snapshot: dict) -> None:
        assert snapshot["type"] == "users", snapshot
        self.client = client
        self.interval = snapshot["presence_interval"]
        self.online = set(snapshot["online"])
        self.all = set(snapshot["all"])
        self.deltas: list[dict] = []

    def apply(self, delta: dict) -> None:
        self.deltas.append(delta)
        self.all |= set(delta["added"])
        self.all -= set(delta["removed"])
        self.online -= set(delta["removed"])
        self.online |= set(delta["online"])
        self.online -= set(delta["offline"])

    def until(self, condition, timeout: float = 30) -> Roster:
        """Apply deltas until ``condition(self)`` holds."""
        while not condition(self):
            self.apply(self.client.find("presence", timeout=timeout))
        return self

    def settled(self, quiet: float) -> Roster:
        """Apply deltas until none comes for ``quiet`` seconds."""
        while True:
            try:
                self.apply(self.client.find("presence", timeout=quiet))
            except TimeoutError:
                return self

    def is_fresh(self) -> bool:
        """Whether the snapshot with its deltas equals a fresh ``users``."""
        fresh = self.client.request({"type": "users"})
        return (sorted(self.online), sorted(self.all)) == (fresh["online"], fresh["all"])


@contextlib.contextmanager
def single_process(data_dir: Path) -> Iterator[Deployment]:
    with start_live_server(data_dir) as server:
        deployment = Deployment("one process, SQLite, in-memory layer", [server])
        try:
            yield deployment
        finally:
            deployment.close_clients()


@contextlib.contextmanager
def scaled_out(data_dir: Path, processes: int = 2) -> Iterator[Deployment]:
    """``processes`` daphne processes on Redis (own key prefix) and a fresh PostgreSQL database."""
    redis_url = services.redis_url()
    with (
        services.fresh_postgres_database() as database_url,
        services.redis_prefix() as prefix,
        start_live_server(
            data_dir,
            env={"REDIS_URL": redis_url, "DATABASE_URL": database_url, "CHAT_REDIS_PREFIX": prefix},
            processes=processes,
        ) as cluster,
    ):
        deployment = Deployment(f"{processes} processes, Redis, PostgreSQL", cluster.servers)
        try:
            yield deployment
        finally:
            deployment.close_clients()
