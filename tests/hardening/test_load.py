"""Load with an exact account (issue 7, item 7): every acked message, everywhere, exactly once.

``CHAT_LOAD_CLIENTS`` clients (200) each send ``CHAT_LOAD_MESSAGES`` messages
(100) to ``lobby`` through two server processes sharing Redis and PostgreSQL:
20,000 messages, 4,000,000 deliveries. The clients are
:class:`~tests.hardening.lean_client.LeanSession` objects in this process (the
record layer and JSON, without per-record tasks or events): with
:class:`~tests.protocol_client.aio.AsyncClient` the clients' Python made
the run several times longer. The checker, not a stopwatch, decides:

- every acknowledged message reaches every client (all are online members of
  lobby) exactly once, and nothing else does;
- each sender's messages arrive at every client in the order they were sent,
  with the ``msg_id`` of their ``ack``;
- the database holds each exactly once, with its text (read back with ``history``).

Each delivery is checked as it arrives, without keeping it: member ``m`` expects
sender ``s``'s next message to read ``"s:<k>"`` where ``k`` is the number of
``s``'s messages ``m`` already has, and keeps only its ``msg_id``. A duplicate, a
reordering or a gap breaks that expectation (kept as a surprise, and the test
fails); at the end each member's ``msg_id``\\ s per sender must equal the sender's
acknowledged ones, in order.

The sends are paced by the deliveries, not by a clock: a message is sent only
while fewer than ``WINDOW`` messages are sent but not yet delivered to the
slowest client, so the run adapts to the machine and the servers' queues stay
short. Each client has one message in flight at a time. The window must stay
well under what the servers fan out in a minute on a slow machine: channels_redis
drops a layer message after 60 s in a queue (``expiry``), an acknowledged message
then never arrives, and this test says so (with a window of 240 on a starved
2-core machine, about 50 s of fan-out, a member missed a message: most likely that).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from array import array
from collections import deque
from typing import Any

import pytest

from tests import services
from tests.hardening.helpers import FAST_HASHING, PASSWORD, create_accounts, room_history
from tests.hardening.lean_client import LeanSession
from tests.live_server import start_live_server

pytestmark = [pytest.mark.services, pytest.mark.slow]  # starts daphne processes

CLIENTS = int(os.environ.get("CHAT_LOAD_CLIENTS", "200"))
MESSAGES = int(os.environ.get("CHAT_LOAD_MESSAGES", "100"))
WINDOW = int(os.environ.get("CHAT_LOAD_WINDOW", "60"))  # sent, not yet at the slowest client
PACE_SECONDS = 0.005  # how often the pacer looks at the slowest client
CONNECT_BATCH = 25  # handshakes at a time (RSA decryption runs on the servers' event loops)
SETTLE_SECONDS = 60.0  # bounds a hung run; never a timing assertion
STALL_SECONDS = 60.0  # no delivery progress for this long: something was lost
SURPRISES_KEPT = 10
# pytest's 300 s per test is too short for 4,000,000 deliveries on a busy 2-core machine; this
# bounds a hung run (the stall check above fails sooner), assuming at least 1,000 deliveries/s.
RUN_TIMEOUT = 300 + CLIENTS * CLIENTS * MESSAGES // 1000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    redis_url = services.redis_url()
    with (
        services.fresh_postgres_database() as database_url,
        services.redis_prefix() as prefix,
        start_live_server(
            tmp_path_factory.mktemp("load"),
            env={
                "REDIS_URL": redis_url,
                "DATABASE_URL": database_url,
                "CHAT_REDIS_PREFIX": prefix,
                "CHAT_LOG_LEVEL": "WARNING",  # 200 logins: no line per session
                **FAST_HASHING,
            },
            processes=2,
        ) as running,
    ):
        yield running


class Member:
    """One client: what it sent and had acknowledged, and what it received of lobby."""

    def __init__(self, name: str, names: list[str], run: Run) -> None:
        self.name = name
        self.run = run
        self.session: LeanSession | None = None
        self.sent = 0  # messages sent (each is acknowledged before the next is sent)
        self.acked: list[int] = []  # msg_id of its k-th message at index k
        self.received: dict[str, array] = {sender: array("q") for sender in names}
        self.count = 0  # lobby messages received as expected
        self.surprises: list[str] = []  # what broke the expectations, first few
        self.surprise_count = 0
        self._login: asyncio.Future | None = None

    def on_message(self, message: dict[str, Any]) -> None:
        """Every message the session opens, checked on arrival (the hot path)."""
        kind = message["type"]
        if kind == "message":
            sender = message["from"]
            ids = self.received.get(sender)
            if (
                ids is not None
                and message["room"] == "lobby"
                and message["text"] == f"{sender}:{len(ids)}"
            ):
                ids.append(message["msg_id"])
                self.count += 1
            else:  # a stranger, another room, a duplicate, a reordering or a gap
                self.surprise(  # test texts only: "<sender>:<k>"
                    f"msg_id {message.get('msg_id')} from {sender!r} in {message.get('room')!r}"
                    f" with text {message.get('text', '')[:40]!r} after"
                    f" {len(ids) if ids is not None else '-'} of theirs"
                )
        elif "ref" in message:
            if self._login is not None and not self._login.done():
                self._login.set_result(message)
            elif kind == "ack":
                self.acked.append(message["msg_id"])
                self.run.acknowledged(self)
            else:
                self.surprise(f"answer {kind} ({message.get('code')}) to message {self.sent}")

    def surprise(self, what: str) -> None:
        self.surprise_count += 1
        if len(self.surprises) < SURPRISES_KEPT:
            self.surprises.append(what)

    async def join(self, server) -> None:
        self.session = await LeanSession.connect(
            server.url, server.origin, server.fingerprint, self.on_message
        )
        self._login = asyncio.get_running_loop().create_future()
        self.session.send(
            {"type": "login", "id": "login", "username": self.name, "password": PASSWORD}
        )
        answer = await asyncio.wait_for(self._login, SETTLE_SECONDS)
        assert answer["type"] == "login_ok", f"login as {self.name} failed: {answer['type']}"

    def send_next(self) -> None:
        assert self.session is not None
        text = f"{self.name}:{self.sent}"
        self.session.send({"type": "send", "id": f"s{self.sent}", "room": "lobby", "text": text})
        self.sent += 1


class Run:
    """The members, and the pacing: who may send now."""

    def __init__(self, names: list[str]) -> None:
        self.members = [Member(name, names, self) for name in names]
        self.total = len(names) * MESSAGES
        self.ready: deque[Member] = deque(self.members)  # no message in flight, some left
        self.in_flight = 0
        self.acked_total = 0

    def acknowledged(self, member: Member) -> None:
        self.in_flight -= 1
        self.acked_total += 1
        if member.sent < MESSAGES:
            self.ready.append(member)

    def slowest(self) -> int:
        return min(member.count for member in self.members)

    def check_sessions(self) -> None:
        for member in self.members:
            session = member.session
            assert session is not None
            if session.failure is not None:
                raise AssertionError(f"{member.name}'s session failed: {session.failure!r}")
            if session.closed is not None:
                raise AssertionError(f"{member.name}'s session closed ({session.closed})")
            if member.surprise_count:
                raise AssertionError(
                    f"{member.name} got {member.surprise_count} unexpected messages: "
                    f"{member.surprises}; {self.shortfall()}"
                )

    async def join(self, cluster) -> None:
        servers = cluster.servers
        for start in range(0, len(self.members), CONNECT_BATCH):
            batch = self.members[start : start + CONNECT_BATCH]
            await asyncio.gather(
                *(m.join(servers[(start + i) % len(servers)]) for i, m in enumerate(batch))
            )

    async def send_all(self) -> None:
        """Every member sends MESSAGES texts "<name>:<k>", paced by the slowest receiver."""
        progress, last_progress, last_check = (-1, -1), time.monotonic(), 0.0
        while self.acked_total < self.total:
            slowest = self.slowest()
            budget = slowest + WINDOW - self.acked_total - self.in_flight
            while budget > 0 and self.ready:
                self.ready.popleft().send_next()
                self.in_flight += 1
                budget -= 1
            now = time.monotonic()
            if now - last_check > 0.1:  # not at every turn: it walks all the members
                last_check = now
                self.check_sessions()
            if (slowest, self.acked_total) != progress:
                progress, last_progress = (slowest, self.acked_total), now
            elif now - last_progress > STALL_SECONDS:
                raise AssertionError(
                    f"no progress for {STALL_SECONDS} s: {self.acked_total} acked, "
                    f"{self.in_flight} unanswered, slowest member at {slowest}; "
                    f"{self.shortfall()}"
                )
            await asyncio.sleep(PACE_SECONDS)

    async def delivered(self) -> None:
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.slowest() < self.total:
            self.check_sessions()
            if time.monotonic() > deadline:
                raise AssertionError(f"after {SETTLE_SECONDS} s: {self.shortfall()}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive meanwhile
        self.check_sessions()

    def shortfall(self) -> str:
        """Which members lack how many messages of whom: the story of a failed run."""
        behind = sorted(self.members, key=lambda m: m.count)[:3]
        story = []
        for member in behind:
            lacking = [
                (sender.name, len(sender.acked) - len(member.received[sender.name]))
                for sender in self.members
                if len(member.received[sender.name]) < len(sender.acked)
            ]
            story.append(f"{member.name} has {member.count}, lacks (sender, n) {lacking[:5]}")
        return f"{self.acked_total} acked; " + "; ".join(story)

    def check(self) -> dict[int, tuple[str, str]]:
        """The exact account; returns every acked message by msg_id: (sender, text)."""
        acked: dict[int, tuple[str, str]] = {}
        for member in self.members:
            ids = member.acked
            assert len(ids) == MESSAGES, f"{member.name} had {len(ids)} acks"
            increasing = all(a < b for a, b in itertools.pairwise(ids))
            assert increasing, f"{member.name}'s acks came with decreasing msg_ids"
            for k, msg_id in enumerate(ids):
                acked[msg_id] = (member.name, f"{member.name}:{k}")
        assert len(acked) == self.total, "two acks carried the same msg_id"
        expected = {member.name: array("q", member.acked) for member in self.members}
        for member in self.members:
            assert member.surprise_count == 0, f"{member.name}: {member.surprises}"
            for sender, ids in member.received.items():
                assert ids == expected[sender], (
                    f"{member.name} got {sender}'s messages {list(ids[:5])}... "
                    f"({len(ids)}), acked {list(expected[sender][:5])}... "
                    f"({len(expected[sender])})"
                )
        return acked


def cpu_seconds(cluster) -> tuple[float, float]:
    """CPU seconds used so far by this process (the clients) and by the servers together.

    For the printed account only: on a shared machine the wall time says little, the CPU
    per delivery says what the run costs (never asserted).
    """
    clients = time.process_time()
    servers = 0.0
    for server in cluster.servers:
        try:
            with open(f"/proc/{server.process.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
            servers += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError, ValueError):
            return clients, float("nan")
    return clients, servers


def server_errors(cluster) -> str:
    """The distinct errors the servers logged: the other half of a failure's story."""
    seen: dict[str, None] = {}
    for server in cluster.servers:
        for line in server.log().splitlines():
            if "Error" in line and not line.startswith(" "):
                seen.setdefault(re.sub(r"^\d{4}-\d\d-\d\d \S+ ", "", line)[:200], None)
    return "; ".join(list(seen)[:8]) or "none"


@pytest.mark.timeout(RUN_TIMEOUT)
async def test_every_acked_message_reaches_every_member_once_in_order_and_is_stored_once(cluster):
    names = [f"member{n:03d}" for n in range(CLIENTS)]
    await asyncio.to_thread(create_accounts, cluster.servers[0], names)
    run = Run(names)
    started = time.perf_counter()
    try:
        await run.join(cluster)
        joined = time.perf_counter()
        cpu_before = cpu_seconds(cluster)
        await run.send_all()
        await run.delivered()
        finished = time.perf_counter()
        cpu_after = cpu_seconds(cluster)
        acked = run.check()
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nthe servers logged: {server_errors(cluster)}") from None
    finally:
        await asyncio.gather(*(m.session.close() for m in run.members if m.session is not None))
    stored = await asyncio.to_thread(room_history, cluster.servers[1], names[0])
    assert len(stored) == len(acked), f"{len(stored)} stored for {len(acked)} acknowledged"
    assert {m["msg_id"]: (m["from"], m["text"]) for m in stored} == acked
    deliveries = len(acked) * CLIENTS
    clients_cpu, servers_cpu = (
        after - before for after, before in zip(cpu_after, cpu_before, strict=True)
    )
    print(
        f"{CLIENTS} clients joined in {joined - started:.1f} s; {len(acked)} messages, "
        f"{deliveries} deliveries in {finished - joined:.1f} s "
        f"({deliveries / (finished - joined):.0f} deliveries/s); CPU per delivery: "
        f"clients {clients_cpu / deliveries * 1e6:.0f} us, "
        f"servers {servers_cpu / deliveries * 1e6:.0f} us"
    )
