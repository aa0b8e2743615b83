"""The server never has the text of a private message or a private room (section 4).

Two daphne processes on Redis and PostgreSQL, each loading tests/snoop/sitecustomize.py,
which writes down every plaintext the process decrypts or encrypts: every record in and
out, every value written or read at rest, everything put on or taken off the channel
layer. Meanwhile Redis's MONITOR records the layer's traffic as Redis sees it. Real
clients (headless peers: session, controller, end-to-end link) then talk: alice sends a
private message to bob, who has two devices, and a message to a private room with bob
and carol. Afterwards the secrets must be in none of: the snooped plaintexts, the Redis
traffic, the database (every table, dumped), the servers' logs. Bob's two devices and
carol must show them.

Each source is checked to be really observed: a message in the public lobby (which the
server may read) must show up in the snooped records and the layer's traffic, so an
empty or broken snoop cannot pass for a clean server. And a deliberately broken client
that sends a private message's text in the clear is caught by the same check.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.live_server import start_live_server
from tests.tk_client.e2e_peers import Peer, pump
from tests.tk_client.test_e2e_clients_live import approve, approved
from tk_client.chat_state import Pending
from tk_client.controller import ChatController
from tk_client.model import ConversationKey, pm_key, room_key

pytestmark = [pytest.mark.slow, pytest.mark.services]  # two daphne processes, Redis, PostgreSQL

SNOOP_DIR = Path(__file__).resolve().parent
PM_SECRET = "vault-code-4815162342"
ROOM_SECRET = "meet-at-the-old-mill-at-dawn"
PUBLIC_CANARY = "lobby-canary-everyone-may-read-this"
LEAKED_SECRET = "broken-build-leaks-this-pm"
_names = itertools.count(1)


class RedisMonitor:
    """Every command Redis executes while it runs (MONITOR), as text."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RedisMonitor:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                self.commands.append(str(command.get("command", "")))
                if self._stop.is_set():
                    return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._client.ping()  # one more command wakes the listener up
        self._thread.join(10)
        self._client.close()

    def text(self) -> str:
        return "\n".join(self.commands)


def database_dump(url: str) -> str:
    """Every row of every table of the server's database, as ``COPY`` writes it."""
    import psycopg

    dump = []
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        ).fetchall()
        for (table,) in tables:
            with conn.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:
                dump.append(f"-- {table}\n" + b"".join(bytes(block) for block in copy).decode())
    return "\n".join(dump)


@pytest.fixture(scope="module")
def snooped(tmp_path_factory) -> Iterator[dict]:
    """Two snooped server processes on Redis and PostgreSQL, and where their records go."""
    data_dir = tmp_path_factory.mktemp("snooped")
    snoop_file = data_dir / "snoop"
    redis_url = services.redis_url()
    path = os.pathsep.join([str(SNOOP_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with (
        services.fresh_postgres_database() as database_url,
        services.redis_prefix() as prefix,
        start_live_server(
            data_dir,
            env={
                "REDIS_URL": redis_url,
                "DATABASE_URL": database_url,
                "CHAT_REDIS_PREFIX": prefix,
                "PYTHONPATH": path,
                "CHAT_SNOOP_FILE": str(snoop_file),
            },
            processes=2,
        ) as cluster,
        RedisMonitor(redis_url) as monitor,
    ):
        yield {
            "cluster": cluster,
            "monitor": monitor,
            "database": database_url,
            "data_dir": data_dir,
            "snoop_file": snoop_file,
            "prefix": prefix,
        }


SNOOPED = {
    "record": "the records the servers decrypted and encrypted",
    "at-rest": "the values the servers wrote and read at rest",
    "layer": "what the servers put on and took off the channel layer",
}


def everything_the_server_had(snooped: dict) -> dict[str, str]:
    """Each place a secret could leak to, as text (the snooped plaintexts by kind)."""
    data_dir: Path = snooped["data_dir"]
    lines = [
        line
        for p in sorted(data_dir.glob(snooped["snoop_file"].name + ".*"))
        for line in p.read_bytes().decode("utf-8", "replace").splitlines()
    ]
    seen = {
        where: "\n".join(line for line in lines if line.startswith(prefix))
        for prefix, where in SNOOPED.items()
    }
    seen["the channel layer's traffic in Redis"] = snooped["monitor"].text()
    seen["the database"] = database_dump(snooped["database"])
    seen["the servers' logs"] = "\n".join(server.log() for server in snooped["cluster"].servers)
    return seen


def assert_every_source_is_observed(seen: dict[str, str], snooped: dict, user: str) -> None:
    """An empty or broken snoop must not pass for a clean server: what the server may
    read (a lobby message, the account names) shows up in each source."""
    for where in SNOOPED.values():
        assert PUBLIC_CANARY in seen[where], f"the snoop of {where} saw nothing"
    assert snooped["prefix"] in seen["the channel layer's traffic in Redis"]
    assert user in seen["the database"]
    assert "Listening on TCP address" in seen["the servers' logs"]


@pytest.fixture
def people(snooped, tmp_path):
    cluster = snooped["cluster"]
    opened: list[Peer] = []

    def person(name: str, device: str, server: int = 0) -> Peer:
        peer = Peer(cluster.servers[server], tmp_path / f"{name}-{device}", name, device)
        opened.append(peer)
        peer.log_in(f"{name}-pw")
        return peer

    def accounts(*names: str) -> list[str]:
        run = next(_names)
        made = [f"{name}{run}" for name in names]
        for username in made:
            cluster.create_user(username, f"{username}-pw")
        return made

    yield person, accounts
    for peer in opened:
        peer.close()


def test_the_server_sees_no_private_text_and_every_device_reads_it(snooped, people):
    person, accounts = people
    alice_name, bob_name, carol_name = accounts("alice", "bob", "carol")
    alice = person(alice_name, "laptop", 0)
    bob_laptop = person(bob_name, "laptop", 1)
    carol = person(carol_name, "laptop", 1)
    everyone = [alice, bob_laptop, carol]
    pump(everyone, approved(*everyone), "the first devices set up")
    bob_phone = person(bob_name, "phone", 0)
    everyone.append(bob_phone)
    approve(bob_laptop, bob_phone, everyone)

    alice.controller.submit(PUBLIC_CANARY)  # the lobby: the server may read it
    assert alice.controller.submit(f"/create hideout {bob_name} {carol_name}")
    pump(everyone, lambda: all("hideout" in p.controller.rooms for p in everyone), "the room")
    alice.controller.select(room_key("hideout"))
    assert alice.controller.submit(ROOM_SECRET)
    assert alice.controller.submit(f"/pm {bob_name} {PM_SECRET}")

    pump(
        everyone,
        lambda: (
            all((alice_name, ROOM_SECRET) in p.lines(room_key("hideout")) for p in everyone[1:])
            and all(
                (alice_name, PM_SECRET) in p.lines(pm_key(alice_name))
                for p in (bob_laptop, bob_phone)
            )
        ),
        "bob's two devices and carol showing the secrets",
    )
    pump(everyone, lambda: (alice_name, PUBLIC_CANARY) in carol.lines(room_key("lobby")), "lobby")

    seen = everything_the_server_had(snooped)
    assert_every_source_is_observed(seen, snooped, alice_name)
    for where, text in seen.items():
        for secret in (PM_SECRET, ROOM_SECRET):
            assert secret not in text, f"{secret!r} leaked into {where}"


def test_a_client_that_sends_a_private_message_in_the_clear_is_caught(snooped, people, monkeypatch):
    person, accounts = people
    alice_name, bob_name = accounts("alice", "bob")
    alice = person(alice_name, "laptop", 0)
    bob = person(bob_name, "laptop", 1)
    pump([alice, bob], approved(alice, bob), "devices set up")

    def leaky_send(self: ChatController, key: ConversationKey, text: str) -> bool:
        """The broken build: a private message's text in the clear."""
        return self._request("pm", Pending("send", key), to=key.name, text=text) is not None

    monkeypatch.setattr(ChatController, "_send_encrypted", leaky_send)
    alice.controller.submit(f"/pm {bob_name} {LEAKED_SECRET}")
    pump([alice, bob], lambda: not alice.session.pending(), "the leaky request answered")

    seen = everything_the_server_had(snooped)
    leaks = [where for where, text in seen.items() if LEAKED_SECRET in text]
    assert SNOOPED["record"] in leaks
