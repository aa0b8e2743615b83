""":class:`chat.presence_feed.PresenceFeed` on its own: fakes for the registry and the
sessions, the test's cache (shared, like Redis, by every feed built here)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat.presence_feed import PresenceFeed, _SortedSet


class FakeSession:
    def __init__(self, username: str, presence_seq: int | None = 0) -> None:
        self.username = username
        self.channel_name = f"{username}-channel"
        self.presence_seq = presence_seq


class FakeRegistry:
    """What the feed needs of :class:`chat.sessions.SessionRegistry`; records the pushes."""

    def __init__(self, *sessions: FakeSession) -> None:
        self.sessions = list(sessions)
        self.pushed: list[tuple[str, dict[str, Any]]] = []

    def local_sessions(self) -> list[FakeSession]:
        return list(self.sessions)

    def local_count(self) -> int:
        return len(self.sessions)

    def has_username(self, username: str) -> bool:
        return any(s.username == username for s in self.sessions)

    async def push_to(self, sessions, plaintext: bytes, presence_seq: int | None = None) -> None:
        self.pushed += [(s.username, json.loads(plaintext)) for s in sessions]


def feed_with_view(registry: FakeRegistry, online=(), everyone=()) -> PresenceFeed:
    """A feed whose view is already read (no database)."""
    feed = PresenceFeed(registry)  # type: ignore[arg-type]
    feed.online = _SortedSet(online)
    feed.all = _SortedSet(everyone)
    return feed


def test_the_interval_counts_the_sessions_without_copying_them(chat_settings):
    class Counting(FakeRegistry):
        def local_sessions(self):
            raise AssertionError("interval() copied the sessions")

    feed = PresenceFeed(Counting(*(FakeSession(f"u{n}") for n in range(600))))  # type: ignore[arg-type]
    chat_settings.CHAT_PRESENCE_INTERVAL = 0
    assert feed.interval() == 2
