"""STAND-IN until the ``backup`` branch lands: the key backup's link API (4.13), as agreed.

The engine and :class:`~tk_client.e2e.link.E2ELink` side of the key backup is written on
another branch; these are its names as the user interface codes against them, so the
views and commands can be built and tested with a fake link meanwhile. When that branch
is merged, :mod:`tk_client.backup_actions` imports the real ones instead and this file
goes. No logic here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BackupStatus(enum.Enum):
    UNKNOWN = "unknown"  # not asked the server yet
    NONE = "none"  # no backup on the server
    ON = "on"  # this device holds the backup key
    NEEDS_KEY = "needs_key"  # a backup exists; this device lacks its key


@dataclass(frozen=True)
class BackupEnabled:
    version: int


@dataclass(frozen=True)
class BackupRestoreProgress:
    done: int
    total: int | None


@dataclass(frozen=True)
class BackupRestored:
    restored: int
    skipped: int


@dataclass(frozen=True)
class BackupProblem:
    text: str


@dataclass(frozen=True)
class BackupChanged:
    version: int
    device: str
    name: str
    by_me: bool
