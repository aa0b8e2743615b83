"""Load with an exact account (issue 7, item 7): every acked message, everywhere, exactly once.

``CHAT_LOAD_CLIENTS`` clients (200) each send ``CHAT_LOAD_MESSAGES`` messages to
``lobby`` through two server processes sharing Redis and PostgreSQL, all from
one asyncio process (``tests/hardening/aio_client.py``). The checker, not a
stopwatch, decides:

- every acknowledged message reaches every client (all are online members of
  lobby) exactly once, and nothing else does;
- each sender's messages arrive at every client in the order they were sent,
  with increasing ``msg_id``;
- the database holds each exactly once, with its text (read back with ``history``).

The sends are paced by the deliveries, not by a clock: a client may send only
while fewer than ``WINDOW`` messages are acknowledged but not yet delivered to
the slowest client, so the run adapts to the machine. ``make test`` runs 200
clients with a few messages each; the full 200 x 100 (``CHAT_LOAD_MESSAGES=100``)
delivers 4,000,000 records and takes minutes on 2 cores.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import defaultdict

import pytest

from tests import services
from tests.hardening.aio_client import AsyncChatClient
from tests.hardening.helpers import FAST_HASHING, PASSWORD, create_accounts, room_history
from tests.live_server import start_live_server

pytestmark = pytest.mark.services

CLIENTS = int(os.environ.get("CHAT_LOAD_CLIENTS", "200"))
MESSAGES = int(os.environ.get("CHAT_LOAD_MESSAGES", "3"))
WINDOW = 40  # messages acknowledged but not yet delivered to the slowest client
CONNECT_BATCH = 25  # handshakes at a time (RSA decryption runs on the servers' event loops)
SETTLE_SECONDS = 60.0  # bounds a hung run; never a timing assertion
STALL_SECONDS = 60.0  # no delivery progress for this long: something was lost


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    redis_url = services.redis_url()
    with services.fresh_postgres_database() as database_url, services.redis_prefix() as prefix:
        running = start_live_server(
            tmp_path_factory.mktemp("load"),
            env={
                "REDIS_URL": redis_url,
                "DATABASE_URL": database_url,
                "CHAT_REDIS_PREFIX": prefix,
                "CHAT_LOG_LEVEL": "WARNING",  # 200 logins: no line per session
                **FAST_HASHING,
            },
            processes=2,
        )
        try:
            yield running
        finally:
            running.stop()


class Member:
    """One client and what it has seen of lobby: (msg_id, sender, text) in arrival order."""

    def __init__(self, name: str, client: AsyncChatClient) -> None:
        self.name = name
        self.client = client
        self.seen: list[tuple[int, str, str]] = []
        self.acked: list[tuple[int, str]] = []  # (msg_id, text) of its own, in sending order
        client.on_push = self._push

    def _push(self, message: dict) -> None:
        if message["type"] == "message" and message["room"] == "lobby":
            self.seen.append((message["msg_id"], message["from"], message["text"]))


async def join(cluster, names: list[str]) -> list[Member]:
    members: list[Member] = []
    for start in range(0, len(names), CONNECT_BATCH):
        batch = names[start : start + CONNECT_BATCH]

        async def one(index: int, name: str) -> Member:
            server = cluster.servers[index % len(cluster.servers)]
            client = await AsyncChatClient.connect(server.url, server.origin, server.fingerprint)
            await client.login(name, PASSWORD)
            return Member(name, client)

        members += await asyncio.gather(*(one(start + i, n) for i, n in enumerate(batch)))
    return members


async def send_all(members: list[Member]) -> None:
    """Every member sends MESSAGES texts "<name>:<k>", paced by the slowest receiver."""
    acked_total = 0

    def slowest() -> int:
        return min(len(member.seen) for member in members)

    async def wait_for_room() -> None:
        deadline = time.monotonic() + STALL_SECONDS
        while acked_total - slowest() >= WINDOW:
            if time.monotonic() > deadline:
                behind = sorted(members, key=lambda m: len(m.seen))[:3]
                raise AssertionError(
                    f"deliveries stalled: {acked_total} acked, slowest members "
                    f"{[(m.name, len(m.seen)) for m in behind]}; {shortfall(members)}"
                )
            await asyncio.sleep(0.01)

    async def sender(member: Member) -> None:
        nonlocal acked_total
        for k in range(MESSAGES):
            await wait_for_room()
            text = f"{member.name}:{k}"
            answer = await member.client.request({"type": "send", "room": "lobby", "text": text})
            assert answer["type"] == "ack", answer
            member.acked.append((answer["msg_id"], text))
            acked_total += 1

    await asyncio.gather(*(sender(member) for member in members))


async def delivered(members: list[Member], expected: int) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while any(len(member.seen) < expected for member in members):
        if time.monotonic() > deadline:
            raise AssertionError(f"after {SETTLE_SECONDS} s: {shortfall(members)}")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive meanwhile


def shortfall(members: list[Member]) -> str:
    """Which acked messages which members lack: the story of a failed run."""
    senders = {msg_id: (m.name, text) for m in members for msg_id, text in m.acked}
    lacking: dict[int, int] = defaultdict(int)
    for member in members:
        for msg_id in senders.keys() - {msg_id for msg_id, _, _ in member.seen}:
            lacking[msg_id] += 1
    worst = sorted(lacking.items())[:10]
    return (
        f"{len(lacking)} acked messages missing somewhere; "
        f"(msg_id, sender, text, members lacking it): "
        f"{[(i, *senders[i], n) for i, n in worst]}"
    )


def check_every_member(members: list[Member]) -> dict[int, tuple[str, str]]:
    """The exact account; returns every acked message by msg_id."""
    acked: dict[int, tuple[str, str]] = {}
    order: dict[str, list[int]] = {}
    for member in members:
        ids = [msg_id for msg_id, _ in member.acked]
        assert ids == sorted(ids), f"{member.name}'s acks came with decreasing msg_id"
        order[member.name] = ids
        for msg_id, text in member.acked:
            acked[msg_id] = (member.name, text)
    assert len(acked) == len(members) * MESSAGES, "two acks carried the same msg_id"
    for member in members:
        ids = [msg_id for msg_id, _, _ in member.seen]
        duplicates = len(ids) - len(set(ids))
        assert duplicates == 0, f"{member.name} got {duplicates} messages twice"
        seen = {msg_id: (sender, text) for msg_id, sender, text in member.seen}
        assert seen == acked, f"{member.name}: missing {sorted(acked.keys() - seen.keys())[:5]}, "
        f"unexpected {sorted(seen.keys() - acked.keys())[:5]}"
        by_sender: dict[str, list[int]] = defaultdict(list)
        for msg_id, sender, _ in member.seen:
            by_sender[sender].append(msg_id)
        for sender, received in by_sender.items():
            assert received == order[sender], f"{member.name} got {sender}'s messages out of order"
    return acked


def server_errors(cluster) -> str:
    """The distinct errors the servers logged: the other half of a failure's story."""
    seen: dict[str, None] = {}
    for server in cluster.servers:
        for line in server.log().splitlines():
            if "Error" in line and not line.startswith(" "):
                seen.setdefault(re.sub(r"^\d{4}-\d\d-\d\d \S+ ", "", line)[:200], None)
    return "; ".join(list(seen)[:8]) or "none"


async def test_every_acked_message_reaches_every_member_once_in_order_and_is_stored_once(cluster):
    names = [f"member{n:03d}" for n in range(CLIENTS)]
    await asyncio.to_thread(create_accounts, cluster.servers[0], names)
    started = time.perf_counter()
    members = await join(cluster, names)
    joined = time.perf_counter()
    try:
        await send_all(members)
        await delivered(members, CLIENTS * MESSAGES)
        finished = time.perf_counter()
        acked = check_every_member(members)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nthe servers logged: {server_errors(cluster)}") from None
    finally:
        await asyncio.gather(*(member.client.close() for member in members))
    stored = await asyncio.to_thread(room_history, cluster.servers[1], names[0])
    assert len(stored) == len(acked), f"{len(stored)} stored for {len(acked)} acknowledged"
    assert {m["msg_id"]: (m["from"], m["text"]) for m in stored} == acked
    print(
        f"{CLIENTS} clients joined in {joined - started:.1f} s; {len(acked)} messages, "
        f"{len(acked) * CLIENTS} deliveries in {finished - joined:.1f} s "
        f"({len(acked) * CLIENTS / (finished - joined):.0f} deliveries/s)"
    )
