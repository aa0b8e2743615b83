"""What the file transfer tests share: a relay in memory, two ends over bytes, test data.

:class:`Relay` is a server process in memory (a registry, sessions with inboxes);
:func:`run` lets the two ends of a transfer talk through it in a random
interleaving; :class:`MemorySender` and :class:`MemoryReceiver` are the two ends
over bytes in memory. The tk_client tests run their file-backed ends through the
same relay, and check the same :data:`HOSTILE_NAMES`.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from typing import Any

from chatproto.connection import error_message
from chatproto.framing import FileChunk, decode_plaintext, encode_chunk
from chatproto.messages import validate_request
from chatproto.transfer import (
    Action,
    ChunkData,
    ClientEvent,
    Deliver,
    DeliverChunk,
    Ended,
    IncomingTransfer,
    IntegrityCheck,
    OutgoingTransfer,
    Refuse,
    Send,
    SendChunk,
    ToSession,
    TransferRegistry,
)

T = "0123456789abcdef0123456789abcdef"  # a transfer id
T2 = "fedcba9876543210fedcba9876543210"  # another one
TB = bytes.fromhex(T)  # T as chunk records carry it
SHA = "ab" * 32  # a well-formed SHA-256 (of no test data)
# The sessions of connected_relay() and their users: two users with two sessions each.
USERS = {"alice-1": "alice", "alice-2": "alice", "bob-1": "bob", "bob-2": "bob", "carol-1": "carol"}


def cancel(reason: str, transfer: str = T) -> dict[str, Any]:
    """The ``file_cancel`` a client sends or the relay delivers."""
    return {"type": "file_cancel", "transfer": transfer, "reason": reason}


def chunk(index: int, size: int = 10, transfer: bytes = TB) -> FileChunk:
    """A chunk of ``size`` zero bytes."""
    return FileChunk(transfer, index, bytes(size))


# Offered names and the names to save them under (PROTOCOL.md 3.3): paths, controls, devices.
HOSTILE_NAMES = {
    "../../x": "x",
    "/etc/x": "etcx",
    "C:\\x": "C:x",
    "..\\..\\windows\\system32": "windowssystem32",
    "con": "file",
    "CON.txt": "file",
    "Com1.tar.gz": "file",
    "lpt9": "file",
    "nul.": "file",
    "aux .txt": "aux .txt",  # the spec's rule is the name before the first dot
    "COM10": "COM10",
    "console.log": "console.log",
    "..": "file",
    "...": "file",
    ". . .": "file",
    "   ": "file",
    "": "file",
    "a\x00b.txt": "ab.txt",
    "report\n.pdf": "report.pdf",
    "evil\u202etxt.exe": "eviltxt.exe",
    "zero\u200bwidth": "zerowidth",
    "\ufeffbom": "bom",
    ".bashrc": "bashrc",
    "name. . ": "name",
    " leading space": " leading space",
    "x" * 255: "x" * 255,
    "r\u00e9sum\u00e9.pdf": "r\u00e9sum\u00e9.pdf",
}


class Relay:
    """One server process in memory: a registry and the inboxes of the sessions it serves.

    Client events go in with :meth:`from_client` (requests are validated as the
    server would, chunks go through the record framing); the registry's actions
    land in the inboxes. It records the largest window the registry ever let a
    transfer reach, and every error a session was sent.
    """

    def __init__(self, registry: TransferRegistry | None = None) -> None:
        self.registry = registry or TransferRegistry()
        self.users: dict[str, str] = {}
        self.inbox: dict[str, deque[dict[str, Any] | FileChunk]] = {}
        self.shown: dict[str, list[ClientEvent]] = {}
        self.errors: list[tuple[str, dict[str, Any]]] = []
        self.max_unacked = 0
        self.now = 0.0

    def connect(self, session: str, user: str) -> None:
        self.users[session] = user
        self.inbox[session] = deque()
        self.shown[session] = []

    def from_client(self, session: str, events: list[ClientEvent]) -> None:
        user = self.users[session]
        for event in events:
            if isinstance(event, Send):
                req = validate_request(event.message)
                if req.type == "file_offer":
                    actions = self.registry.offer(req, session=session, user=user, now=self.now)
                else:
                    actions = self.registry.receive(req, session=session, user=user)
            elif isinstance(event, SendChunk):
                c = event.chunk
                decoded = decode_plaintext(encode_chunk(c.transfer, c.index, c.data))
                assert isinstance(decoded, FileChunk)
                actions = self.registry.receive_chunk(decoded, session=session)
            else:
                self.shown[session].append(event)
                continue
            self.carry(actions)

    def carry(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                if isinstance(action.to, ToSession):
                    targets = [action.to.session]
                else:
                    targets = [
                        s
                        for s, u in self.users.items()
                        if u == action.to.user and s != action.to.exclude
                    ]
                for target in targets:
                    self.inbox[target].append(action.message)
            elif isinstance(action, DeliverChunk):
                self.inbox[action.session].append(action.chunk)
                transfer = self.registry.get(action.chunk.transfer_hex)
                self.max_unacked = max(self.max_unacked, transfer.unacked)
            else:
                assert isinstance(action, Refuse)
                message = error_message(action.code, action.message, action.ref)
                self.inbox[action.session].append(message)
                self.errors.append((action.session, message))


def run(relay: Relay, ends: dict[str, Any], rng: random.Random, *, until: Any = None) -> None:
    """Let each session's end read its inbox, one item at a time, in a random interleaving.

    An end has ``handle(message)`` and ``handle_chunk(chunk)`` returning client events
    (the shape of tk_client's Upload and Download). ``until(relay)`` may stop early.
    """
    while True:
        if until is not None and until(relay):
            return
        ready = [session for session, items in relay.inbox.items() if items]
        if not ready:
            return
        session = rng.choice(ready)
        item = relay.inbox[session].popleft()
        end = ends.get(session)
        if end is None:
            if isinstance(item, dict):
                relay.shown[session].append(item)  # type: ignore[arg-type]  # the harness's relay records any item
            continue
        if isinstance(item, FileChunk):
            relay.from_client(session, end.handle_chunk(item))
        else:
            relay.from_client(session, end.handle(item))


class MemorySender:
    """The sender's end over bytes in memory (tk_client's Upload does this with a file)."""

    def __init__(self, data: bytes, to: str) -> None:
        self.data = data
        sha = hashlib.sha256(data).hexdigest()
        self.outgoing = OutgoingTransfer(to=to, name="data.bin", size=len(data), sha256=sha)

    def handle(self, message: dict[str, Any]) -> list[ClientEvent]:
        events = self.outgoing.receive(message)
        while size := self.outgoing.next_chunk_size():
            start = self.outgoing.bytes_sent
            events += self.outgoing.chunk(self.data[start : start + size])
        if self.outgoing.ready_to_end:
            events += self.outgoing.end()
        return events

    def handle_chunk(self, chunk: FileChunk) -> list[ClientEvent]:
        raise AssertionError("the sender never receives chunks")


class MemoryReceiver:
    """The recipient's end writing into memory, hashing as it writes."""

    def __init__(self, offer: dict[str, Any]) -> None:
        self.incoming = IncomingTransfer.from_offer(offer)
        self.check = IntegrityCheck(self.incoming.size, self.incoming.sha256)
        self.data = bytearray()

    def handle_chunk(self, chunk: FileChunk) -> list[ClientEvent]:
        events: list[ClientEvent] = []
        for event in self.incoming.receive_chunk(chunk):
            if isinstance(event, ChunkData):
                self.check.update(event.data)
                self.data += event.data
                events += self.incoming.written(event.index)
            else:
                events.append(event)
        return events

    def handle(self, message: dict[str, Any]) -> list[ClientEvent]:
        events: list[ClientEvent] = []
        for event in self.incoming.receive(message):
            if isinstance(event, Ended):
                events += self.incoming.finish(event.size_ok and self.check.matches())
            else:
                events.append(event)
        return events


def connected_relay() -> Relay:
    relay = Relay()
    for session, user in USERS.items():
        relay.connect(session, user)
    return relay


def offer_and_accept(relay: Relay, sender: Any, accept_on: str = "bob-1") -> Any:
    relay.from_client("alice-1", [Send(sender.outgoing.offer("o1"))])
    offer = relay.inbox[accept_on].popleft()
    receiver = MemoryReceiver(offer)  # type: ignore[arg-type]  # a relayed offer as the relay shows it
    relay.from_client(accept_on, receiver.incoming.accept())
    return receiver
