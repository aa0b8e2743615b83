"""Trust on first use: the server keys this user has accepted, like OpenSSH's known_hosts.

The file ``known_servers`` in the config folder (mode 0600, folder 0700) holds one
line per server::

    # comments and blank lines are kept
    ws://127.0.0.1:8000 SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU

The address is normalised (``scheme://host:port``, see :mod:`tk_client.address`), so
``localhost:8000`` and ``ws://LOCALHOST:8000/ws/chat/`` are the same server. The
check runs on the server's hello, before the client sends its key
(:class:`chatproto.connection.ServerHello`): an unknown server is the user's
decision, a changed key is refused until the user deliberately forgets the old one.
"""

from __future__ import annotations

import enum
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .address import ServerAddress
from .config import config_dir, write_private_text

KNOWN_SERVERS_FILE = "known_servers"
FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
# How the server's administrator shows its fingerprint (what a user compares against).
FINGERPRINT_COMMAND = "python manage.py server_key"
FORGET_COMMAND = "python -m tk_client.cli --forget-server {address}"


class Trust(enum.Enum):
    TRUSTED = "trusted"  # pinned, and the key matches
    UNKNOWN = "unknown"  # never seen: ask the user
    CHANGED = "changed"  # pinned to another key: refuse


@dataclass(frozen=True)
class TrustCheck:
    """The answer for one server: ``expected`` is the pinned fingerprint, if any."""

    trust: Trust
    address: str
    received: str
    expected: str | None = None


def normalise_fingerprint(text: str) -> str | None:
    """``SHA256:...`` from what a user pasted (the prefix may be missing), or None if invalid."""
    value = "".join(text.split())
    if value and not value.upper().startswith("SHA256:"):
        value = "SHA256:" + value
    elif value:
        value = "SHA256:" + value[len("SHA256:") :]
    return value if FINGERPRINT_RE.fullmatch(value) else None


def changed_key_warning(address: str, expected: str, received: str) -> str:
    """The refusal, in words that say what happened and what to do next."""
    return (
        f"WARNING: the key of the server {address} has CHANGED.\n"
        f"  expected (trusted before): {expected}\n"
        f"  received now:              {received}\n"
        "Someone may be intercepting the connection, or the server's administrator "
        "replaced its key. The connection was refused and nothing was sent.\n"
        "Ask the administrator for the server's fingerprint (they see it with "
        f"`{FINGERPRINT_COMMAND}`). Only if it matches the received one, forget the old "
        f"key with `{FORGET_COMMAND.format(address=address)}` (or 'Trust new key' in the "
        "desktop client) and connect again."
    )


class KnownServers:
    """The pinned keys in one file. Safe to share between threads; re-read on every check.

    Re-reading means a key accepted in another client (or removed with
    ``--forget-server``) counts at once, and writes never lose another client's lines.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or (config_dir() / KNOWN_SERVERS_FILE)
        self._lock = threading.Lock()

    def _read_lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    @staticmethod
    def _parse(line: str) -> tuple[str, str] | None:
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            return fields[0], fields[1]
        return None

    def get(self, address: ServerAddress) -> str | None:
        """The fingerprint pinned for ``address``, if any."""
        with self._lock:
            for line in self._read_lines():
                entry = self._parse(line)
                if entry and entry[0] == address.key:
                    return entry[1]
        return None

    def check(self, address: ServerAddress, fingerprint: str) -> TrustCheck:
        """Compare the fingerprint the server presented with the pinned one."""
        expected = self.get(address)
        if expected is None:
            return TrustCheck(Trust.UNKNOWN, address.key, fingerprint)
        if expected == fingerprint:
            return TrustCheck(Trust.TRUSTED, address.key, fingerprint, expected)
        return TrustCheck(Trust.CHANGED, address.key, fingerprint, expected)

    def trust(self, address: ServerAddress, fingerprint: str) -> None:
        """Pin ``fingerprint`` for a server that has no key pinned yet.

        Refuses (ValueError) to replace a different pinned key: that must be a
        deliberate :meth:`forget` first, so no code path can quietly accept a change.
        """
        if normalise_fingerprint(fingerprint) != fingerprint:
            raise ValueError("not a SHA256 fingerprint")
        with self._lock:
            lines = self._read_lines()
            for line in lines:
                entry = self._parse(line)
                if entry and entry[0] == address.key:
                    if entry[1] == fingerprint:
                        return
                    raise ValueError(f"{address.key} is pinned to another key; forget it first")
            lines.append(f"{address.key} {fingerprint}")
            write_private_text(self.path, "\n".join(lines) + "\n")

    def forget(self, address: ServerAddress) -> str | None:
        """Remove the pinned key of ``address``; return it (None if there was none)."""
        with self._lock:
            lines = self._read_lines()
            kept, removed = [], None
            for line in lines:
                entry = self._parse(line)
                if entry and entry[0] == address.key:
                    removed = entry[1]
                else:
                    kept.append(line)
            if removed is not None:
                write_private_text(self.path, "".join(f"{line}\n" for line in kept))
            return removed

    def replace(self, address: ServerAddress, old: str, new: str) -> None:
        """Accept a changed key, but only the exact change the user was shown.

        ``old`` must still be the pinned key: if something changed the file in the
        meantime, nothing is replaced (ValueError).
        """
        with self._lock:
            current = None
            for line in self._read_lines():
                entry = self._parse(line)
                if entry and entry[0] == address.key:
                    current = entry[1]
        if current != old:
            raise ValueError("the pinned key changed in the meantime; check again")
        self.forget(address)
        self.trust(address, new)
