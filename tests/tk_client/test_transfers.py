"""Files of a transfer on disk: streaming reads, verified writes, safe names, no leftovers.

Whole transfers run through :class:`tests.chatproto.transfer_harness.Relay`, an
in-memory server process with the real relay rules, between an
:class:`~tk_client.files.source.Upload` and a :class:`~tk_client.files.sink.Download`.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import random
import stat
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from chatproto.limits import MAX_CHUNK_SIZE
from chatproto.transfer import (
    Cancelled,
    CancelReason,
    Finished,
    IncomingTransfer,
    Send,
    TransferIntegrityError,
    TransferState,
    sanitize_filename,
)
from tests.chatproto.transfer_harness import HOSTILE_NAMES, USERS, Relay, run
from tk_client.files import sink
from tk_client.files.names import NAME_BUDGET, incoming_destination, safe_name
from tk_client.files.progress import Progress
from tk_client.files.sink import Download, FileSink
from tk_client.files.source import FileSource, Upload
from tk_client.files.words import describe_progress, describe_reason, format_duration, format_size

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes and FIFOs")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listing(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden temporary files included."""
    return sorted(os.listdir(folder))


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- FileSink --------------------------------------------------------------------------------


def test_sink_renames_into_place_only_after_a_verified_commit(tmp_path):
    data = os.urandom(200_000)
    destination = tmp_path / "photo.jpg"
    sink = FileSink(destination, size=len(data), sha256=sha(data))
    sink.write(data[:100_000])
    assert not destination.exists()
    assert listing(tmp_path) == [sink.temp_path.name]
    assert sink.temp_path.name.startswith(".") and sink.temp_path.name.endswith(".part")
    sink.write(data[100_000:])
    assert sink.commit() == destination
    assert destination.read_bytes() == data
    assert listing(tmp_path) == ["photo.jpg"]


@posix_only
def test_sink_temporary_file_is_private(tmp_path):
    sink = FileSink(tmp_path / "x", size=1, sha256=sha(b"x"))
    assert stat.S_IMODE(sink.temp_path.stat().st_mode) == 0o600
    sink.abort()


def test_sink_abort_leaves_no_file(tmp_path):
    sink = FileSink(tmp_path / "x.bin", size=10, sha256=sha(bytes(10)))
    sink.write(bytes(5))
    sink.abort()
    sink.abort()  # twice is fine
    assert listing(tmp_path) == []
    with pytest.raises(ValueError):
        sink.write(b"more")


@pytest.mark.parametrize(
    ("written", "announced"),
    [(b"short", b"shorter"), (b"abcdef", b"abcdeg")],
    ids=["size mismatch", "hash mismatch"],
)
def test_sink_refuses_to_commit_a_mismatch_and_leaves_no_file(tmp_path, written, announced):
    sink = FileSink(tmp_path / "x.bin", size=len(announced), sha256=sha(announced))
    sink.write(written)
    with pytest.raises(TransferIntegrityError):
        sink.commit()
    assert listing(tmp_path) == []


def test_sink_refuses_bytes_beyond_the_offered_size(tmp_path):
    with (
        FileSink(tmp_path / "x", size=3, sha256=sha(b"abc")) as sink,
        pytest.raises(TransferIntegrityError),
    ):
        sink.write(b"abcd")
    assert listing(tmp_path) == []


def test_sink_removes_its_file_when_the_with_block_fails(tmp_path):
    with pytest.raises(RuntimeError), FileSink(tmp_path / "x", size=3, sha256=sha(b"abc")) as sink:
        sink.write(b"ab")
        raise RuntimeError("the session died")
    assert listing(tmp_path) == []


def test_sink_forgotten_without_commit_removes_its_file(tmp_path):
    sink = FileSink(tmp_path / "x", size=3, sha256=sha(b"abc"))
    sink.write(b"ab")
    del sink
    gc.collect()
    assert listing(tmp_path) == []


def test_sink_refuses_an_existing_destination_unless_told_to_replace_it(tmp_path):
    destination = write_file(tmp_path / "notes.txt", b"keep me")
    with pytest.raises(FileExistsError, match="already exists"):
        FileSink(destination, size=3, sha256=sha(b"new"))
    assert listing(tmp_path) == ["notes.txt"]
    sink = FileSink(destination, size=3, sha256=sha(b"new"), overwrite=True)
    sink.write(b"new")
    sink.commit()
    assert destination.read_bytes() == b"new" and listing(tmp_path) == ["notes.txt"]


@posix_only
def test_sink_counts_a_dangling_symlink_as_an_existing_destination(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        FileSink(tmp_path / "link", size=0, sha256=sha(b""))


def test_sink_never_replaces_a_file_that_appeared_during_the_transfer(tmp_path):
    destination = tmp_path / "race.txt"
    sink = FileSink(destination, size=3, sha256=sha(b"new"))
    sink.write(b"new")
    write_file(destination, b"someone else's")
    with pytest.raises(FileExistsError, match="appeared"):
        sink.commit()
    assert destination.read_bytes() == b"someone else's"
    assert listing(tmp_path) == ["race.txt"]


def test_sink_syncs_the_data_before_the_rename(tmp_path, monkeypatch):
    calls: list[str] = []
    real_fsync, real_link = os.fsync, os.link
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "link", lambda a, b: (calls.append("link"), real_link(a, b))[1])
    sink = FileSink(tmp_path / "x", size=1, sha256=sha(b"x"))
    sink.write(b"x")
    sink.commit()
    assert calls[:2] == ["fsync", "link"]


def test_sink_falls_back_to_a_rename_where_hard_links_are_not_supported(tmp_path, monkeypatch):
    def no_links(source: Any, destination: Any) -> None:
        raise OSError(errno.EPERM, "no hard links on this file system")

    monkeypatch.setattr(os, "link", no_links)
    sink = FileSink(tmp_path / "x", size=1, sha256=sha(b"x"))
    sink.write(b"x")
    sink.commit()
    assert listing(tmp_path) == ["x"]
    other = FileSink(tmp_path / "y", size=1, sha256=sha(b"y"))
    other.write(b"y")
    write_file(tmp_path / "y", b"first")
    with pytest.raises(FileExistsError):
        other.commit()
    assert (tmp_path / "y").read_bytes() == b"first" and listing(tmp_path) == ["x", "y"]


def test_sink_says_early_when_the_disk_is_too_small(tmp_path, monkeypatch):
    usage = sink.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(sink.shutil, "disk_usage", lambda path: usage._replace(free=1024 * 1024))
    with pytest.raises(OSError, match=r"needs 2\.0 MiB, 1\.0 MiB is free") as info:
        FileSink(tmp_path / "big.iso", size=2 * 1024 * 1024, sha256=sha(b""))
    assert info.value.errno == errno.ENOSPC
    assert listing(tmp_path) == []


def test_sink_into_a_missing_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FileSink(tmp_path / "gone" / "x", size=0, sha256=sha(b""))


# --- FileSource ------------------------------------------------------------------------------


def test_source_hashes_first_then_streams_the_same_bytes(tmp_path):
    data = os.urandom(3 * MAX_CHUNK_SIZE + 17)
    seen: list[int] = []
    with FileSource(write_file(tmp_path / "a.bin", data), on_progress=seen.append) as source:
        assert (source.size, source.sha256, source.name) == (len(data), sha(data), "a.bin")
        assert seen[-1] == len(data)
        chunks = []
        while source.bytes_read < source.size:
            chunks.append(source.read_chunk())
        assert [len(c) for c in chunks] == [MAX_CHUNK_SIZE] * 3 + [17]
        assert b"".join(chunks) == data
        source.verify()


def read_all(source: FileSource) -> None:
    while source.bytes_read < source.size:
        source.read_chunk()


def test_source_detects_a_file_changed_between_the_passes(tmp_path):
    path = write_file(tmp_path / "a.bin", os.urandom(100_000))
    source = FileSource(path)
    with open(path, "r+b") as file:
        file.seek(50_000)
        file.write(b"X")
    read_all(source)
    with pytest.raises(TransferIntegrityError, match="changed") as info:
        source.verify()
    assert info.value.reason == CancelReason.FILE_CHANGED


def test_source_detects_a_file_that_grew(tmp_path):
    path = write_file(tmp_path / "a.log", b"line\n" * 100)
    source = FileSource(path)
    with open(path, "ab") as file:
        file.write(b"one more line\n")
    read_all(source)
    with pytest.raises(TransferIntegrityError):
        source.verify()


def test_source_detects_a_file_that_shrank(tmp_path):
    path = write_file(tmp_path / "a.bin", bytes(200_000))
    source = FileSource(path)
    os.truncate(path, 100_000)
    with pytest.raises(TransferIntegrityError, match="shorter"):
        read_all(source)


@posix_only
def test_source_reads_the_file_it_hashed_even_if_it_is_replaced_meanwhile(tmp_path):
    data = os.urandom(10_000)
    path = write_file(tmp_path / "a.bin", data)
    source = FileSource(path)
    os.replace(write_file(tmp_path / "b.bin", b"other content"), path)
    read_all(source)
    source.verify()


def test_source_refuses_a_directory(tmp_path):
    with pytest.raises(OSError, match="not a regular file"):
        FileSource(tmp_path)


@posix_only
def test_source_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        FileSource(tmp_path / "pipe")


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes")
def test_source_offers_a_non_utf8_name_as_valid_text(tmp_path):
    path = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt"))
    write_file(Path(path), b"x")
    with FileSource(path) as source:
        assert source.name == "caf\ufffd.txt"
        source.name.encode("utf-8")  # sendable as JSON


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("offered", list(HOSTILE_NAMES))
def test_hostile_names_land_inside_the_folder_as_creatable_files(tmp_path, offered):
    path = incoming_destination(tmp_path, offered, windows=False)
    assert path.parent == tmp_path
    assert path.name == safe_name(offered, windows=False)
    if len(sanitize_filename(offered).encode("utf-8")) <= NAME_BUDGET:
        assert path.name == sanitize_filename(offered)
    else:
        assert sanitize_filename(offered).startswith(path.name)
    with open(path, "xb"):
        pass
    assert listing(tmp_path) == [path.name]


@pytest.mark.parametrize(
    ("offered", "saved"),
    [
        ("C:\\x", "C_x"),
        ("C:x", "C_x"),
        ("notes.txt:secret", "notes.txt_secret"),
        ('a<b>c"d|e?f*g', "a_b_c_d_e_f_g"),
        ("CON", "file"),
    ],
)
def test_windows_names_lose_the_characters_windows_refuses(offered, saved):
    assert safe_name(offered, windows=True) == saved


@pytest.mark.parametrize(
    "offered",
    ["x" * 300 + ".pdf", "\u00e9" * 255, "\U0001f600" * 200 + ".txt", "a" * 250 + "." + "b" * 40],
)
def test_long_names_are_cut_to_fit_every_file_system_keeping_the_extension(tmp_path, offered):
    name = safe_name(offered, windows=False)
    assert len(name.encode("utf-8")) <= NAME_BUDGET
    assert name == sanitize_filename(name)
    if offered.endswith((".pdf", ".txt")):
        assert name.endswith(offered[-4:])
    path = incoming_destination(tmp_path, offered)
    with open(path, "xb"):
        pass
    write_file(path.with_name(path.name), b"")  # and a collision still fits
    assert len(incoming_destination(tmp_path, offered).name.encode("utf-8")) <= 255


@pytest.mark.parametrize(
    ("offered", "second", "third"),
    [
        ("report.pdf", "report (1).pdf", "report (2).pdf"),
        ("archive.tar.gz", "archive (1).tar.gz", "archive (2).tar.gz"),
        ("README", "README (1)", "README (2)"),
        ("../con", "file (1)", "file (2)"),
    ],
)
def test_incoming_destination_never_takes_an_existing_name(tmp_path, offered, second, third):
    first = incoming_destination(tmp_path, offered)
    write_file(first, b"1")
    assert incoming_destination(tmp_path, offered).name == second
    write_file(tmp_path / second, b"2")
    assert incoming_destination(tmp_path, offered).name == third


@posix_only
def test_incoming_destination_treats_a_dangling_symlink_as_taken(tmp_path):
    (tmp_path / "a.txt").symlink_to(tmp_path / "elsewhere")
    assert incoming_destination(tmp_path, "a.txt").name == "a (1).txt"


# --- whole transfers through the relay ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


def start(
    tmp_path: Path, data: bytes, *, name: str = "data.bin", to_folder: str = "inbox"
) -> tuple[Relay, Upload, Download]:
    """Alice offers a file to Bob, Bob accepts into ``to_folder``; nothing flowed yet."""
    relay = Relay()
    for session, user in USERS.items():
        relay.connect(session, user)
    outbox = tmp_path / "outbox"
    outbox.mkdir(exist_ok=True)
    upload = Upload.from_path(write_file(outbox / name, data), "bob", clock=Clock())
    relay.from_client("alice-1", [Send(upload.offer("o1"))])
    offer = relay.inbox["bob-1"].popleft()
    incoming = IncomingTransfer.from_offer(offer)  # type: ignore[arg-type]  # a relayed offer as the relay shows it
    folder = tmp_path / to_folder
    folder.mkdir(exist_ok=True)
    download = Download(incoming, incoming_destination(folder, incoming.name), clock=Clock())
    relay.from_client("bob-1", download.accept())
    return relay, upload, download


def ends(upload: Upload, download: Download) -> dict[str, Any]:
    return {"alice-1": upload, "bob-1": download}


def shown(relay: Relay, session: str, kind: type) -> list[Any]:
    return [event for event in relay.shown[session] if isinstance(event, kind)]


def test_file_crosses_intact_with_progress_and_nothing_else_left(tmp_path):
    data = os.urandom(40 * MAX_CHUNK_SIZE + 999)
    relay, upload, download = start(tmp_path, data, name="holiday photos.zip")
    run(relay, ends(upload, download), random.Random(7))
    assert shown(relay, "alice-1", Finished) == [Finished(True)]
    assert shown(relay, "bob-1", Finished) == [Finished(True)]
    assert download.path == tmp_path / "inbox" / "holiday photos.zip"
    assert download.path.read_bytes() == data
    assert listing(tmp_path / "inbox") == ["holiday photos.zip"]
    assert upload.progress.fraction == 1.0 and download.progress.fraction == 1.0
    assert relay.max_unacked <= 16 and relay.errors == [] and relay.registry.idle


def test_declining_after_choosing_a_place_leaves_no_file(tmp_path):
    relay = Relay()
    for session, user in USERS.items():
        relay.connect(session, user)
    upload = Upload.from_path(write_file(tmp_path / "a.txt", b"hello"), "bob")
    relay.from_client("alice-1", [Send(upload.offer())])
    incoming = IncomingTransfer.from_offer(relay.inbox["bob-1"].popleft())  # type: ignore[arg-type]  # a relayed offer as the relay shows it
    download = Download(incoming, tmp_path / "saved.txt")
    relay.from_client("bob-1", download.reject())
    run(relay, ends(upload, download), random.Random(0))
    assert not (tmp_path / "saved.txt").exists() and listing(tmp_path) == ["a.txt"]
    assert upload.outgoing.reason == "rejected" and relay.registry.idle


def halfway(download: Download) -> Any:
    return lambda relay: download.incoming.bytes_written >= 10 * MAX_CHUNK_SIZE


@pytest.mark.parametrize("side", ["sender", "recipient"])
def test_cancel_mid_way_from_either_side_leaves_no_partial_file(tmp_path, side):
    relay, upload, download = start(tmp_path, os.urandom(64 * MAX_CHUNK_SIZE))
    rng = random.Random(3)
    run(relay, ends(upload, download), rng, until=halfway(download))
    if side == "sender":
        relay.from_client("alice-1", upload.cancel())
    else:
        relay.from_client("bob-1", download.cancel())
    run(relay, ends(upload, download), rng)
    assert listing(tmp_path / "inbox") == []
    assert upload.over and download.over and download.path is None
    other = "bob-1" if side == "sender" else "alice-1"
    assert shown(relay, other, Cancelled) == [Cancelled("cancelled", local=False)]
    assert relay.registry.idle


@pytest.mark.parametrize("gone", ["alice-1", "bob-1"])
def test_either_side_disconnecting_mid_way_leaves_no_partial_file(tmp_path, gone):
    relay, upload, download = start(tmp_path, os.urandom(64 * MAX_CHUNK_SIZE))
    rng = random.Random(4)
    run(relay, ends(upload, download), rng, until=halfway(download))
    # The consumer of the session that went calls drop_session; that end's own client
    # sees its connection drop.
    relay.carry(relay.registry.drop_session(gone))
    relay.inbox[gone].clear()
    (upload if gone == "alice-1" else download).connection_lost()
    run(relay, {k: v for k, v in ends(upload, download).items() if k != gone}, rng)
    assert listing(tmp_path / "inbox") == []
    other = "bob-1" if gone == "alice-1" else "alice-1"
    assert shown(relay, other, Cancelled) == [Cancelled("disconnected", local=False)]
    assert upload.over and download.over and relay.registry.idle


def test_sender_file_changed_during_the_transfer_is_cancelled_and_not_kept(tmp_path):
    data = os.urandom(20 * MAX_CHUNK_SIZE)
    relay, upload, download = start(tmp_path, data)
    with open(upload.source.path, "r+b") as file:
        file.seek(len(data) - 10)
        file.write(b"0123456789")
    run(relay, ends(upload, download), random.Random(5))
    assert shown(relay, "alice-1", Cancelled) == [Cancelled("file_changed", local=True)]
    assert shown(relay, "bob-1", Cancelled) == [Cancelled("file_changed", local=False)]
    assert listing(tmp_path / "inbox") == [] and relay.registry.idle


def test_recipient_discards_a_file_whose_hash_does_not_match_the_offer(tmp_path):
    relay = Relay()
    for session, user in USERS.items():
        relay.connect(session, user)
    upload = Upload.from_path(write_file(tmp_path / "a.bin", os.urandom(5000)), "bob")
    upload.outgoing.sha256 = "00" * 32  # a sender that lies (or a bug)
    relay.from_client("alice-1", [Send(upload.offer())])
    incoming = IncomingTransfer.from_offer(relay.inbox["bob-1"].popleft())  # type: ignore[arg-type]  # a relayed offer as the relay shows it
    (tmp_path / "in").mkdir()
    download = Download(incoming, tmp_path / "in" / "a.bin")
    relay.from_client("bob-1", download.accept())
    run(relay, ends(upload, download), random.Random(0))
    [finished] = shown(relay, "bob-1", Finished)
    assert not finished.ok and "SHA-256" in finished.detail
    assert shown(relay, "alice-1", Finished) == [Finished(False)]
    assert listing(tmp_path / "in") == [] and relay.registry.idle


def test_recipient_disk_failure_cancels_and_leaves_no_file(tmp_path, monkeypatch):
    relay, upload, download = start(tmp_path, os.urandom(30 * MAX_CHUNK_SIZE))
    rng = random.Random(6)
    run(relay, ends(upload, download), rng, until=halfway(download))

    def full(data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download.sink, "write", full)
    run(relay, ends(upload, download), rng)
    assert shown(relay, "bob-1", Cancelled) == [Cancelled("write_failed", local=True)]
    assert shown(relay, "alice-1", Cancelled) == [Cancelled("write_failed", local=False)]
    assert listing(tmp_path / "inbox") == [] and relay.registry.idle


def test_empty_file_crosses_and_is_created(tmp_path):
    relay, upload, download = start(tmp_path, b"", name="empty.txt")
    run(relay, ends(upload, download), random.Random(0))
    assert download.path is not None and download.path.read_bytes() == b""
    assert upload.outgoing.state is TransferState.FINISHED


def test_memory_stays_flat_while_64_mib_stream_through(tmp_path):
    source = tmp_path / "outbox"
    source.mkdir()
    with open(source / "big.bin", "wb") as file:
        for _ in range(64):
            file.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        relay = Relay()
        for session, user in USERS.items():
            relay.connect(session, user)
        upload = Upload.from_path(source / "big.bin", "bob")
        relay.from_client("alice-1", [Send(upload.offer())])
        incoming = IncomingTransfer.from_offer(relay.inbox["bob-1"].popleft())  # type: ignore[arg-type]  # a relayed offer as the relay shows it
        download = Download(incoming, tmp_path / "big.bin")
        relay.from_client("bob-1", download.accept())
        run(relay, ends(upload, download), random.Random(8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert download.path is not None and download.path.stat().st_size == 64 << 20
    assert upload.outgoing.state is TransferState.FINISHED
    # The window (16 x 64 KiB), the hashing buffer and bookkeeping; not the file.
    assert peak < 6 << 20, f"peak traced memory {peak} bytes"


# --- words -----------------------------------------------------------------------------------


def test_sizes_and_durations_read_naturally():
    assert [format_size(n) for n in (0, 1023, 1536, 5 * 2**20, 3 * 2**30)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]
    assert [format_duration(s) for s in (8.4, 125, 4800)] == ["8 s", "2 min 05 s", "1 h 20 min"]


def test_progress_is_described_with_bytes_rate_and_time_left():
    progress = Progress(10 * 2**20)
    assert describe_progress(progress) == "0 B of 10.0 MiB (0%)"
    progress.update(0, 0.0)
    progress.update(2 * 2**20, 2.0)
    assert describe_progress(progress) == "2.0 MiB of 10.0 MiB (20%), 1.0 MiB/s, 8 s left"


def test_every_cancel_reason_has_words_and_unknown_ones_pass_through():
    for reason in CancelReason:
        assert describe_reason(reason) != reason.value or reason == "cancelled"
    assert describe_reason("expired") == "the offer was not answered within 5 minutes"
    assert describe_reason("the printer is on fire") == "the printer is on fire"


def test_accepting_after_the_offer_expired_in_the_save_dialog_leaves_no_file(tmp_path):
    offer = {"type": "file_offer", "transfer": "ab" * 16, "from": "alice", "name": "a.txt"}
    offer.update(size=3, sha256=sha(b"abc"), to="bob")
    incoming = IncomingTransfer.from_offer(offer)
    download = Download(incoming, tmp_path / "a.txt")
    download.handle({"type": "file_cancel", "transfer": "ab" * 16, "reason": "expired"})
    assert download.accept() == []
    assert listing(tmp_path) == []


# --- progress (moved from tests/chatproto/test_transfer_progress.py) --------------------------


def test_progress_rate_follows_the_last_seconds_and_gives_the_time_left():
    progress = Progress(1000, window=5.0)
    assert progress.rate is None and progress.remaining_seconds is None
    progress.update(0, 100.0)
    progress.update(100, 101.0)  # 100 B/s
    assert progress.rate == 100.0 and progress.remaining_seconds == 9.0
    for second in range(2, 12):  # then 10 B/s for ten seconds
        progress.update(100 + 10 * (second - 1), 100.0 + second)
    assert progress.rate == pytest.approx(10.0)  # the fast start has left the window
    assert progress.remaining_seconds == pytest.approx((1000 - 200) / 10.0)
    assert progress.fraction == pytest.approx(0.2)


def test_progress_of_an_empty_file_is_complete_and_a_stalled_one_has_no_time_left():
    assert Progress(0).fraction == 1.0 and Progress(0).remaining_seconds == 0.0
    stalled = Progress(100)
    stalled.update(10, 0.0)
    stalled.update(10, 1.0)
    assert stalled.rate == 0.0 and stalled.remaining_seconds is None


def test_progress_survives_a_clock_going_backwards():
    progress = Progress(100)
    progress.update(10, 5.0)
    progress.update(20, 4.0)
    assert progress.rate is None and progress.done == 20
