"""A stand-in for :class:`tk_client.e2e.link.E2ELink` in the controller's tests.

It "seals" a text as ``{"algorithm": "megolm.v1", "ciphertext": "sealed:<text>"}`` (no
cryptography: the real link is tested with the real engine elsewhere), so a test can
check what the controller does with encrypted conversations: what it sends, what it
shows, and how a line changes when its key arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tk_client.e2e.engine import NotShown, Shown
from tk_client.e2e.errors import SendingBlocked
from tk_client.e2e.link import LockState
from tk_client.e2e.megolm import Undecryptable
from tk_client.events import RequestStatus


def sealed(text: str) -> dict[str, str]:
    return {"algorithm": "megolm.v1", "ciphertext": f"sealed:{text}"}


def conversation_of(item: Mapping[str, Any]) -> str:
    if "room" in item:
        return f"room:{item['room']}"
    a, b = sorted((str(item.get("from")), str(item.get("to"))))
    return f"pm:{a}:{b}"


class FakeLink:
    """Encrypts at once (or, with ``hold_sends``, when :meth:`release` is called)."""

    def __init__(self, session: Any, user: str, device: str) -> None:
        self.session, self.user, self.device = session, user, device
        self.logins = 0
        self.hold_sends = False
        self.blocked: set[str] = set()
        self.readable = True  # False: messages arrive before their keys
        self.quiet = False  # True: the next read says nothing yet (keys being fetched)
        self._held: list[tuple[str, list[str], str, Callable[[RequestStatus], None]]] = []
        self._requests: set[str] = set()
        self.answers: list[tuple[RequestStatus, Any]] = []
        self.pushes: list[Mapping[str, Any]] = []
        self._unread: list[Mapping[str, Any]] = []
        self.next_events: list[Any] = []  # what the next devices_changed push produces
        self.private_rooms: list[str] | None = None  # what set_rooms was told last

    # the controller's side
    def logged_in(self) -> list[Any]:
        self.logins += 1
        return []

    def ask(self, type_: str, **fields: Any) -> RequestStatus:
        """A request of the link's own (its answer is routed back here)."""
        status = self.session.request(type_, **fields)
        self._requests.add(status.id)
        return status

    def owns(self, request_id: str) -> bool:
        return request_id in self._requests

    def set_rooms(self, private_rooms: Iterable[str]) -> None:
        self.private_rooms = sorted(private_rooms)

    def answered(self, status: RequestStatus, answer: Any) -> list[Any]:
        self.answers.append((status, answer))
        return []

    def pushed(self, message: Mapping[str, Any]) -> list[Any]:
        """A ``to_device`` push brings the keys of every message read so far; another
        push gives :attr:`next_events`."""
        self.pushes.append(message)
        if message.get("type") != "to_device":
            events, self.next_events = self.next_events, []
            return events
        self.readable = True
        held, self._unread = self._unread, []
        return [event for item in held for event in self.read(item)]

    def read(self, item: Mapping[str, Any]) -> list[Any]:
        if self.quiet:  # fetching the sender's devices first: nothing to say yet
            self.quiet = False
            self._unread.append(item)
            return []
        conversation, sender = conversation_of(item), str(item.get("from"))
        ciphertext = str(item["e2e"].get("ciphertext", ""))
        if self.readable and ciphertext.startswith("sealed:"):
            return [Shown(conversation, item.get("msg_id"), sender, ciphertext[7:])]
        self._unread.append(item)
        reason = Undecryptable.KEY_NOT_RECEIVED
        return [NotShown(conversation, item.get("msg_id"), sender, reason)]

    def encrypt(
        self,
        conversation: str,
        members: Iterable[str],
        text: str,
        on_request: Callable[[RequestStatus], None],
    ) -> list[Any]:
        if set(members) & self.blocked:
            raise SendingBlocked("not sent: acknowledge the change first")
        self._held.append((conversation, sorted(members), text, on_request))
        if not self.hold_sends:
            self.release()
        return []

    def release(self) -> None:
        held, self._held = self._held, []
        for conversation, _members, text, on_request in held:
            kind, _, rest = conversation.partition(":")
            if kind == "room":
                status = self.session.request("send", room=rest, e2e=sealed(text))
            else:
                a, _, b = rest.partition(":")
                status = self.session.request("pm", to=b if a == self.user else a, e2e=sealed(text))
            on_request(status)

    def peer_of(self, txn: str) -> tuple[str, str] | None:
        return None  # no verification runs through this fake

    def lock(self, members: Iterable[str]) -> LockState:
        others = tuple(sorted(set(members) - {self.user}))
        return LockState((), others, (), ())
