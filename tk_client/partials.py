"""Remember the temporary files of downloads in progress, to remove them after a crash.

A download is written to a hidden temporary file beside its destination
(``.<name>.<random>.part``, see :class:`tk_client.files.sink.FileSink`) and
removed on every ending the process sees. A process killed outright (SIGKILL,
power loss) sees none, so the file would stay forever. Each running client
therefore keeps a journal in its config folder (``partial-files/``, mode 0700;
journals 0600) of the temporary files it created, and the next client to
start removes what dead clients left.

Why it is safe, that is, why it never deletes a file the client did not create:

- Only files listed in a journal are candidates, never a folder scan.
- A listed file is removed only if its name still has the temporary pattern
  (hidden, ``.part``), it is a regular file (not a symlink; checked with
  ``lstat``), ours and still mode 0600, and its device and inode are those
  recorded when it was created. A file someone put at that exact random path
  later has another inode (unless the file system reused the number of the
  deleted one, and then it also needs our uid and mode 0600 to be touched).
- Each process writes only its own journal, named with its pid and a random
  token, and holds an exclusive ``flock`` on it for its lifetime. The kernel
  drops the lock when the process dies however it dies, so a journal whose lock
  can be taken belongs to a dead process; a journal still locked belongs to a
  running client (two clients sharing a config folder) and is left alone, files
  and all. No pid liveness guess, so pid reuse cannot fool it.
- Where ``fcntl`` is missing (Windows) nothing is cleaned: better a stale file
  than a deleted one.

The window between creating a temporary file and recording it is one system
call; a kill exactly there leaves a file unrecorded, as before this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import threading
from pathlib import Path

from .config import config_dir, ensure_config_dir

try:
    import fcntl
except ImportError:  # Windows: no cleanup (see the module docstring)
    fcntl = None  # type: ignore[assignment]  # no fcntl on Windows: journals go unlocked there

JOURNAL_FOLDER = "partial-files"
JOURNAL_SUFFIX = ".journal"
TEMP_SUFFIX = ".part"


def is_temporary_name(path: Path) -> bool:
    """True for names that :class:`~tk_client.files.sink.FileSink` creates: ``.<name>.<x>.part``."""
    name = path.name
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and len(name) > len(TEMP_SUFFIX) + 1


class PartialFiles:
    """This process's journal of temporary download files, and the cleanup of dead ones.

    ``folder``: where journals live (default ``<config folder>/partial-files``).
    Thread-safe: transfers run on their own worker threads.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or (config_dir() / JOURNAL_FOLDER)
        self._lock = threading.Lock()
        self._fd: int | None = None  # our journal, created (and locked) on first use
        self.path: Path | None = None

    # -- this process's files -------------------------------------------------------------------

    def add(self, temp_path: Path, fd: int) -> None:
        """Record ``temp_path`` (open as ``fd``, so its identity is the one we created)."""
        info = os.fstat(fd)
        path = os.path.abspath(temp_path)
        self._append({"add": path, "dev": info.st_dev, "ino": info.st_ino})

    def forget(self, temp_path: Path) -> None:
        """``temp_path`` is gone (committed or removed): the next start need not look at it."""
        self._append({"done": os.path.abspath(temp_path)})

    def close(self) -> None:
        """Remove our journal: call when no transfer is open any more (the client quits)."""
        with self._lock:
            if self._fd is None:
                return
            assert self.path is not None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = None

    def abandon(self) -> None:
        """Let go of our journal as a killed process does: closed, its lock dropped, not removed.

        The next start then judges what it lists (crash drills and tests); a
        client that quits normally calls :meth:`close` instead.
        """
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _append(self, entry: dict[str, object]) -> None:
        line = (json.dumps(entry, ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            fd = self._open()
            if fd is None:
                return
            # A full disk must not fail the download; only the cleanup after a crash is lost.
            with contextlib.suppress(OSError):
                os.write(fd, line)

    def _open(self) -> int | None:
        if self._fd is not None:
            return self._fd
        if fcntl is None:
            return None
        try:
            ensure_config_dir(self.folder)
            path = self.folder / f"{os.getpid()}-{secrets.token_hex(8)}{JOURNAL_SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and unique: free to take
        except OSError:  # no locks on this file system: a journal others could not judge
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        self._fd, self.path = fd, path
        return fd

    # -- what dead processes left ---------------------------------------------------------------

    def remove_stale(self) -> list[Path]:
        """Remove the temporary files that dead clients recorded; return the paths removed."""
        if fcntl is None:
            return []
        try:
            journals = sorted(self.folder.glob(f"*{JOURNAL_SUFFIX}"))
        except OSError:
            return []
        removed: list[Path] = []
        for journal in journals:
            if journal == self.path:
                continue
            with contextlib.suppress(OSError):
                removed += self._clean_journal(journal)
        return removed

    def _clean_journal(self, journal: Path) -> list[Path]:
        fd = os.open(journal, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return []  # its client is running
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read()
            removed = [entry[0] for entry in _leftovers(data) if _remove_if_ours(*entry)]
            journal.unlink()  # still under our lock: no one else reads it half-cleaned
            return removed
        finally:
            os.close(fd)


def _leftovers(data: bytes) -> list[tuple[Path, int, int]]:
    """The files a journal added and did not mark done (a torn last line is ignored)."""
    added: dict[str, tuple[int, int]] = {}
    for raw in data.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("done"), str):
            added.pop(entry["done"], None)
        elif isinstance(entry.get("add"), str):
            dev, ino = entry.get("dev"), entry.get("ino")
            if type(dev) is int and type(ino) is int:
                added[entry["add"]] = (dev, ino)
    return [(Path(path), dev, ino) for path, (dev, ino) in added.items()]


def _remove_if_ours(path: Path, dev: int, ino: int) -> bool:
    """Unlink ``path`` only if it is still the regular temporary file that was recorded."""
    if not path.is_absolute() or not is_temporary_name(path):
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (dev, ino):
        return False
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return False  # mkstemp made it ours
    if stat.S_IMODE(info.st_mode) != 0o600:
        return False  # mkstemp made it 0600; someone changed it since: not ours to judge
    try:
        os.unlink(path)
    except OSError:
        return False
    return True
