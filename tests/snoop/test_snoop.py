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

import base64
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from chatproto.e2e_files import PIECE_SIZE, TAG_SIZE, ChunkCipher
from tests import services
from tests.live_server import start_live_server
from tests.tk_client.e2e_peers import FilePeer, FileView, Peer, all_backed_up, pump
from tests.tk_client.test_e2e_clients_live import approve, approved
from tk_client.chat_state import Pending
from tk_client.controller import ChatController
from tk_client.e2e.backup import BackupStatus
from tk_client.files.e2e_cipher import SealedUpload
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


def snooped_bytes(snooped: dict) -> dict[str, bytes]:
    """The snooped plaintexts by kind, as the bytes they were (each line's newlines
    written as ``\\n``: search with :func:`as_recorded`)."""
    data_dir: Path = snooped["data_dir"]
    lines = [
        line
        for p in sorted(data_dir.glob(snooped["snoop_file"].name + ".*"))
        for line in p.read_bytes().split(b"\n")
    ]
    return {
        where: b"\n".join(line for line in lines if line.startswith(prefix.encode()))
        for prefix, where in SNOOPED.items()
    }


def as_recorded(data: bytes) -> bytes:
    """``data`` as sitecustomize writes it down (a newline as ``\\n``)."""
    return data.replace(b"\n", b"\\n")


def everything_the_server_had(snooped: dict) -> dict[str, str]:
    """Each place a secret could leak to, as text (the snooped plaintexts by kind)."""
    seen = {
        where: data.decode("utf-8", "replace") for where, data in snooped_bytes(snooped).items()
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

    def person(name: str, device: str, server: int = 0, kind: type[Peer] = Peer) -> Peer:
        peer = kind(cluster.servers[server], tmp_path / f"{name}-{device}", name, device)
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


# --- end-to-end files (protocol.md 4.12) ----------------------------------------------------

FILE_NAME = "zephyr-merger-terms-7731.pdf"
FILE_SECRET = b"strike-price-is-93-per-share-confidential;"  # ASCII: survives every text dump
FILE_SIZE = 200_000  # four pieces of 65,520 bytes: several chunks, several windows of them


def secret_file(folder: Path) -> tuple[Path, bytes]:
    """A file with a distinctive name whose content is ``FILE_SECRET`` repeated, with
    random blocks between the runs: each chunk holds both."""
    content = b""
    while len(content) < FILE_SIZE:
        content += FILE_SECRET * 40 + os.urandom(700)
    content = content[:FILE_SIZE]
    path = folder / FILE_NAME
    path.write_bytes(content)
    return path, content


def file_windows(content: bytes) -> tuple[list[bytes], list[bytes]]:
    """16-byte slices of ``content`` to look for: printable ones (the secret's run, cut
    at several places), which every dump keeps as they are, and random ones, one in each
    piece, which only the snooped bytes keep intact."""
    text = [FILE_SECRET] + [(FILE_SECRET * 2)[start : start + 16] for start in (0, 7, 19, 33)]
    assert all(window in content for window in text)
    binary = []
    for piece in range(0, len(content), PIECE_SIZE):
        run = content.index(FILE_SECRET * 40, piece) + len(FILE_SECRET) * 40  # random after it
        binary.append(content[run + 100 : run + 116])
    return text, binary


def file_leaks(snooped: dict, content: bytes) -> dict[str, list[str]]:
    """Where the server had the file's name or any of the windows of its content (empty:
    nowhere). The check of both the clean transfer and the broken build."""
    seen = everything_the_server_had(snooped)
    raw = snooped_bytes(snooped)
    text, binary = file_windows(content)
    leaks: dict[str, list[str]] = {}
    for what, needles in [
        ("the file's name", [FILE_NAME, FILE_NAME.removesuffix(".pdf")]),
        ("the file's bytes", [w.decode() for w in text] + [w.hex() for w in text + binary]),
    ]:
        found = [where for where, dump in seen.items() if any(n in dump for n in needles)]
        if what == "the file's bytes":
            found += [
                where
                for where, data in raw.items()
                if any(as_recorded(w) in data for w in text + binary) and where not in found
            ]
        if found:
            leaks[what] = found
    return leaks


def set_up(*peers: Peer) -> None:
    """Drive ``peers`` until each device is approved and the server has answered all it
    sent: a device is approved before its signed keys are uploaded, and a message sent to
    a user whose upload is still on its way is shared with none of that user's devices."""
    pump(
        peers,
        lambda: approved(*peers)() and not any(p.session.pending() for p in peers),
        "devices set up",
    )


def file_ended(peer: FilePeer, transfer: str) -> Callable[[], bool]:
    transfers = cast(FileView, peer.view).transfers
    return lambda: transfer in transfers and transfers[transfer].over


@pytest.mark.parametrize("servers", [(0, 1), (0, 0)], ids=["across-processes", "on-one-process"])
def test_the_server_sees_neither_the_name_nor_the_bytes_of_an_end_to_end_file(
    snooped, people, tmp_path, servers
):
    person, accounts = people
    alice_name, bob_name = accounts("alice", "bob")
    alice = cast(FilePeer, person(alice_name, "laptop", servers[0], FilePeer))
    bob = cast(FilePeer, person(bob_name, "laptop", servers[1], FilePeer))
    set_up(alice, bob)
    alice.controller.submit(PUBLIC_CANARY)
    pump([alice, bob], lambda: (alice_name, PUBLIC_CANARY) in bob.lines(room_key("lobby")), "lobby")
    source, content = secret_file(tmp_path)

    assert alice.controller.send_file(bob_name, str(source))
    pump([alice, bob], lambda: bool(cast(FileView, bob.view).offers), "the offer shown to bob")
    offer = cast(FileView, bob.view).offers[0]
    assert (offer.name, offer.size, offer.end_to_end) == (FILE_NAME, FILE_SIZE, True)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bob.manager.accept_into(offer.transfer, inbox)
    pump([alice, bob], file_ended(alice, offer.transfer), "the transfer over for alice")
    pump([alice, bob], file_ended(bob, offer.transfer), "the transfer over for bob")
    assert (inbox / FILE_NAME).read_bytes() == content

    seen = everything_the_server_had(snooped)
    assert_every_source_is_observed(seen, snooped, alice_name)
    # The transfer itself was observed: its steps in the records, and each of its chunks
    # (which start with the transfer's 16 bytes) into and out of a server.
    raw = snooped_bytes(snooped)
    chunk_header = as_recorded(bytes.fromhex(offer.transfer))
    pieces = len(range(0, FILE_SIZE, PIECE_SIZE))
    assert offer.transfer in seen[SNOOPED["record"]]
    assert raw[SNOOPED["record"]].count(chunk_header) >= 2 * pieces
    if servers[0] != servers[1]:  # the chunks crossed the channel layer
        assert raw[SNOOPED["layer"]].count(chunk_header) >= pieces
    assert file_leaks(snooped, content) == {}


def test_a_client_that_sends_a_file_in_the_clear_is_caught(snooped, people, tmp_path, monkeypatch):
    person, accounts = people
    alice_name, bob_name = accounts("alice", "bob")
    alice = cast(FilePeer, person(alice_name, "laptop", 0, FilePeer))
    bob = cast(FilePeer, person(bob_name, "laptop", 1, FilePeer))
    set_up(alice, bob)

    def plain_offer(self: SealedUpload, id: str | None = None, *, e2e: object = None) -> dict:
        """The broken build: a 3.3 offer, with the name, instead of the sealed one."""
        return self.outgoing.offer(id)

    def plain_chunk(self: ChunkCipher, index: int, piece: bytes | memoryview) -> bytes:
        """...and each piece as it is, with a tag of zeros."""
        return bytes(piece) + bytes(TAG_SIZE)

    monkeypatch.setattr(SealedUpload, "offer", plain_offer)
    monkeypatch.setattr(ChunkCipher, "encrypt", plain_chunk)
    source, content = secret_file(tmp_path)
    assert alice.controller.send_file(bob_name, str(source))
    pump(
        [alice, bob], lambda: bool(cast(FileView, bob.view).offers), "the plain offer shown to bob"
    )
    offer = cast(FileView, bob.view).offers[0]
    assert offer.name == FILE_NAME and not offer.end_to_end
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bob.manager.accept_into(offer.transfer, inbox)
    pump([alice, bob], file_ended(alice, offer.transfer), "the leaky transfer over")

    leaks = file_leaks(snooped, content)
    for what in ("the file's name", "the file's bytes"):
        assert SNOOPED["record"] in leaks[what] and SNOOPED["layer"] in leaks[what], leaks


# --- the key backup (protocol.md 4.13) ------------------------------------------------------

BACKED_UP_SECRET = "the-safe-is-behind-the-blue-painting"


def test_the_server_holds_no_key_of_the_backup_and_a_new_device_restores_through_it(
    snooped, people
):
    person, accounts = people
    alice_name, bob_name = accounts("alice", "bob")
    laptop = person(alice_name, "laptop", 0)
    bob = person(bob_name, "laptop", 1)
    set_up(laptop, bob)
    laptop.controller.submit(PUBLIC_CANARY)
    laptop.controller.submit(f"/pm {bob_name} {BACKED_UP_SECRET}")
    pump(
        [laptop, bob],
        lambda: (alice_name, BACKED_UP_SECRET) in bob.lines(pm_key(alice_name)),
        "bob reads",
    )
    pump([laptop, bob], lambda: laptop.link.backup_status is BackupStatus.NONE, "no backup yet")

    recovery_key = laptop.controller.begin_backup_setup()
    laptop.controller.finish_backup_setup(recovery_key.lower())
    sessions = laptop.link.store.groups.inbound
    pump([laptop, bob], lambda: all_backed_up(laptop), "the backup on, and every session uploaded")
    session_keys = []
    for entry in sessions.values():
        exported = entry.session.export_at(entry.session.first_known_index)
        assert exported is not None
        session_keys.append(exported.to_base64())
    assert session_keys  # at least the laptop's own session of the conversation
    backup_key = laptop.link.store.backup.key
    assert backup_key is not None and laptop.link.store.identity is not None
    user_key = laptop.link.store.identity.private_b64()
    laptop.close()  # lost: only the recovery key is left

    phone = person(alice_name, "phone", 1)
    pump(
        [phone, bob],
        lambda: (
            phone.controller.e2e is not None and phone.link.backup_status is BackupStatus.NEEDS_KEY
        ),
        "the new device needs the recovery key",
    )
    phone.controller.restore_with_recovery_key(recovery_key)
    phone.controller.select(pm_key(bob_name))
    phone.controller.load_older()
    pump(
        [phone, bob],
        lambda: (alice_name, BACKED_UP_SECRET) in phone.lines(pm_key(bob_name)),
        "the new device reads the old message",
    )

    seen = everything_the_server_had(snooped)
    assert_every_source_is_observed(seen, snooped, alice_name)
    for _, _, session_id in sessions:  # the blobs were stored, by session id (as bytea)
        assert session_id.encode().hex() in seen["the database"]
    compact = recovery_key.replace(" ", "")
    keys = {
        "the recovery key": [recovery_key, compact, compact.lower(), recovery_key.lower()],
        "a Megolm session key": session_keys,
        "the backup key": [
            encoded
            for raw in (backup_key.private_key, backup_key.mac_key)
            for encoded in (base64.b64encode(raw).decode().rstrip("="), raw.hex())
        ],
        "the user key": [user_key],
        "the message": [BACKED_UP_SECRET],
    }
    for where, text in seen.items():
        for what, secrets in keys.items():
            assert not any(secret in text for secret in secrets), f"{what} leaked into {where}"
