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
from tests.chat_client import TestClient, connect
from tests.live_server import LiveServer, start_live_server

PASSWORD = "correct horse battery staple"
_unique = itertools.count(1)


class Deployment:
    def __init__(self, name: str, servers: list[LiveServer]) -> None:
        self.name = name
        self.servers = servers
        self.clients: list[TestClient] = []

    def server(self, on: int) -> LiveServer:
        return self.servers[on % len(self.servers)]

    def connect(self, on: int = 0) -> TestClient:
        server = self.server(on)
        client = connect(server.url, server.origin, expected_fingerprint=server.fingerprint)
        self.clients.append(client)
        return client

    def username(self, base: str) -> str:
        """A name no other test of the module uses."""
        return f"{base}-{next(_unique)}"

    def register(self, base: str, on: int = 0) -> tuple[str, TestClient]:
        """A new account, logged in on process ``on``; login_ok and users already read."""
        name = self.username(base)
        client = self.connect(on)
        answer = client.request({"type": "register", "username": name, "password": PASSWORD})
        assert answer["type"] == "login_ok", answer
        client.expect("users")
        return name, client

    def login(self, name: str, on: int = 0) -> TestClient:
        client = self.connect(on)
        client.login(name, PASSWORD)
        client.expect("users")
        return client

    def set_active(self, name: str, active: bool) -> None:
        self.servers[0].set_active(name, active)

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()

    def stop(self) -> None:
        self.close_clients()
        for server in self.servers:
            server.stop()


@contextlib.contextmanager
def single_process(data_dir: Path) -> Iterator[Deployment]:
    server = start_live_server(data_dir)
    deployment = Deployment("one process, SQLite, in-memory layer", [server])
    try:
        yield deployment
    finally:
        deployment.stop()


@contextlib.contextmanager
def scaled_out(data_dir: Path, processes: int = 2) -> Iterator[Deployment]:
    """``processes`` daphne processes on Redis (own key prefix) and a fresh PostgreSQL database."""
    redis_url = services.redis_url()
    with services.fresh_postgres_database() as database_url, services.redis_prefix() as prefix:
        cluster = start_live_server(
            data_dir,
            env={"REDIS_URL": redis_url, "DATABASE_URL": database_url, "CHAT_REDIS_PREFIX": prefix},
            processes=processes,
        )
        deployment = Deployment(f"{processes} processes, Redis, PostgreSQL", cluster.servers)
        try:
            yield deployment
        finally:
            deployment.stop()
