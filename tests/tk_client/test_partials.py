"""Temporary download files a killed client left are removed at the next start, only those."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tk_client.files.sink import FileSink
from tk_client.partials import PartialFiles

PROJECT_DIR = Path(__file__).resolve().parents[2]

# A receiver that creates its temporary file, writes part of it and waits to be killed.
KILLED_RECEIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tk_client.partials import PartialFiles
    from tk_client.files.sink import FileSink
    journal = PartialFiles(Path(sys.argv[1]))
    sink = FileSink(Path(sys.argv[2]), size=1 << 20, sha256="0" * 64, journal=journal)
    sink.write(b"x" * 4096)
    sink.flush()
    print(sink.temp_path, flush=True)
    time.sleep(600)
    """
)


def killed_receiver(journals: Path, destination: Path) -> Path:
    """Run a receiver until its temporary file exists, SIGKILL it; the file it left."""
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RECEIVER, str(journals), str(destination)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_DIR,
    )
    try:
        temp = Path(process.stdout.readline().strip())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        process.stdout.close()
    assert temp.name.startswith(f".{destination.name}.") and temp.name.endswith(".part")
    assert temp.exists()  # the kill left it, as the cleanup must assume
    return temp


@pytest.fixture
def journals(tmp_path):
    return tmp_path / "config" / "partial-files"


@pytest.fixture
def downloads(tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


def test_the_next_start_removes_what_a_killed_receiver_left(journals, downloads):
    temp = killed_receiver(journals, downloads / "movie.mkv")
    users_own = downloads / ".notes.txt.part"  # same pattern, not ours
    users_own.write_text("keep me")

    removed = PartialFiles(journals).remove_stale()

    assert removed == [temp]
    assert sorted(os.listdir(downloads)) == [".notes.txt.part"]
    assert users_own.read_text() == "keep me"
    assert list(journals.iterdir()) == []  # the dead client's journal went too


def test_a_file_put_at_the_same_path_later_is_not_removed(journals, downloads):
    temp = killed_receiver(journals, downloads / "movie.mkv")
    temp.rename(downloads / "moved")  # keeps the inode in use, so the new file gets another
    temp.write_bytes(b"someone else's file")
    temp.chmod(0o600)

    assert PartialFiles(journals).remove_stale() == []
    assert temp.read_bytes() == b"someone else's file"


def test_a_file_whose_mode_changed_is_not_removed(journals, downloads):
    temp = killed_receiver(journals, downloads / "movie.mkv")
    temp.chmod(0o644)  # not what mkstemp left: someone adopted it

    assert PartialFiles(journals).remove_stale() == []
    assert temp.exists()


def test_a_symlink_at_the_path_is_not_followed_or_removed(journals, downloads, tmp_path):
    temp = killed_receiver(journals, downloads / "movie.mkv")
    target = tmp_path / "precious"
    target.write_text("precious")
    temp.unlink()
    temp.symlink_to(target)

    assert PartialFiles(journals).remove_stale() == []
    assert temp.is_symlink() and target.read_text() == "precious"


def test_a_running_clients_files_are_left_alone(journals, downloads):
    running = PartialFiles(journals)
    sink = FileSink(downloads / "big.iso", size=10, sha256="0" * 64, journal=running)

    assert PartialFiles(journals).remove_stale() == []  # another client sharing the folder
    assert sink.temp_path.exists()
    mode = stat.S_IMODE(os.stat(running.path).st_mode)
    assert mode == 0o600

    sink.abort()
    running.close()
    assert not sink.temp_path.exists() and list(journals.iterdir()) == []


def test_finished_downloads_leave_nothing_for_the_cleanup(journals, downloads):
    data = b"hello"
    first = PartialFiles(journals)
    with FileSink(
        downloads / "a.txt", size=5, sha256=hashlib.sha256(data).hexdigest(), journal=first
    ) as sink:
        sink.write(data)
        sink.commit()
    aborted = FileSink(downloads / "b.txt", size=5, sha256="0" * 64, journal=first)
    aborted.abort()
    first.abandon()  # the process "dies" without closing its journal

    assert PartialFiles(journals).remove_stale() == []
    assert (downloads / "a.txt").read_bytes() == data
    assert sorted(os.listdir(downloads)) == ["a.txt"]
    assert list(journals.iterdir()) == []
