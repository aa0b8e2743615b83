"""People using the real desktop client's session layer against live servers, for fault tests.

A :class:`Person` is a :class:`tk_client.session.ChatSession` (the network
layer of the Tk and terminal clients: reconnection with backoff, an outbox
that sends what was typed during an outage, "uncertain" for what was on the
wire when a connection dropped) plus a record of everything it was told, so
a test can ask which of its messages the server acknowledged and which it saw.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.hardening.helpers import PASSWORD
from tests.tk_client.helpers import WAIT_SECONDS, make_session
from tk_client.address import parse_address
from tk_client.events import (
    LoggedIn,
    Received,
    RequestState,
    RequestStatus,
    RequestUpdate,
    Stopped,
)


class Person:
    def __init__(self, name: str, url: str, fingerprint: str, home: Path) -> None:
        self.name = name
        self.session, self.log = make_session(
            parse_address(url), home / f"{name}-known-servers", expected_fingerprint=fingerprint
        )
        self.logins = 0
        self.requests: dict[str, RequestStatus] = {}
        self.answers: dict[str, dict[str, Any]] = {}
        self.heard: list[dict[str, Any]] = []
        self.stopped: Stopped | None = None

    def log_in(self) -> None:
        self.session.login(self.name, PASSWORD)
        self.wait_until(lambda: self.logins >= 1)

    def say(self, text: str, room: str = "lobby") -> str:
        status = self.session.request("send", room=room, text=text)
        self.requests[status.id] = status
        return status.id

    def pump(self, timeout: float = 0.05) -> None:
        """Take what the session reported so far (and up to ``timeout`` more)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.session.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # queue.Empty
                return
            self.log.seen.append(event)
            if isinstance(event, LoggedIn):
                self.logins += 1
            elif isinstance(event, RequestUpdate):
                self.requests[event.request.id] = event.request
                if event.answer is not None:
                    self.answers[event.request.id] = event.answer
            elif isinstance(event, Received) and event.message.get("type") == "message":
                self.heard.append(event.message)
            elif isinstance(event, Stopped):
                self.stopped = event

    def wait_until(self, condition, timeout: float = WAIT_SECONDS, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.stopped is not None:
                raise AssertionError(f"{self.name}'s session stopped: {self.stopped}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: {what or 'condition'} never came true; saw {self.log.seen[-12:]}"
                )
            self.pump(0.05)

    def settled(self) -> bool:
        """Every request answered or failed."""
        self.pump(0)
        return all(
            r.state in (RequestState.DONE, RequestState.FAILED) for r in self.requests.values()
        )

    def acked(self) -> dict[int, str]:
        """``msg_id -> text`` of every message the server acknowledged."""
        self.pump(0)
        return {
            self.answers[rid]["msg_id"]: status.message["text"]
            for rid, status in self.requests.items()
            if status.state is RequestState.DONE and self.answers.get(rid, {}).get("type") == "ack"
        }

    def heard_ids(self) -> list[int]:
        self.pump(0)
        return [message["msg_id"] for message in self.heard]

    def close(self) -> None:
        self.session.close()
