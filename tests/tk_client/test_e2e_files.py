"""End-to-end files (protocol.md 4.12) at the ends: :class:`SealedUpload` and
:class:`SealedDownload` through a relay that swaps, drops, replays or alters chunks.

Whatever the relay does to the encrypted stream, the receiver either keeps exactly the
sender's file or keeps nothing (no destination, no temporary file), and says
``not_verified`` for a chunk that is not the sender's chunk for its place in this file.
"""

from __future__ import annotations

import hashlib
import os
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
from tk_client.files.e2e_cipher import SealedDownload, SealedUpload
from tk_client.files.source import FileSource

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
