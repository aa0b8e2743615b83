"""File transfers between two clients through the real server (daphne in a subprocess).

Each side is a real :class:`ChatSession` with its :class:`TransferManager`, as
both clients build them; the test plays the user (offer, accept, decline,
cancel) and reads what the user interface would be told. To stop a transfer
mid-way without racing it, :class:`AckGate` holds the recipient's
acknowledgements after the first few: the sender cannot go beyond the window
of 16 unacknowledged chunks, so the transfer waits, half-written, for the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import subprocess
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatproto.limits import MAX_CHUNK_SIZE
from tests.conftest import _NoSettingsToChange
from tests.live_server import start_live_server
from tk_client.events import LoggedIn, Received, RequestUpdate
from tk_client.files import (
    FileOffered,
    FileSource,
    TransferChanged,
    TransferError,
    TransferInfo,
    TransferManager,
    TransferState,
    worker,
)
from tk_client.secure_files import FILES_NEED_A_DEVICE, PLAIN_OFFER, SEALED_OFFER

from .helpers import WAIT_SECONDS, EventLog, make_session
from .test_cli import PROJECT_DIR, RunningCli, args_for, cli, cli_env, run_cli
from .test_layering import PACKAGE, imported_names

MAX_FILE_SIZE = 64 * 2**20  # the server's CHAT_MAX_FILE_SIZE in this module


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """This module's own server, with a file size limit low enough to test cheaply."""
    server = start_live_server(
        tmp_path_factory.mktemp("files-server"),
        env={"CHAT_MAX_FILE_SIZE": str(MAX_FILE_SIZE)},
    )
    server._live_server_modified_settings = _NoSettingsToChange()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Peer:
    """One user's client: a session, its transfer manager, and everything it told the UI."""

    name: str
    session: object
    manager: TransferManager
    log: EventLog

    def send(self, user: str, path: Path) -> str:
        """Offer ``path`` to ``user``; the transfer's id."""
        self.manager.offer(user, str(path))
        started = self.log.wait_for(  # the first report of a new transfer
            TransferChanged,
            lambda e: e.info.stage is TransferState.PREPARING and e.info.path == str(path),
        )
        return started.info.transfer

    def offered(self) -> TransferInfo:
        return self.log.wait_for(FileOffered).info

    def stage(self, transfer: str, stage: TransferState) -> TransferInfo:
        return self.log.wait_for(
            TransferChanged, lambda e: e.info.transfer == transfer and e.info.stage is stage
        ).info

    def ended(self, transfer: str, timeout: float = WAIT_SECONDS) -> TransferInfo:
        return self.log.wait_for(
            TransferChanged,
            lambda e: e.info.transfer == transfer and e.info.over,
            timeout=timeout,
        ).info

    def updates(self, transfer: str) -> list[TransferInfo]:
        return [
            e.info
            for e in self.log.seen
            if isinstance(e, TransferChanged) and e.info.transfer == transfer
        ]


@pytest.fixture
def peer(accounts, address, config_home):
    """``peer("alice")``: a logged-in client with its transfer manager; closed after the test."""
    opened: list[Peer] = []

    def connect(name: str) -> Peer:
        session, log = make_session(
            address, config_home / "known_servers", expected_fingerprint=accounts.fingerprint
        )
        manager = TransferManager(session)
        opened.append(Peer(name, session, manager, log))
        session.login(name, f"{name}-password")
        log.wait_for(LoggedIn)
        log.wait_for(Received, lambda e: e.message["type"] == "users")
        return opened[-1]

    yield connect
    for client in opened:
        client.manager.close()
        client.session.close()


class AckGate:
    """Holds a client's ``file_ack`` messages after the first ``allowed`` until :meth:`open`."""

    def __init__(self, session, allowed: int) -> None:
        self.original = session.send_message
        self.allowed = allowed
        self.holding = threading.Event()  # set once an ack is being held
        self.opened = threading.Event()
        session.send_message = self._send

    def _send(self, message):
        if message.get("type") == "file_ack":
            if self.allowed > 0:
                self.allowed -= 1
            else:
                self.holding.set()
                self.opened.wait(WAIT_SECONDS)
        self.original(message)

    def wait_until_holding(self) -> None:
        assert self.holding.wait(WAIT_SECONDS), "the transfer never reached the gate"

    def open(self) -> None:
        self.opened.set()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as file:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            file.write(block)
            left -= len(block)
    return path


@pytest.fixture
def inbox(tmp_path):
    """The recipient's chosen folder, inside a parent that must stay untouched."""
    folder = tmp_path / "parent" / "inbox"
    folder.mkdir(parents=True)
    return folder


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def halfway(alice: Peer, bob: Peer, source: Path, inbox: Path) -> tuple[str, AckGate]:
    """A transfer stopped mid-way: some chunks written on bob's side, the rest not sent."""
    gate = AckGate(bob.session, allowed=20)
    transfer = alice.send("bob", source)
    bob.manager.accept_into(bob.offered().transfer, inbox)
    gate.wait_until_holding()
    entries = listing(inbox)
    assert len(entries) == 1 and entries[0].endswith(".part"), entries  # only the hidden file
    assert (inbox / entries[0]).stat().st_size >= 20 * MAX_CHUNK_SIZE
    return transfer, gate


# --- whole transfers -----------------------------------------------------------------------------


def test_a_file_arrives_intact_between_two_clients(peer, tmp_path, inbox):
    alice, bob = peer("alice"), peer("bob")
    source = random_file(tmp_path / "report.pdf", 3 * 2**20 + 12345)

    transfer = alice.send("bob", source)
    offer = bob.offered()
    assert (offer.transfer, offer.peer, offer.name, offer.size) == (
        transfer,
        "alice",
        "report.pdf",
        source.stat().st_size,
    )
    saved = bob.manager.accept_into(offer.transfer, inbox)
    received, sent = bob.ended(transfer), alice.ended(transfer)

    assert (received.stage, sent.stage) == (TransferState.FINISHED, TransferState.FINISHED)
    assert saved == inbox / "report.pdf" and received.path == str(saved)
    assert sha256(saved) == sha256(source)
    assert listing(inbox) == ["report.pdf"]  # no temporary file left beside it
    assert sent.message == "bob received report.pdf (3.0 MiB) intact."
    assert received.message == f"Received report.pdf (3.0 MiB) from alice, saved as {saved}."
    # The protocol's chatter stays with the manager: no ok, chunk or file_* reaches the UI.
    for client in (alice, bob):
        leaked = [
            e.message
            for e in client.log.seen
            if isinstance(e, Received) and e.message["type"] not in ("users", "presence", "rooms")
        ]
        assert leaked == []
    assert not alice.manager.busy() and not bob.manager.busy()


def test_fifty_mebibytes_cross_the_server_in_constant_memory(peer, tmp_path, inbox):
    alice, bob = peer("alice"), peer("bob")
    source = random_file(tmp_path / "big.bin", 50 * 2**20)

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        transfer = alice.send("bob", source)
        bob.manager.accept_into(bob.offered().transfer, inbox)
        received = bob.ended(transfer, timeout=240)
        sent = alice.ended(transfer, timeout=60)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    assert (received.stage, sent.stage) == (TransferState.FINISHED, TransferState.FINISHED)
    assert sha256(inbox / "big.bin") == sha256(source)
    # Both clients in this process; a whole file in memory would be 50 MiB on its own.
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    # Progress was shown on both sides along the way: bytes, a rate, a fraction.
    for side in (alice.updates(transfer), bob.updates(transfer)):
        running = [i for i in side if i.stage is TransferState.RUNNING and 0 < i.fraction < 1]
        assert running, "no progress between the start and the end"
        assert any(i.rate for i in running)
        assert all(" of 50.0 MiB (" in i.progress for i in running)


# --- declining and cancelling --------------------------------------------------------------------


def test_a_declined_offer_leaves_no_file_and_the_sender_is_told(peer, tmp_path, inbox):
    alice, bob = peer("alice"), peer("bob")
    transfer = alice.send("bob", random_file(tmp_path / "notes.txt", 5000))

    bob.manager.decline(bob.offered().transfer)

    sent, received = alice.ended(transfer), bob.ended(transfer)
    assert (sent.stage, sent.reason) == (TransferState.FAILED, "rejected")
    assert sent.message == "notes.txt was not sent to bob: bob declined it."
    assert received.message == "You declined notes.txt from alice."
    assert listing(inbox) == []


def test_the_sender_cancelling_midway_leaves_no_partial_file(peer, tmp_path, inbox):
    alice, bob = peer("alice"), peer("bob")
    transfer, gate = halfway(alice, bob, random_file(tmp_path / "video.mp4", 4 * 2**20), inbox)

    alice.manager.cancel(transfer)
    sent = alice.ended(transfer)
    gate.open()
    received = bob.ended(transfer)

    assert (sent.stage, sent.reason, sent.local) == (TransferState.FAILED, "cancelled", True)
    assert sent.message == "video.mp4 was not sent to bob: you cancelled it."
    assert (received.stage, received.reason, received.local) == (
        TransferState.FAILED,
        "cancelled",
        False,
    )
    assert received.message == "video.mp4 from alice was not received: alice cancelled it."
    assert listing(inbox) == []


def test_the_recipient_cancelling_midway_leaves_no_partial_file(peer, tmp_path, inbox):
    alice, bob = peer("alice"), peer("bob")
    transfer, gate = halfway(alice, bob, random_file(tmp_path / "video.mp4", 4 * 2**20), inbox)

    bob.manager.cancel(transfer)
    gate.open()
    received, sent = bob.ended(transfer), alice.ended(transfer)

    assert (received.reason, received.local) == ("cancelled", True)
    assert received.message == "video.mp4 from alice was not received: you cancelled it."
    assert (sent.stage, sent.reason, sent.local) == (TransferState.FAILED, "cancelled", False)
    assert sent.message == "video.mp4 was not sent to bob: bob cancelled it."
    assert listing(inbox) == []


def test_the_sender_disconnecting_midway_is_told_and_leaves_no_partial_file(peer, tmp_path, inbox):
    alice, bob = peer("alice"), peer("bob")
    transfer, gate = halfway(alice, bob, random_file(tmp_path / "video.mp4", 4 * 2**20), inbox)

    alice.session.close()
    sent = alice.ended(transfer)
    gate.open()
    received = bob.ended(transfer)

    assert (sent.reason, sent.local) == ("disconnected", True)
    assert sent.message.endswith("the connection to the server was lost.")
    assert (received.stage, received.reason, received.local) == (
        TransferState.FAILED,
        "disconnected",
        False,
    )
    assert received.message == "video.mp4 from alice was not received: alice went offline."
    assert listing(inbox) == []


def test_the_recipient_disconnecting_midway_is_told_and_leaves_no_partial_file(
    peer, tmp_path, inbox
):
    alice, bob = peer("alice"), peer("bob")
    transfer, gate = halfway(alice, bob, random_file(tmp_path / "video.mp4", 4 * 2**20), inbox)

    bob.session.close()
    gate.open()
    received, sent = bob.ended(transfer), alice.ended(transfer)

    assert (received.reason, received.local) == ("disconnected", True)
    assert (sent.stage, sent.reason, sent.local) == (TransferState.FAILED, "disconnected", False)
    assert sent.message == "video.mp4 was not sent to bob: bob went offline."
    assert listing(inbox) == []


def test_an_offer_cancelled_before_the_answer_ends_on_both_sides(peer, tmp_path, inbox):
    alice, bob = peer("alice"), peer("bob")
    transfer = alice.send("bob", random_file(tmp_path / "notes.txt", 5000))
    offer = bob.offered()

    alice.manager.cancel(transfer)
    received = bob.ended(transfer)

    assert received.message == "notes.txt from alice was not received: alice cancelled it."
    assert not bob.manager.answerable(offer.transfer)
    with pytest.raises(TransferError, match="no longer open"):
        bob.manager.accept_into(offer.transfer, inbox)
    assert listing(inbox) == []


def test_cancel_while_the_file_is_being_hashed_stops_before_anything_is_offered(
    peer, tmp_path, monkeypatch
):
    hashing = threading.Event()
    release = threading.Event()

    class SlowSource(FileSource):
        """Hashing that pauses after its first MiB until the test lets it go on."""

        def __init__(self, path, *, on_progress=None):
            def progress(count):
                hashing.set()
                release.wait(WAIT_SECONDS)
                on_progress(count)

            super().__init__(path, on_progress=progress)

    monkeypatch.setattr(worker, "FileSource", SlowSource)
    alice, bob = peer("alice"), peer("bob")
    transfer = alice.send("bob", random_file(tmp_path / "archive.tar", 3 * 2**20))
    assert hashing.wait(WAIT_SECONDS)

    alice.manager.cancel(transfer)
    release.set()

    ended = alice.ended(transfer)
    assert (ended.stage, ended.reason, ended.local) == (TransferState.FAILED, "cancelled", True)
    assert ended.message == "archive.tar was not sent to bob: you cancelled it."
    assert [i.stage for i in alice.updates(transfer)] == [
        TransferState.PREPARING,
        TransferState.FAILED,
    ]
    marker = alice.session.request("ping")  # anything alice sent before it has been relayed
    alice.log.wait_for(RequestUpdate, lambda e: e.request.id == marker.id and e.answer)
    assert not bob.log.of(FileOffered)


# --- refusals ------------------------------------------------------------------------------------


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as file:
        file.truncate(size)
    return path


def test_a_file_over_the_servers_limit_is_refused_before_reading_it(peer, tmp_path):
    alice = peer("alice")
    too_big = sparse_file(tmp_path / "disk.img", MAX_FILE_SIZE + 1)

    with pytest.raises(TransferError) as refused:
        alice.manager.offer("bob", str(too_big))

    assert str(refused.value) == ("disk.img is 64.0 MiB; this server accepts files up to 64.0 MiB.")
    assert not alice.manager.busy()


def test_the_servers_too_large_answer_is_explained(peer, tmp_path, monkeypatch):
    alice, _bob = peer("alice"), peer("bob")
    # A server that did not announce its limit: the client offers, and the server refuses.
    monkeypatch.setattr(alice.session, "greeting", {"type": "greeting"})
    too_big = sparse_file(tmp_path / "disk.img", MAX_FILE_SIZE + 1)

    transfer = alice.send("bob", too_big)
    refused = alice.ended(transfer)

    assert (refused.stage, refused.reason) == (TransferState.FAILED, "too_large")
    assert refused.message == (
        f"disk.img was not sent to bob: the file is larger than this server's limit of "
        f"{MAX_FILE_SIZE} bytes."
    )


def test_offers_that_cannot_start_are_explained_at_once(peer, tmp_path):
    alice = peer("alice")
    with pytest.raises(TransferError, match=r"^There is no file .*missing\.txt\.$"):
        alice.manager.offer("bob", str(tmp_path / "missing.txt"))
    with pytest.raises(TransferError, match="is a folder; choose a file to send"):
        alice.manager.offer("bob", str(tmp_path))


def test_an_offer_to_someone_offline_is_refused_with_the_servers_words(peer, tmp_path):
    alice = peer("alice")  # carol is not connected
    transfer = alice.send("carol", random_file(tmp_path / "notes.txt", 100))

    refused = alice.ended(transfer)

    assert (refused.stage, refused.reason) == (TransferState.FAILED, "offline")
    assert "not online" in refused.message


# --- names ---------------------------------------------------------------------------------------

HOSTILE = {
    "../../x": "x",
    "/etc/x": "etcx",
    "C:\\x": "C:x",
    "con": "file",
    "a\x00b": "ab",
    "line\nbreak.txt": "linebreak.txt",
    ".hidden": "hidden",
    "\u202etxt.exe": "txt.exe",
}


def test_hostile_names_are_saved_sanitized_inside_the_chosen_folder(
    peer, tmp_path, inbox, monkeypatch
):
    offered_name = {"value": ""}

    class NamedSource(FileSource):
        """The sender's file, offered under a name no file system would give it."""

        def __init__(self, path, **kwargs):
            super().__init__(path, **kwargs)
            self.name = offered_name["value"]

    monkeypatch.setattr(worker, "FileSource", NamedSource)
    alice, bob = peer("alice"), peer("bob")
    parent_before = listing(inbox.parent)

    for number, (offered, saved) in enumerate(HOSTILE.items()):
        offered_name["value"] = offered
        source = random_file(tmp_path / f"payload{number}.bin", 2000)
        transfer = alice.send("bob", source)
        offer = bob.offered()
        assert offer.name == saved  # the prompt shows the name it will be saved under
        path = bob.manager.accept_into(offer.transfer, inbox)
        assert bob.ended(transfer).stage is TransferState.FINISHED
        assert path == inbox / saved
        assert path.read_bytes() == source.read_bytes()
        path.unlink()

    assert listing(inbox) == []
    assert listing(inbox.parent) == parent_before  # nothing written beside the folder
    assert not (tmp_path / "x").exists() and not Path("/etc/x").exists()


def test_saving_never_overwrites_an_existing_file_unless_agreed(peer, tmp_path, inbox):
    alice, bob = peer("alice"), peer("bob")
    (inbox / "notes.txt").write_text("mine")
    source = random_file(tmp_path / "notes.txt", 3000)

    transfer = alice.send("bob", source)
    offer = bob.offered()
    with pytest.raises(TransferError, match="already exists"):
        bob.manager.accept(offer.transfer, inbox / "notes.txt")
    saved = bob.manager.accept_into(offer.transfer, inbox)  # the next free name instead
    assert bob.ended(transfer).stage is TransferState.FINISHED

    assert saved == inbox / "notes (1).txt"
    assert (inbox / "notes.txt").read_text() == "mine"
    assert saved.read_bytes() == source.read_bytes()


# --- layering ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [
        "__init__",
        "e2e_cipher",
        "events",
        "manager",
        "names",
        "progress",
        "sink",
        "source",
        "words",
        "worker",
    ],
)
def test_the_transfer_logic_does_not_import_tkinter(module):
    names = imported_names(PACKAGE / "files" / f"{module}.py")
    assert not {n for n in names if n.split(".")[0] in ("tkinter", "_tkinter")}
    assert not {n for n in names if n.lstrip(".").startswith(("views", "gui"))}


# --- the terminal client -------------------------------------------------------------------------


def test_cli_sends_a_file_to_a_cli_accepting_into_a_folder(accounts, tmp_path, inbox):
    source = random_file(tmp_path / "report.bin", 8 * 2**20)
    receiver = RunningCli(
        args_for(
            accounts, "bob", "--trust", accounts.fingerprint, "--remember", "laptop",
            "--accept-files", str(inbox),
        ),
        "bob-password",
    )  # fmt: skip
    try:
        receiver.wait_for_error("* logged in as bob")
        # Both are remembered devices: the file goes end to end (4.12).
        sent = run_cli(
            args_for(accounts, "alice", "--trust", accounts.fingerprint, "--remember", "script"),
            stdin=f"/file bob {source}\n",
            password="alice-password",
        )
        receiver.wait_for_error(
            f"* receiving report.bin (8.0 MiB; {SEALED_OFFER}) from alice into {inbox}"
        )
        receiver.wait_for_line(
            f"Received report.bin (8.0 MiB) from alice, saved as {inbox / 'report.bin'}."
        )
    finally:
        code = receiver.finish()

    assert sent.returncode == 0, sent.stderr
    assert "bob received report.bin (8.0 MiB) intact." in sent.stdout.splitlines()
    assert code == 0
    assert sha256(inbox / "report.bin") == sha256(source)
    assert listing(inbox) == ["report.bin"]
    # Without a terminal, progress comes as lines on stderr (never on stdout).
    progress = [
        line
        for line in sent.stderr.splitlines()
        if line.startswith("* sending report.bin to bob: ") and " of 8.0 MiB (" in line
    ]
    assert progress, sent.stderr
    assert "\r" not in sent.stderr
    assert "of 8.0 MiB" not in sent.stdout


def test_cli_without_a_terminal_declines_offers_and_says_how_to_accept(peer, accounts, tmp_path):
    receiver = RunningCli(
        args_for(accounts, "bob", "--trust", accounts.fingerprint), "bob-password"
    )
    try:
        receiver.wait_for_error("* logged in as bob")
        alice = peer("alice")
        transfer = alice.send("bob", random_file(tmp_path / "notes.txt", 100))
        refused = alice.ended(transfer)
        receiver.wait_for_error("run with --accept-files DIR")
        receiver.wait_for_error("alice offered you the file notes.txt")
    finally:
        receiver.finish()
    assert (refused.stage, refused.reason) == (TransferState.FAILED, "rejected")


def test_cli_file_that_cannot_be_sent_is_an_error_and_exit_code_one(accounts, tmp_path):
    remembered = ("--trust", accounts.fingerprint, "--remember", "script")
    result = run_cli(
        args_for(accounts, "alice", *remembered),
        stdin=f"/file carol {tmp_path / 'notes.txt'}\n/file carol {tmp_path}\n",
        password="alice-password",
    )
    assert result.returncode == 0  # nothing was offered, so nothing failed to arrive
    assert f"error: Not sent: There is no file {tmp_path / 'notes.txt'}." in result.stderr
    assert f"error: Not sent: {tmp_path} is a folder; choose a file to send." in result.stderr

    (tmp_path / "notes.txt").write_text("hello")
    offline = run_cli(  # carol is not online: the server refuses, the exit code says so
        args_for(accounts, "alice", *remembered),
        stdin=f"/file carol {tmp_path / 'notes.txt'}\n",
        password="alice-password",
    )
    assert offline.returncode == 1
    assert "error: notes.txt was not sent to carol: " in offline.stderr


def test_cli_without_a_remembered_device_sends_no_file(accounts, tmp_path):
    """4.12: files go only end to end; without a device, words say how to get one."""
    (tmp_path / "notes.txt").write_text("hello")
    result = run_cli(
        args_for(accounts, "alice", "--trust", accounts.fingerprint),
        stdin=f"/file bob {tmp_path / 'notes.txt'}\n",
        password="alice-password",
    )
    assert f"error: Not sent: {FILES_NEED_A_DEVICE}" in result.stderr


def test_cli_accept_files_must_name_a_folder(accounts, tmp_path):
    result = run_cli(
        args_for(accounts, "bob", "--accept-files", str(tmp_path / "nowhere")),
        password="bob-password",
    )
    assert result.returncode == 2
    assert "--accept-files" in result.stderr and "no such folder" in result.stderr


class Terminal:
    """The terminal client on a pseudo-terminal, as a person runs it."""

    def __init__(self, args: list[str], password: str, cwd: Path) -> None:
        import pty

        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            cli(*args),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=cli_env(password) | {"PYTHONPATH": str(PROJECT_DIR)},
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self.screen = ""
        self.position = 0  # where the next wait_for starts looking

    def wait_for(self, text: str) -> None:
        """Wait until ``text`` appears after what the previous wait found."""
        deadline = time.monotonic() + WAIT_SECONDS
        while text not in self.screen[self.position :]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never appeared; the terminal shows {self.screen!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536).decode("utf-8", "replace")
                except OSError:  # the client exited
                    raise AssertionError(f"{text!r} never appeared: {self.screen!r}") from None
        self.position = self.screen.index(text, self.position) + len(text)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> int:
        with contextlib.suppress(OSError):
            os.write(self.master, b"\x04")  # Ctrl+D: end of input
        try:
            return self.process.wait(timeout=WAIT_SECONDS)
        finally:
            os.close(self.master)


def test_cli_on_a_terminal_asks_whether_and_where_to_save(peer, accounts, tmp_path, inbox):
    terminal = Terminal(
        args_for(accounts, "bob", "--trust", accounts.fingerprint), "bob-password", cwd=inbox
    )
    try:
        terminal.wait_for("* logged in as bob")
        alice = peer("alice")
        source = random_file(tmp_path / "slides.pdf", 6 * 2**20)
        transfer = alice.send("bob", source)

        terminal.wait_for(
            f"alice offers you the file slides.pdf (6.0 MiB; {PLAIN_OFFER}). Accept? [y/N] "
        )
        terminal.type("y")
        terminal.wait_for(f"Save as [{inbox / 'slides.pdf'}]: ")
        terminal.type("")  # the default: the current folder, under the sanitized name
        terminal.wait_for("Received slides.pdf (6.0 MiB) from alice")
        assert alice.ended(transfer).stage is TransferState.FINISHED

        declined = alice.send("bob", source)
        terminal.wait_for("Accept? [y/N] ")
        terminal.type("n")
        assert alice.ended(declined).reason == "rejected"
    finally:
        code = terminal.close()

    assert code == 0
    assert sha256(inbox / "slides.pdf") == sha256(source)
    assert listing(inbox) == ["slides.pdf"]
    # On a terminal the progress is one line redrawn in place.
    assert "\r\x1b[Kslides.pdf <- alice [" in terminal.screen


# --- the controller's part (no server) -----------------------------------------------------------


class RecordingTransfers:
    """The controller's side of the manager, recorded."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.offers: list[tuple[str, str]] = []
        self.declined: list[str] = []

    def offer(self, user: str, path: str, *, end_to_end: bool = False) -> None:
        if self.refuse:
            raise TransferError(self.refuse)
        assert end_to_end  # 4.12: a client with a device never offers a plain file
        self.offers.append((user, path))

    def decline(self, transfer: str) -> None:
        self.declined.append(transfer)

    def handle(self, message: dict) -> bool:
        return True


def info(stage: TransferState, **fields) -> TransferInfo:
    values = dict(
        transfer="ab" * 16,
        outgoing=False,
        peer="alice",
        name="notes.txt",
        size=10,
        stage=stage,
        done=0,
        fraction=0.0,
        rate=None,
        remaining=None,
        progress="",
        message=f"{stage.value} words",
    )
    values.update(fields)
    return TransferInfo(**values)


class DeviceLink:
    """Stands for the end-to-end link of a remembered, approved device."""

    can_send = approved = True


def logged_in_controller(transfers, view=None, *, link=True):
    from tk_client.controller import ChatController

    from .test_controller import ROOMS, FakeSession, RecordingView

    view = view or RecordingView()
    controller = ChatController(FakeSession(), view, transfers=transfers)
    controller.handle(LoggedIn("me", ROOMS, again=False))
    controller.handle(
        Received({"type": "users", "online": ["alice", "me"], "all": ["alice", "me"]})
    )
    controller.e2e = DeviceLink() if link else None  # type: ignore[assignment]
    return controller, view


def test_file_command_strips_quotes_and_reports_what_cannot_be_sent():
    transfers = RecordingTransfers()
    controller, _view = logged_in_controller(transfers)
    assert controller.submit("/file alice '/tmp/my notes.txt'")
    assert transfers.offers == [("alice", "/tmp/my notes.txt")]

    refusing = RecordingTransfers(refuse="There is no file /nope.")
    controller, view = logged_in_controller(refusing)
    assert controller.submit("/file alice /nope") is False  # the line stays, to fix it
    assert view.last_notice() == "Not sent: There is no file /nope."


def test_without_a_device_no_file_is_offered_and_words_say_how_to_fix_it():
    transfers = RecordingTransfers()
    controller, view = logged_in_controller(transfers, link=False)
    assert controller.submit("/file alice /tmp/notes.txt") is False
    assert transfers.offers == []
    assert view.last_notice() == f"Not sent: {FILES_NEED_A_DEVICE}"


def test_an_offer_the_view_cannot_ask_about_is_declined_with_a_notice():
    transfers = RecordingTransfers()
    controller, view = logged_in_controller(transfers)

    controller.handle(FileOffered(info(TransferState.OFFERED)))
    controller.handle(TransferChanged(info(TransferState.FAILED, reason="rejected", local=True)))

    assert transfers.declined == ["ab" * 16]
    assert view.notices() == [
        "alice offered you the file notes.txt, but this client cannot ask you where to save "
        "it; it was declined."
    ]


def test_the_end_of_a_transfer_is_noted_once_as_info_or_error():
    controller, view = logged_in_controller(RecordingTransfers())

    controller.handle(TransferChanged(info(TransferState.RUNNING, path="/x")))
    controller.handle(TransferChanged(info(TransferState.FINISHED, path="/x")))
    controller.handle(TransferChanged(info(TransferState.FAILED, reason="cancelled", local=True)))
    controller.handle(TransferChanged(info(TransferState.FAILED, reason="disconnected")))

    levels = [(c[2].text, c[2].level) for c in view.calls if c[0] == "added" and c[2].notice]
    assert levels == [
        ("finished words", "info"),
        ("failed words", "info"),  # the user's own cancel is no error
        ("failed words", "error"),
    ]


def test_a_killed_cli_receivers_partial_file_goes_at_its_next_start(
    peer, accounts, tmp_path, inbox
):
    """SIGKILL leaves the hidden .part file; the client's next start removes it, and only it."""
    source = random_file(tmp_path / "movie.bin", 8 * 2**20)
    users_own = inbox / ".draft.txt.part"  # the temporary pattern, but not the client's
    users_own.write_text("keep me")
    receiver = RunningCli(
        args_for(accounts, "bob", "--trust", accounts.fingerprint, "--accept-files", str(inbox)),
        "bob-password",
    )
    alice = peer("alice")
    sent_chunks = 0
    release = threading.Event()
    send_chunk = alice.session.send_chunk

    def held_send_chunk(transfer, index, data):  # the sender stalls after 20 chunks
        nonlocal sent_chunks
        sent_chunks += 1
        if sent_chunks > 20:
            release.wait(WAIT_SECONDS)
        send_chunk(transfer, index, data)

    alice.session.send_chunk = held_send_chunk
    try:
        receiver.wait_for_error("* logged in as bob")
        alice.send("bob", source)
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            parts = [n for n in listing(inbox) if n.startswith(".movie.bin.")]
            if parts and (inbox / parts[0]).stat().st_size >= 20 * MAX_CHUNK_SIZE:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the receiver never wrote 20 chunks: {listing(inbox)}")
    finally:
        receiver.process.kill()  # SIGKILL: no cleanup code runs
        receiver.process.wait(30)
        release.set()
        with contextlib.suppress(Exception):
            receiver.finish()
    assert sorted(listing(inbox)) == sorted([".draft.txt.part", parts[0]])  # left behind

    again = run_cli(
        args_for(accounts, "bob", "--trust", accounts.fingerprint), password="bob-password"
    )

    assert again.returncode == 0, again.stderr
    assert listing(inbox) == [".draft.txt.part"]
    assert users_own.read_text() == "keep me"
