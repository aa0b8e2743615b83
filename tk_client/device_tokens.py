"""The tokens of remembered devices (PROTOCOL.md 3.4), kept like passwords: mode 0600.

A client that logs in with ``remember`` receives a device token; with it the
client logs in again (``resume``) without the password. The token is as good
as the password for that account until it is revoked, so it lives only in
``device_tokens.json`` in the client's folder (:func:`tk_client.config.config_dir`,
mode 0700), a file of mode 0600 written atomically by
:func:`chatproto.crypto_utils.write_secret_file`, and never in a log, an
exception or a ``repr``.

Tokens are kept per server *key* (its fingerprint), not per address: a token
is only ever sent to the server that issued it, even if the name it is reached
by changes or another server answers at the old address. Per server the file
also remembers which username stored a token last, so a client can offer to
continue as that user.

The file is re-read on every call (like ``known_servers``), so two clients
running at once never lose each other's tokens.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import config_dir, write_private_text

DEVICE_TOKENS_FILE = "device_tokens.json"
_VERSION = 1


@dataclass(frozen=True)
class StoredDevice:
    """One remembered device: its id on the server and its token (never shown)."""

    device: str
    token: str = field(repr=False)


class DeviceTokens:
    """The device tokens of one client folder. Safe to share between threads."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or config_dir()) / DEVICE_TOKENS_FILE
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<DeviceTokens {self.path}>"

    def get(self, fingerprint: str, username: str) -> StoredDevice | None:
        """The device stored for ``username`` on the server with this key, if any."""
        with self._lock:
            entry = self._users(self._read(), fingerprint).get(username)
        if not isinstance(entry, dict):
            return None
        device, token = entry.get("device"), entry.get("token")
        if not isinstance(device, str) or not isinstance(token, str) or not device or not token:
            return None
        return StoredDevice(device, token)

    def put(self, fingerprint: str, username: str, device: str, token: str) -> None:
        """Store (or replace) the device of ``username`` on this server."""
        with self._lock:
            data = self._read()
            servers = data.setdefault("servers", {})
            users = servers.setdefault(fingerprint, {})
            users[username] = {"device": device, "token": token, "stored": time.time()}
            self._write(data)

    def forget(self, fingerprint: str, username: str) -> bool:
        """Remove the device of ``username`` on this server; True if there was one."""
        with self._lock:
            data = self._read()
            users = self._users(data, fingerprint)
            if username not in users:
                return False
            del users[username]
            if not users:
                data["servers"].pop(fingerprint, None)
            self._write(data)
            return True

    def last_username(self, fingerprint: str) -> str | None:
        """The username that stored a device on this server most recently, if any."""
        with self._lock:
            users = self._users(self._read(), fingerprint)
        stored = [
            (entry.get("stored", 0), name)
            for name, entry in users.items()
            if isinstance(entry, dict) and isinstance(entry.get("stored", 0), int | float)
        ]
        return max(stored)[1] if stored else None

    # --- the file -------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        """The file's content; an empty store when it is missing or unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"version": _VERSION, "servers": {}}
        if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
            return {"version": _VERSION, "servers": {}}
        return data

    @staticmethod
    def _users(data: dict[str, Any], fingerprint: str) -> dict[str, Any]:
        users = data.get("servers", {}).get(fingerprint)
        return users if isinstance(users, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        data["version"] = _VERSION
        write_private_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
