"""Small helpers shared by the client tests: waiting for session events, building sessions."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tk_client.address import ServerAddress
from tk_client.known_servers import KnownServers
from tk_client.session import Backoff, ChatSession

# Generous: waiting is not a timing assertion; it only bounds a hung test.
WAIT_SECONDS = 30.0


class EventLog:
    """Every event taken from a session's queue, so a test can wait for one and look back."""

    def __init__(self, session: ChatSession) -> None:
        self.session = session
        self.seen: list[Any] = []

    def wait_for(
        self,
        kind: type | tuple[type, ...],
        where: Callable[[Any], bool] = lambda event: True,
        timeout: float = WAIT_SECONDS,
    ) -> Any:
        """The next event of ``kind`` for which ``where`` holds (older ones stay in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} event arrived; saw {self.seen[-15:]}")
            try:
                event = self.session.events.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(event)
            if isinstance(event, kind) and where(event):
                return event

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.seen if isinstance(event, kind)]


def make_session(
    address: ServerAddress,
    known_path: Path,
    *,
    backoff: Backoff | None = None,
    **kwargs: Any,
) -> tuple[ChatSession, EventLog]:
    session = ChatSession(
        address,
        KnownServers(known_path),
        backoff=backoff or Backoff(initial=0.05, maximum=0.2),
        **kwargs,
    )
    return session, EventLog(session)


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    """Poll ``condition`` until it holds; fail (not skip) if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.02)
