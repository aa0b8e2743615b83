"""The key directory as this device knows it: each tracked user's user key and devices,
from ``keys`` answers (section 4.3), checked, and which lists are stale.

A user's list is stale from a ``devices_changed`` (or ``device_list_changes``) naming them
until the next ``keys`` answer: room keys are shared only from fresh lists, since a stale
list is the most common cause of undecryptable messages.

The lists are kept in the store (4.10: public keys only, as received): a restarted client
still knows whom it tracks. They are checked again when read back, as if just received.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import UntrustedKeys
from .keys import DeviceKeys, Peer, PublishedUserKey


@dataclass
class UserKeys:
    """One user's keys as the last ``keys`` answer gave them (each device self-signed)."""

    user_key: PublishedUserKey | None
    devices: dict[str, DeviceKeys]
    _signed: dict[str | None, list[DeviceKeys]] = field(
        default_factory=dict, repr=False, compare=False
    )  # which devices each user key signed: the answer is replaced whole, never edited

    @classmethod
    def from_wire(cls, user: str, entry: Mapping[str, Any]) -> UserKeys:
        """Parse ``keys.users[user]``, keeping only valid objects that name ``user``.

        The user key is trusted through the contact's pin (tofu, verified), not through
        the device that published it: that device may have been revoked since.
        """
        devices: dict[str, DeviceKeys] = {}
        raw_devices = entry.get("devices")
        for raw in raw_devices if isinstance(raw_devices, list) else []:
            try:
                device = DeviceKeys.from_wire(raw)
            except UntrustedKeys:
                continue
            if device.user == user:  # only the user asked for (section 4.2)
                devices[device.device] = device
        user_key = None
        if isinstance(entry.get("user_key"), Mapping):
            try:
                candidate = PublishedUserKey.from_wire(entry["user_key"])
            except UntrustedKeys:
                candidate = None
            if candidate is not None and candidate.user == user:
                user_key = candidate
        return cls(user_key, devices)

    def to_wire(self) -> dict[str, Any]:
        """The entry as a ``keys`` answer gives it (what :meth:`from_wire` reads back)."""
        return {
            "user_key": self.user_key.to_wire() if self.user_key else None,
            "devices": [d.to_wire() for _, d in sorted(self.devices.items())],
        }

    def signed_devices(self, user_key: str | None = None) -> list[DeviceKeys]:
        """The devices that the user's current user key signed: the only ones that get
        (and whose room keys are accepted as) room keys. ``user_key`` replaces the
        published one (a device's own user: the key it holds counts, not the server's)."""
        key = user_key or (self.user_key.ed25519 if self.user_key else None)
        signed = self._signed.get(key)
        if signed is None:  # ed25519 checks: once per key, not once per message sent
            signed = [d for d in self.devices.values() if d.signed_by_user_key(key)]
            self._signed[key] = signed
        return list(signed)


@dataclass
class DeviceDirectory:
    """Tracked users' keys; a user is tracked from the first ``keys`` answer naming them."""

    users: dict[str, UserKeys] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)

    def to_state(self) -> dict[str, Any]:
        """The lists as received (public keys only) and which are stale, for the store."""
        return {
            "users": {user: keys.to_wire() for user, keys in sorted(self.users.items())},
            "stale": sorted(self.stale),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DeviceDirectory:
        """The lists of :meth:`to_state`, every signature checked again (a key object that
        no longer checks is dropped, as it would be from a ``keys`` answer)."""
        users = state.get("users")
        if not isinstance(users, Mapping):
            raise ValueError("the stored device lists are not an object")
        directory = cls()
        for user, entry in users.items():
            if isinstance(user, str) and isinstance(entry, Mapping):
                directory.users[user] = UserKeys.from_wire(user, entry)
        stale = state.get("stale")
        stale = stale if isinstance(stale, list) else []
        directory.stale = {u for u in stale if isinstance(u, str) and u in directory.users}
        return directory

    def needs_query(self, users: Iterable[str]) -> set[str]:
        """Which of ``users`` must be queried before a room key is shared with them."""
        return {u for u in users if u not in self.users or u in self.stale}

    def mark_changed(self, users: Iterable[str]) -> set[str]:
        """A change announced for ``users``; the tracked ones (to query again)."""
        tracked = {u for u in users if u in self.users}
        self.stale |= tracked
        return tracked

    def take(self, user: str, keys: UserKeys) -> set[Peer]:
        """Keep ``user``'s fresh keys; the devices that disappeared from the list."""
        known = self.users.get(user)
        gone = set(known.devices) - set(keys.devices) if known else set()
        self.users[user] = keys
        self.stale.discard(user)
        return {(user, device) for device in gone}

    def user_key(self, user: str) -> str | None:
        entry = self.users.get(user)
        return entry.user_key.ed25519 if entry and entry.user_key else None

    def published_user_key(self, user: str) -> PublishedUserKey | None:
        entry = self.users.get(user)
        return entry.user_key if entry else None

    def device(self, user: str, device: str) -> DeviceKeys | None:
        entry = self.users.get(user)
        return entry.devices.get(device) if entry else None

    def signed_devices(
        self, users: Iterable[str], key_of: Callable[[str], str | None] | None = None
    ) -> list[DeviceKeys]:
        """Every signed device of ``users``, in a stable order; ``key_of(user)`` gives the
        user key to check with (default: the published one)."""
        found: list[DeviceKeys] = []
        for user in sorted(set(users)):
            entry = self.users.get(user)
            if entry is not None:
                key = key_of(user) if key_of is not None else None
                found.extend(entry.signed_devices(key))
        return found
