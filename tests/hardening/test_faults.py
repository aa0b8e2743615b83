"""Faults (issue 7, item 6): Redis restarts, a server or a client killed, the database gone.

Real daphne processes (``tests/live_server.py``) and the desktop client's own
session layer (``tests/hardening/people.py``), which reconnects by itself. The
promise checked each time: the servers live on, the clients come back without
help, and every message the server acknowledged is stored (read back through
``history``) exactly once, and reaches the other side live once things work
again.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import psycopg
import pytest

from chatproto.framing import FileChunk
from chatproto.limits import MAX_CHUNK_SIZE
from chatproto.transfer import IncomingTransfer, OutgoingTransfer, new_transfer_id
from tests import services
from tests.hardening.helpers import FAST_HASHING, PASSWORD, create_accounts, room_history
from tests.hardening.people import Person
from tests.hardening.redis_server import PrivateRedis
from tests.live_server import PROJECT_DIR, start_live_server
from tests.protocol_client.sync import connect
from tk_client.events import Phase, RequestState
from tk_client.files.sink import Download

pytestmark = pytest.mark.slow  # starts daphne processes


def texts_by_id(messages: list[dict]) -> dict[int, str]:
    return {message["msg_id"]: message["text"] for message in messages}


def assert_stored_exactly_once(server, acked: dict[int, str]) -> list[dict]:
    stored = room_history(server, "alice")
    ids = [message["msg_id"] for message in stored]
    assert len(ids) == len(set(ids)), "a message is stored twice"
    by_id = texts_by_id(stored)
    missing = {msg_id: text for msg_id, text in acked.items() if by_id.get(msg_id) != text}
    assert not missing, f"acknowledged but not stored: {missing}"
    texts = [message["text"] for message in stored]
    assert len(texts) == len(set(texts)), "a message was stored twice (sent again?)"
    return stored


@contextlib.contextmanager
def people(home, *who):
    """Log each (name, server) in with the desktop client's session; closed afterwards."""
    opened = []
    try:
        for name, server in who:
            person = Person(name, server.url, server.fingerprint, home)
            opened.append(person)
            person.log_in()
        yield opened
    finally:
        for person in opened:
            person.close()


# --- Redis ---------------------------------------------------------------------------------------


@pytest.mark.services
def test_a_redis_restart_loses_no_acked_message_and_everyone_comes_back(tmp_path):
    with (
        PrivateRedis(tmp_path) as redis,
        services.fresh_postgres_database() as database_url,
        start_live_server(
            tmp_path / "servers",
            env={"REDIS_URL": redis.url, "DATABASE_URL": database_url, **FAST_HASHING},
            processes=2,
        ) as cluster,
    ):
        create_accounts(cluster[0], ["alice", "bob"])
        with people(tmp_path, ("alice", cluster[0]), ("bob", cluster[1])) as (alice, bob):
            first = alice.say("before the restart")
            alice.wait_until(lambda: first in alice.answers, what="an ack")
            bob.wait_until(lambda: alice.acked().keys() <= set(bob.heard_ids()))

            redis.stop()
            during = alice.say("typed while Redis was down")
            redis.start()

            # Both reconnect and log in again by themselves (the sessions dropped).
            alice.wait_until(lambda: alice.logins >= 2, what="a new login")
            bob.wait_until(lambda: bob.logins >= 2, what="a new login")
            alice.wait_until(alice.settled, what="the outbox settled")
            after = alice.say("after the restart")
            alice.wait_until(lambda: after in alice.answers, what="an ack")
            reply = bob.say("bob after the restart")
            bob.wait_until(lambda: reply in bob.answers, what="an ack")

            # Live delivery works again, across the two processes, both ways.
            acked = alice.acked()
            bob.wait_until(lambda: max(acked) in bob.heard_ids(), what="alice's message live")
            alice.wait_until(
                lambda: max(bob.acked()) in alice.heard_ids(), what="bob's message live"
            )
            assert during in alice.requests
            assert_stored_exactly_once(cluster[0], {**acked, **bob.acked()})
        assert all(server.process.poll() is None for server in cluster.servers)


# --- a server process killed ----------------------------------------------------------------------


def test_a_killed_server_restarts_and_every_acked_message_is_there(tmp_path):
    with start_live_server(tmp_path / "server", env=FAST_HASHING) as server:
        create_accounts(server, ["alice", "bob"])
        with people(tmp_path, ("alice", server), ("bob", server)) as (alice, bob):
            for n in range(30):
                alice.say(f"message {n}")  # all on the wire at once: the client pipelines
            alice.wait_until(lambda: len(alice.acked()) >= 10, what="10 acks")
            server.kill()  # SIGKILL, mid-stream: no clean-up of any kind
            alice.wait_until(lambda: alice.session.phase is not Phase.ONLINE, what="the drop")
            typed = alice.say("typed while the server was down")
            server.start()

            alice.wait_until(lambda: alice.logins >= 2, what="a new login")
            bob.wait_until(lambda: bob.logins >= 2, what="a new login")
            alice.wait_until(alice.settled, what="every message answered or failed")
            acked = alice.acked()
            assert alice.requests[typed].state is RequestState.DONE  # sent after the reconnect
            failed = [r for r in alice.requests.values() if r.id not in alice.answers]
            # What was on the wire at the kill is reported uncertain, never silently dropped.
            assert all(r.state is RequestState.FAILED and r.uncertain for r in failed), failed
            assert len(acked) + len(failed) == 31
            print(f"{len(acked)} acknowledged, {len(failed)} uncertain (on the wire at the kill)")
            stored = assert_stored_exactly_once(server, acked)
            # An uncertain one is there at most once (stored before the kill, or not at all).
            texts = [m["text"] for m in stored]
            for request in failed:
                assert texts.count(request.message["text"]) <= 1

            last = alice.say("after the restart")
            alice.wait_until(lambda: last in alice.answers, what="an ack")
            bob.wait_until(lambda: alice.answers[last]["msg_id"] in bob.heard_ids())


# --- the database unavailable for a moment --------------------------------------------------------


@contextlib.contextmanager
def database_unavailable(database_url: str):
    """No connections to the database (existing ones ended) until the block ends."""
    name = database_url.rsplit("/", 1)[1]
    admin = services.POSTGRES_URL.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            yield
        finally:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


@pytest.mark.services
def test_a_database_outage_is_answered_internal_and_the_server_lives_on(postgres_server):
    server = postgres_server
    create_accounts(server, ["dora"])
    with connect(server.url, server.origin, expected_fingerprint=server.fingerprint) as client:
        client.login("dora", PASSWORD)
        client.request({"type": "create_room", "room": "outage"})
        before = client.request({"type": "send", "room": "outage", "text": "before"})
        assert before["type"] == "ack"

        with database_unavailable(server.database_url):
            during = client.request({"type": "send", "room": "outage", "text": "during"})
            assert (during["type"], during["code"]) == ("error", "internal"), during
            assert "try again" in during["message"]
            history = client.request({"type": "history", "room": "outage"})
            assert (history["type"], history["code"]) == ("error", "internal")
            assert client.request({"type": "ping"})["type"] == "pong"  # no database needed
            with connect(server.url, server.origin, server.fingerprint) as newcomer:
                login = newcomer.request(
                    {"type": "login", "username": "dora", "password": PASSWORD}
                )
                assert (login["type"], login["code"]) == ("error", "internal"), login

        after = client.request({"type": "send", "room": "outage", "text": "after"})
        assert after["type"] == "ack", after
        stored = [m["text"] for m in room_history(server, "dora", "outage")]
        assert stored == ["before", "after"]
        assert server.process.poll() is None


# --- a client killed mid-transfer -----------------------------------------------------------------


@pytest.fixture(scope="module")
def transfer_server(tmp_path_factory):
    with start_live_server(tmp_path_factory.mktemp("transfers"), env=FAST_HASHING) as server:
        create_accounts(server, ["sam", "rita"])
        yield server


class Peer:
    """``tests/hardening/transfer_peer.py`` in a subprocess (from :meth:`start`), killed when
    the test says, and in any case when the ``with`` block ends."""

    def __init__(self, server, *arguments: str) -> None:
        self.command = [
            sys.executable, "-m", "tests.hardening.transfer_peer", arguments[0], server.url,
            server.origin, server.fingerprint, *arguments[1:],
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True
        )

    def wait_for(self, line: str) -> None:
        assert self.process is not None and self.process.stdout is not None
        for said in self.process.stdout:
            if said.strip() == line:
                return
        raise AssertionError(f"the peer exited ({self.process.wait()}) before saying {line!r}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # SIGKILL: no close frame, no clean-up
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def receive_into(client, folder):
    """Accept the next offer with the desktop client's Download (a file in ``folder``)."""
    download = Download(IncomingTransfer.from_offer(client.find("file_offer")), folder / "f")
    for event in download.accept():
        client.send(event.message)
    return download


def test_a_sender_killed_mid_transfer_is_reported_and_nothing_is_left(transfer_server, tmp_path):
    server, transfer = transfer_server, new_transfer_id()
    with (
        connect(server.url, server.origin, server.fingerprint) as rita,
        Peer(server, "send", "sam", "rita", transfer) as sender,
    ):
        rita.login("rita", PASSWORD)
        sender.start()
        download = receive_into(rita, tmp_path)
        written = 0
        while written < 3:
            item = rita.recv_item()
            if isinstance(item, FileChunk):
                for event in download.handle_chunk(item):
                    rita.send(event.message)
                written += 1
        sender.wait_for("progress 2")
        sender.kill()

        cancel = rita.find("file_cancel")
        assert cancel == {"type": "file_cancel", "transfer": transfer, "reason": "disconnected"}
        download.handle(cancel)
        assert list(tmp_path.iterdir()) == []  # no partial file, not even the hidden one
        # The server kept nothing of it: the same transfer id is free for a new offer.
        with connect(server.url, server.origin, server.fingerprint) as sam:
            sam.login("sam", PASSWORD)
            again = OutgoingTransfer(
                to="rita", name="x", size=1, sha256="0" * 64, transfer=transfer
            )
            assert sam.request(again.offer())["type"] == "ok"


def test_a_recipient_killed_mid_transfer_is_reported_and_no_file_is_kept(transfer_server, tmp_path):
    server, transfer = transfer_server, new_transfer_id()
    with (
        connect(server.url, server.origin, server.fingerprint) as sam,
        Peer(server, "receive", "rita", str(tmp_path)) as recipient,
    ):
        sam.login("sam", PASSWORD)
        recipient.start()
        recipient.wait_for("ready")
        outgoing = OutgoingTransfer(
            to="rita", name="report.pdf", size=10 * MAX_CHUNK_SIZE, sha256="0" * 64,
            transfer=transfer,
        )  # fmt: skip
        assert sam.request(outgoing.offer())["type"] == "ok"
        outgoing.receive(sam.find("file_accept"))
        for index in range(3):
            (event,) = outgoing.chunk(bytes([index]) * MAX_CHUNK_SIZE)
            sam.send_chunk(event.chunk)
        recipient.wait_for("progress 2")
        recipient.kill()

        cancel = sam.find("file_cancel")
        assert cancel == {"type": "file_cancel", "transfer": transfer, "reason": "disconnected"}
        # No file by the offered name (the hidden temporary one cannot clean up after SIGKILL).
        assert not (tmp_path / "report.pdf").exists()
        left = [path.name for path in tmp_path.iterdir()]
        assert all(name.startswith(".") and name.endswith(".part") for name in left), left
        print(f"left by the killed client: {left}")
        with connect(server.url, server.origin, server.fingerprint) as rita:
            rita.login("rita", PASSWORD)
            again = OutgoingTransfer(
                to="rita", name="x", size=1, sha256="0" * 64, transfer=transfer
            )
            assert sam.request(again.offer())["type"] == "ok"
