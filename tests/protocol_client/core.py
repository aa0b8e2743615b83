"""The protocol half of every test client, with no I/O: handshake, records, ids, the inbox.

A transport (a socket thread, an asyncio task, Channels' communicator) feeds
what it reads to :class:`ClientProtocol` and sends what it returns; the rest
of a test client is waiting, which each transport does its own way::

    protocol = ClientProtocol(expected_fingerprint)
    send_text(protocol.receive_hello(read_text()))       # the key, once the pin matches
    protocol.receive_greeting(read_bytes())               # key confirmation
    ref, record = protocol.request({"type": "ping"})     # an id is added and awaited
    send_bytes(record)
    while (answer := protocol.take_answer(ref)) is None:
        protocol.receive(read_bytes())                    # pushes go to ``pending``

Everything goes through chatproto's :class:`~chatproto.connection.ClientConnection`
(its handshake and record API only), so every test client checks the server
exactly as the real clients do. The server breaking the protocol is a
:class:`ProtocolViolation` (an AssertionError: the test fails with the story).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Mapping
from typing import Any

from chatproto.connection import (
    ChunkReceived,
    ClientConnection,
    CloseConnection,
    Greeting,
    MessageReceived,
    ServerHello,
)
from chatproto.framing import FileChunk, encode_chunk, encode_json
from chatproto.handshake import ServerIdentity
from chatproto.records import RecordOpener, RecordSealer

DEFAULT_TIMEOUT = 10.0  # bounds a hung test; never a timing assertion
ABNORMAL_CLOSE = 1006  # the connection broke without a close frame (RFC 6455)
NO_STATUS = 1005  # a close frame without a code
SKIPPED_KEPT = 100

Message = dict[str, Any]
Item = Message | FileChunk  # what one server record carries


class ProtocolViolation(AssertionError):
    """The server did something PROTOCOL.md does not allow (the test fails with the story)."""


class SessionClosed(Exception):
    """The server closed the session with ``code`` (1006: the connection broke)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"session closed with code {code}")
        self.code = code


class ClientProtocol:
    """One session's protocol state for a test: what to send, and what came, in order.

    ``pending`` holds every message and file chunk that was not the answer to
    an awaited request, in arrival order, for ``take_*`` to hand out.

    ``presence`` deltas come at the server's ticks, whatever a test does: without
    ``watch_presence`` they go to ``presence_seen`` instead of ``pending``, so that a
    test of anything else neither reads nor waits for them.
    """

    def __init__(
        self,
        expected_fingerprint: str | None = None,
        *,
        id_prefix: str = "t",
        watch_presence: bool = True,
    ) -> None:
        self.conn = ClientConnection()
        self.watch_presence = watch_presence
        self.presence_seen: list[Message] = []
        self.expected_fingerprint = expected_fingerprint  # None: trust any key (benchmarks)
        self.identity: ServerIdentity | None = None
        self.greeting: Message | None = None
        self.pending: collections.deque[Item] = collections.deque()
        # The last messages ``take_kind`` passed over, for a failure's story (bounded: a
        # bystander session of a long fuzz run passes over millions).
        self.skipped: collections.deque[Message] = collections.deque(maxlen=SKIPPED_KEPT)
        self.close_code: int | None = None
        self._awaited: set[str] = set()
        self._answers: dict[str, Message] = {}
        self._ids = (f"{id_prefix}{n}" for n in itertools.count(1))
        self._raw_sealer: RecordSealer | None = None  # once seal_raw was called

    # --- the handshake -------------------------------------------------------------------------

    def receive_hello(self, text: str) -> str:
        """Read ``hello`` and check the pinned fingerprint; the ``key`` text message to send."""
        events = self.conn.receive_text(text)
        if not events or not isinstance(events[0], ServerHello):
            raise ProtocolViolation(f"the first message was not a valid hello: {events}")
        self.identity = events[0].identity
        expected = self.expected_fingerprint
        if expected is not None and self.identity.fingerprint != expected:
            raise ProtocolViolation(
                f"server key changed: expected {expected}, got {self.identity.fingerprint}"
            )
        return self.conn.send_key()

    def receive_greeting(self, data: bytes) -> Message:
        """Open the first record, which must be the greeting (the server holds the key)."""
        events = self.conn.receive_bytes(data)
        if not events or not isinstance(events[0], Greeting):
            raise ProtocolViolation(f"the first record was not a greeting: {events}")
        self.greeting = events[0].message
        return self.greeting

    def fast_opener(self) -> RecordOpener:
        """An opener for the server's records after the greeting, for clients that read
        millions of records: every check of the record layer, without ClientConnection's
        event objects and I-JSON checks (the caller decodes the plaintext itself)."""
        keys = self.conn.keys
        if self.greeting is None or keys is None:
            raise RuntimeError("fast_opener before the greeting")
        opener = RecordOpener(keys.s2c_enc, keys.s2c_mac)
        opener.seq = 1  # the greeting was record 0 of the server's direction
        return opener

    # --- records -------------------------------------------------------------------------------

    def seal(self, message: Mapping[str, Any]) -> bytes:
        """The record carrying ``message`` (for replay tests, the very bytes sent)."""
        if self._raw_sealer is not None:
            return self._raw_sealer.seal(encode_json(message))
        return self.conn.send(message)

    def seal_chunk(self, chunk: FileChunk) -> bytes:
        if self._raw_sealer is not None:
            return self._raw_sealer.seal(encode_chunk(chunk.transfer, chunk.index, chunk.data))
        return self.conn.send_chunk(chunk.transfer, chunk.index, chunk.data)

    def seal_raw(self, plaintext: bytes) -> bytes:
        """A valid record holding any plaintext at all (a malformed chunk, an unknown kind),
        which ClientConnection refuses to seal: for tests of what the server makes of it.

        From the first call on, this session's records are sealed here with the session's
        keys, continuing its sequence numbers (``next_seq``), whatever else is sent."""
        if self._raw_sealer is None:
            keys = self.conn.keys
            if keys is None:
                raise RuntimeError("seal_raw before the key message")
            self._raw_sealer = RecordSealer(keys.c2s_enc, keys.c2s_mac)
            self._raw_sealer.seq = self.conn.records_sent
        return self._raw_sealer.seal(plaintext)

    @property
    def next_seq(self) -> int:
        """The sequence number of the next record this client seals (forged-record tests)."""
        return self._raw_sealer.seq if self._raw_sealer is not None else self.conn.records_sent

    def request(self, message: Mapping[str, Any]) -> tuple[str, bytes]:
        """Add an ``id`` (unless there is one) and await its answer: ``(id, record to send)``."""
        request = dict(message)
        request.setdefault("id", next(self._ids))
        self._awaited.add(request["id"])
        return request["id"], self.seal(request)

    def open(self, data: bytes) -> Item:
        """What one server record after the greeting carries (ProtocolViolation if unreadable)."""
        for event in self.conn.receive_bytes(data):
            if isinstance(event, MessageReceived):
                return event.message
            if isinstance(event, ChunkReceived):
                return event.chunk
            if isinstance(event, CloseConnection):
                raise ProtocolViolation(
                    f"the server sent a bad record (client closes {event.code})"
                )
        raise ProtocolViolation("the server sent a record that holds no message")

    def receive(self, data: bytes | str) -> Item:
        """Open one WebSocket message after the greeting and file it (answer or pending)."""
        if isinstance(data, str):
            raise ProtocolViolation(f"a text message after the handshake: {data[:200]!r}")
        item = self.open(data)
        ref = item.get("ref") if isinstance(item, dict) else None
        if ref in self._awaited:
            self._awaited.discard(ref)
            self._answers[ref] = item
        elif isinstance(item, dict) and item["type"] == "presence" and not self.watch_presence:
            self.presence_seen.append(item)
        else:
            self.pending.append(item)
        return item

    def closed(self, code: int | None) -> SessionClosed:
        """The transport saw the session end; the exception that waiting for more raises."""
        if self.close_code is None:
            self.close_code = code
        self.conn.close()
        return SessionClosed(self.close_code)

    # --- handing out what came -------------------------------------------------------------------

    def take_answer(self, ref: str) -> Message | None:
        """The answer to request ``ref``, once it came."""
        return self._answers.pop(ref, None)

    def take_item(self) -> Item | None:
        """The oldest pending message or file chunk."""
        return self.pending.popleft() if self.pending else None

    def take_message(self) -> Message | None:
        """The oldest pending message (file chunks stay pending, for ``take_chunk``)."""
        return self._take_first(dict)

    def take_chunk(self) -> FileChunk | None:
        """The oldest pending file chunk (messages stay pending)."""
        return self._take_first(FileChunk)

    def _take_first(self, kind: type) -> Any:
        for index, item in enumerate(self.pending):
            if isinstance(item, kind):
                del self.pending[index]
                return item
        return None

    def take_kind(self, kind: str) -> Message | None:
        """The oldest pending message of type ``kind``; messages before it go to ``skipped``."""
        while (message := self.take_message()) is not None:
            if message.get("type") == kind:
                return message
            self.skipped.append(message)
        return None

    def take_through(self, kind: str) -> list[Message] | None:
        """Once a message of type ``kind`` is pending: every message up to and including it
        (what follows ``login_ok`` up to the ``users`` that ends a login, for instance)."""
        if not any(isinstance(item, dict) and item.get("type") == kind for item in self.pending):
            return None
        taken: list[Message] = []
        while (message := self.take_message()) is not None:
            taken.append(message)
            if message.get("type") == kind:
                break
        return taken

    def take_expected(self, kind: str) -> Message | None:
        """The oldest pending message, which must be of type ``kind`` (AssertionError if not)."""
        message = self.take_message()
        if message is not None:
            assert message.get("type") == kind, f"expected {kind}, got {message}"
        return message
