"""End-to-end files (protocol.md 4.12) at the ends: :class:`SealedUpload` and
:class:`SealedDownload` through a relay that swaps, drops, replays or alters chunks.

Whatever the relay does to the encrypted stream, the receiver either keeps exactly the
sender's file or keeps nothing (no destination, no temporary file), and says
``not_verified`` for a chunk that is not the sender's chunk for its place in this file.
"""

from __future__ import annotations

import hashlib
import os
import queue
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatproto.e2e_files import (
    NOT_VERIFIED,
    PIECE_SIZE,
    TAG_SIZE,
    ChunkCipher,
    FileFacts,
    encrypted_size,
)
from chatproto.framing import FileChunk
from chatproto.limits import MAX_CHUNK_SIZE
from chatproto.transfer import IncomingTransfer, Send, SendChunk, TransferState
from tk_client.controller import ChatController
from tk_client.e2e.files import FileOfferRefused, FileOfferVerified
from tk_client.events import LoggedIn, Phase, Received
from tk_client.files import FileOffered, TransferChanged, TransferError, TransferManager
from tk_client.files import manager as manager_module
from tk_client.files.e2e_cipher import SealedDownload, SealedUpload
from tk_client.files.events import OfferToSeal, SealedOfferArrived
from tk_client.files.source import FileSource
from tk_client.secure_files import FILES_NEED_A_DEVICE

from .helpers import WAIT_SECONDS
from .test_controller import FakeSession

T = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
SIZE = 3 * PIECE_SIZE + 1234  # four chunks, the last one short
E2E = {"algorithm": "megolm.v1", "sender_key": "k", "device": "D", "session_id": "s"}

Tamper = Callable[[FileChunk], list[FileChunk]]


def honest(chunk: FileChunk) -> list[FileChunk]:
    return [chunk]


def relabel(chunk: FileChunk, index: int | None = None, data: bytes | None = None) -> FileChunk:
    return FileChunk(
        chunk.transfer,
        chunk.index if index is None else index,
        chunk.data if data is None else data,
    )


class Outcome:
    def __init__(self, upload: SealedUpload, download: SealedDownload, folder: Path) -> None:
        self.upload, self.download, self.folder = upload, download, folder

    @property
    def kept(self) -> bool:
        return self.download.incoming.state is TransferState.FINISHED

    def listing(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir())


def run_transfer(tmp_path: Path, tamper: Tamper, size: int = SIZE, key: bytes | None = None):
    """One file from a SealedUpload to a SealedDownload, every chunk through ``tamper``."""
    source_path = tmp_path / "source.bin"
    source_path.write_bytes(os.urandom(size))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    key = key or os.urandom(32)
    upload = SealedUpload(FileSource(source_path), "bob", transfer=T, key=key)
    offer = upload.offer(e2e=E2E)
    assert "name" not in offer and "sha256" not in offer and offer["e2e"] == E2E
    assert offer["size"] == encrypted_size(size)
    facts = FileFacts(upload.source.name, size, upload.source.sha256, key)
    incoming = IncomingTransfer(
        transfer=T, sender="alice", name=facts.name, size=offer["size"], sha256=facts.sha256
    )
    download = SealedDownload(incoming, facts, inbox / "saved.bin")
    to_up: deque[dict[str, Any]] = deque()
    to_down: deque[Any] = deque()

    def from_up(events) -> None:
        for event in events:
            if isinstance(event, SendChunk):
                to_down.extend(tamper(event.chunk))
            elif isinstance(event, Send):
                to_down.append(event.message)

    def from_down(events) -> None:
        for event in events:
            if isinstance(event, Send):
                to_up.append(event.message)

    from_down(download.accept())
    while to_up or to_down:
        if to_up:
            from_up(upload.handle(to_up.popleft()))
            continue
        item = to_down.popleft()
        if isinstance(item, FileChunk):
            from_down(download.handle_chunk(item))
        else:
            from_down(download.handle(item))
    return Outcome(upload, download, inbox), source_path


def test_an_honest_relay_delivers_the_file_in_encrypted_chunks(tmp_path):
    seen: list[FileChunk] = []

    def record(chunk: FileChunk) -> list[FileChunk]:
        seen.append(chunk)
        return [chunk]

    outcome, source = run_transfer(tmp_path, record)

    assert outcome.kept and outcome.listing() == ["saved.bin"]
    assert (outcome.folder / "saved.bin").read_bytes() == source.read_bytes()
    assert [len(c.data) for c in seen] == [MAX_CHUNK_SIZE] * 3 + [1234 + TAG_SIZE]
    plain = source.read_bytes()
    assert all(c.data[:64] not in plain for c in seen)  # nothing of the file in the clear
    # Progress counts the file's own bytes, on both sides.
    assert outcome.upload.progress.done == SIZE and outcome.download.progress.done == SIZE


def test_an_empty_file_travels_with_no_chunk(tmp_path):
    outcome, _ = run_transfer(tmp_path, honest, size=0)
    assert outcome.kept and (outcome.folder / "saved.bin").read_bytes() == b""


def swap_one_and_two() -> Tamper:
    held: list[FileChunk] = []

    def tamper(chunk: FileChunk) -> list[FileChunk]:
        if chunk.index == 1:
            held.append(chunk)
            return []
        if chunk.index == 2:  # chunk 2's bytes where chunk 1 belongs, then chunk 1's
            return [relabel(chunk, index=1), relabel(held[0], index=2)]
        return [chunk]

    return tamper


def another_files_chunk() -> Tamper:
    other = ChunkCipher(os.urandom(32), OTHER, SIZE)

    def tamper(chunk: FileChunk) -> list[FileChunk]:
        if chunk.index == 1:
            return [relabel(chunk, data=other.encrypt(1, bytes(PIECE_SIZE)))]
        return [chunk]

    return tamper


def drop(index: int, renumber: bool = False) -> Tamper:
    def tamper(chunk: FileChunk) -> list[FileChunk]:
        if chunk.index == index:
            return []
        if renumber and chunk.index > index:
            return [relabel(chunk, index=chunk.index - 1)]
        return [chunk]

    return tamper


def replay(index: int, as_index: int | None = None) -> Tamper:
    def tamper(chunk: FileChunk) -> list[FileChunk]:
        if chunk.index == index:
            again = chunk if as_index is None else relabel(chunk, index=as_index)
            return [chunk, again]
        return [chunk]

    return tamper


def flip_a_bit(chunk: FileChunk) -> list[FileChunk]:
    if chunk.index == 2:
        data = bytearray(chunk.data)
        data[100] ^= 1
        return [relabel(chunk, data=bytes(data))]
    return [chunk]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(swap_one_and_two(), id="swapped-with-another-index"),
        pytest.param(another_files_chunk(), id="another-files-chunk"),
        pytest.param(drop(1), id="dropped"),
        pytest.param(drop(1, renumber=True), id="dropped-and-renumbered"),
        pytest.param(replay(0), id="replayed-at-its-own-index"),
        pytest.param(replay(0, as_index=1), id="replayed-as-the-next"),
        pytest.param(replay(3, as_index=4), id="replayed-past-the-last"),
        pytest.param(flip_a_bit, id="altered"),
    ],
)
def test_a_chunk_the_relay_touched_fails_the_transfer_and_nothing_is_kept(tmp_path, tamper):
    outcome, _ = run_transfer(tmp_path, tamper)

    assert not outcome.kept
    assert outcome.download.incoming.reason == NOT_VERIFIED
    assert outcome.upload.outgoing.reason == NOT_VERIFIED  # the sender is told why
    assert outcome.listing() == []  # no file, no temporary file


def test_a_relay_that_drops_the_last_chunk_fails_the_size_and_nothing_is_kept(tmp_path):
    outcome, _ = run_transfer(tmp_path, drop(3))

    assert not outcome.kept and outcome.listing() == []


def test_the_wrong_file_key_keeps_nothing(tmp_path):
    """A receiver whose offer carried another key (a forged offer) refuses chunk 0."""
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(1000))
    (tmp_path / "in").mkdir()
    upload = SealedUpload(FileSource(source), "bob", transfer=T, key=os.urandom(32))
    facts = FileFacts("a.bin", 1000, hashlib.sha256(source.read_bytes()).hexdigest(), bytes(32))
    incoming = IncomingTransfer(
        transfer=T, sender="alice", name="a.bin", size=encrypted_size(1000), sha256=facts.sha256
    )
    download = SealedDownload(incoming, facts, tmp_path / "in" / "a.bin")
    download.accept()
    events = upload.handle({"type": "file_accept", "transfer": T})
    (chunk,) = [e.chunk for e in events if isinstance(e, SendChunk)]

    sent = download.handle_chunk(chunk)

    assert [e.message for e in sent if isinstance(e, Send)] == [
        {"type": "file_cancel", "transfer": T, "reason": NOT_VERIFIED}
    ]
    assert list((tmp_path / "in").iterdir()) == []


# --- the manager: end-to-end offers, without a server --------------------------------------


class ManagerSession(FakeSession):
    """What the manager needs of a session, recorded."""

    def __init__(self, max_file_size: int | None = None) -> None:
        super().__init__()
        self.events: queue.Queue[Any] = queue.Queue()
        limits = {"max_file_size": max_file_size} if max_file_size is not None else {}
        self.greeting = {"limits": limits}
        self.phase = Phase.ONLINE
        self.hooks: list[Any] = []

    def add_hook(self, hook) -> None:
        self.hooks.append(hook)

    def request(self, type_: str, *, durable: bool = True, **fields: Any):
        status = super().request(type_, durable=durable, **fields)
        self.events.put(("request", status.message))  # so a test can wait for it
        return status

    def send_chunk(self, transfer, index, data) -> None:
        raise AssertionError("no chunk in these tests")

    def relay(self, message: dict[str, Any]) -> None:
        """A message from the server, through the hooks as the network thread does."""
        for hook in self.hooks:
            if hook(Received(message)):
                return

    def next_event(self, kind):
        while True:
            event = self.events.get(timeout=WAIT_SECONDS)
            if isinstance(event, kind):
                return event


def sealed_offer(transfer: str = T, size: int = 1000) -> dict[str, Any]:
    return {
        "type": "file_offer",
        "transfer": transfer,
        "from": "alice",
        "to": "bob",
        "size": encrypted_size(size),
        "e2e": E2E,
    }


def test_an_end_to_end_offer_waits_for_the_link_then_shows_its_decrypted_facts():
    session = ManagerSession()
    manager = TransferManager(session)
    session.relay(sealed_offer())

    arrived = session.next_event(SealedOfferArrived)
    assert arrived.transfer == T and arrived.sender == "alice"
    manager.offer_verified(T, FileFacts("report.pdf", 1000, "ab" * 32, bytes(32)))

    offered = session.next_event(FileOffered).info
    assert (offered.name, offered.size, offered.peer) == ("report.pdf", 1000, "alice")
    assert offered.end_to_end
    manager.close()


def test_an_end_to_end_offer_cancelled_before_it_was_opened_is_never_shown():
    session = ManagerSession()
    manager = TransferManager(session)
    session.relay(sealed_offer())
    session.relay({"type": "file_cancel", "transfer": T, "reason": "cancelled"})

    manager.offer_verified(T, FileFacts("report.pdf", 1000, "ab" * 32, bytes(32)))

    assert not manager.busy() and not manager.answerable(T)
    manager.close()


def test_an_offer_cancelled_while_its_verdict_is_taken_is_never_shown(monkeypatch):
    """The cancel comes on the network thread while the user interface's thread turns the
    verdict into a transfer: the offer ends, nothing waits for an answer."""
    session = ManagerSession()
    manager = TransferManager(session)
    session.relay(sealed_offer())
    real = manager_module.IncomingTransfer

    def racing(**fields: Any):
        session.relay({"type": "file_cancel", "transfer": T, "reason": "cancelled"})
        return real(**fields)

    monkeypatch.setattr(manager_module, "IncomingTransfer", racing)
    manager.offer_verified(T, FileFacts("report.pdf", 1000, "ab" * 32, bytes(32)))

    assert not manager.busy() and not manager.answerable(T)
    manager.close()


def test_a_plain_offer_taking_the_id_while_a_verdict_is_taken_keeps_its_one_worker(
    monkeypatch,
):
    """A server that relays a plain offer under a held one's id, on the network thread
    while the verdict becomes a transfer: one transfer has that id, never two workers."""
    session = ManagerSession()
    manager = TransferManager(session)
    session.relay(sealed_offer())
    real = manager_module.TransferWorker
    plain = {"type": "file_offer", "transfer": T, "from": "alice", "to": "bob", "name": "x"}
    made: list[Any] = []

    def racing(*args: Any, **fields: Any):
        worker = real(*args, **fields)
        made.append(worker)
        if len(made) == 1:  # the verdict's worker: the plain offer comes meanwhile
            session.relay({**plain, "size": 3, "sha256": "cd" * 32})
        return worker

    monkeypatch.setattr(manager_module, "TransferWorker", racing)
    manager.offer_verified(T, FileFacts("report.pdf", 1000, "ab" * 32, bytes(32)))

    (info,) = manager.transfers()
    assert (info.name, info.end_to_end) == ("x", False)
    assert [worker.thread.is_alive() for worker in made] == [False, True]
    manager.close()


def test_a_refused_offer_is_answered_not_verified():
    session = ManagerSession()
    manager = TransferManager(session)
    session.relay(sealed_offer())

    manager.refuse_offer(T)

    assert session.sent == [{"type": "file_cancel", "transfer": T, "reason": NOT_VERIFIED}]
    manager.close()


def test_an_end_to_end_file_is_offered_once_sealed_with_the_encrypted_size(tmp_path):
    session = ManagerSession()
    manager = TransferManager(session)
    source = tmp_path / "notes.txt"
    source.write_bytes(b"x" * 70_000)

    manager.offer("bob", str(source), end_to_end=True)
    seal = session.next_event(OfferToSeal)
    assert (seal.peer, seal.name, seal.size) == ("bob", "notes.txt", 70_000)
    assert seal.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert session.requests == []  # nothing leaves before the link sealed it
    manager.sealed(seal.transfer, E2E)

    _, offer = session.next_event(tuple)
    assert len(session.requests) == 1
    assert offer["type"] == "file_offer" and offer["e2e"] == E2E
    assert offer["size"] == encrypted_size(70_000) == 70_000 + 2 * TAG_SIZE
    assert "name" not in offer and "sha256" not in offer
    assert manager.transfers()[0].end_to_end
    manager.close()


def test_an_offer_that_cannot_be_sealed_ends_with_the_links_words(tmp_path):
    session = ManagerSession()
    manager = TransferManager(session)
    source = tmp_path / "notes.txt"
    source.write_bytes(b"x")
    manager.offer("bob", str(source), end_to_end=True)
    seal = session.next_event(OfferToSeal)

    manager.not_sealed(seal.transfer, "This device is new")

    ended = session.next_event(TransferChanged)
    while not ended.info.over:
        ended = session.next_event(TransferChanged)
    assert ended.info.message == "notes.txt was not sent to bob: This device is new."
    assert session.requests == [] and session.sent == []
    manager.close()


def test_the_size_limit_counts_the_encrypted_stream(tmp_path):
    session = ManagerSession(max_file_size=PIECE_SIZE + 10)
    manager = TransferManager(session)
    source = tmp_path / "full.bin"
    source.write_bytes(bytes(PIECE_SIZE))  # its stream is PIECE_SIZE + 16 bytes

    with pytest.raises(TransferError, match="accepts files up to"):
        manager.offer("bob", str(source), end_to_end=True)
    manager.offer("bob", str(source))  # a plain offer would fit: 3.3 counts the file
    manager.close()


# --- the controller's glue: the link seals and opens --------------------------------------


class GlueTransfers:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def sealed(self, transfer, e2e) -> None:
        self.calls.append(("sealed", transfer, e2e))

    def not_sealed(self, transfer, words) -> None:
        self.calls.append(("not_sealed", transfer, words))

    def offer_verified(self, transfer, facts) -> None:
        self.calls.append(("verified", transfer, facts.name))

    def refuse_offer(self, transfer) -> None:
        self.calls.append(("refused", transfer))

    def handle(self, message) -> bool:
        return True


class GlueLink:
    """Stands for the E2ELink: seals at once; opens with the verdict it is given."""

    approved = can_send = True

    def __init__(self, verdict: Any = None) -> None:
        self.verdict = verdict
        self.sealing: list[dict[str, Any]] = []

    def seal_file(self, peer, *, on_sealed, on_failed, **facts):
        self.sealing.append({"peer": peer, **facts})
        on_sealed(E2E)
        return []

    def open_file_offer(self, offer):
        return [self.verdict]


def glue_controller(link):
    from .test_controller import ROOMS, FakeSession, RecordingView

    transfers = GlueTransfers()
    view = RecordingView()
    controller = ChatController(FakeSession(), view, transfers=transfers)
    controller.handle(LoggedIn("bob", ROOMS, again=False))
    controller.e2e = link
    return controller, transfers, view


def test_the_controller_has_the_link_seal_an_offer():
    link = GlueLink()
    controller, transfers, _ = glue_controller(link)
    controller.handle(OfferToSeal(T, "alice", "a.txt", 3, "ab" * 32, bytes(32)))
    assert link.sealing[0]["peer"] == "alice" and link.sealing[0]["transfer"] == T
    assert transfers.calls == [("sealed", T, E2E)]


def test_without_a_link_an_offer_to_seal_ends_and_an_offer_received_is_left_unanswered():
    """A session without a device cannot read an end-to-end offer, but another session of
    the user (with one) may: a refusal here would end the transfer there too (3.3: any
    session of the recipient may cancel an unanswered offer), so this one says nothing."""
    controller, transfers, view = glue_controller(None)
    controller.handle(OfferToSeal(T, "alice", "a.txt", 3, "ab" * 32, bytes(32)))
    controller.handle(SealedOfferArrived(sealed_offer(OTHER)))
    assert transfers.calls == [("not_sealed", T, FILES_NEED_A_DEVICE)]
    assert "alice sent you an end-to-end encrypted file" in view.last_notice()


def test_a_verified_offer_is_offered_and_a_refused_one_is_said_in_words():
    facts = FileFacts("a.txt", 3, "ab" * 32, bytes(32))
    controller, transfers, view = glue_controller(GlueLink(FileOfferVerified(T, "alice", facts)))
    controller.handle(SealedOfferArrived(sealed_offer()))
    assert transfers.calls == [("verified", T, "a.txt")]

    controller.e2e = GlueLink(FileOfferRefused(OTHER, "alice"))
    controller.handle(SealedOfferArrived(sealed_offer(OTHER)))
    assert transfers.calls[-1] == ("refused", OTHER)
    assert view.last_notice() == "A file from alice could not be verified and was refused."
