"""A hostile client for the real consumer, in process, that chooses every byte and holds the keys.

:class:`FuzzSession` speaks to the WebSocket application of the test's runtime (origin check,
routing, :class:`chat.consumers.ChatConsumer`) through the tests' one protocol
client on Channels' ``WebsocketCommunicator`` (:mod:`tests.protocol_client.inprocess`),
which does the handshake, opens what the server sends, and seals *valid*
records holding any plaintext at all (``seal_raw``); the fuzzer adds damaged
records, text frames and garbage.
:class:`Model` is what the protocol says must happen, frame by frame:
which answer, which close code, when the 10th bad request or the 5th failed
login ends the session, and that ``text`` in a ``pm`` or a private room is
refused with ``e2e_required`` (docs/protocol.md 4.5; :func:`plaintext_refused`
reads from the database who the recipient is and which rooms are private).

The wire classification of a plaintext (bad JSON, unknown type, field out of
bounds...) is taken from chatproto's own validator, whose table is tested in
``tests/chatproto``. What the fuzzer adds is everything behind it: the consumer,
the services and the database must agree with that classification for any
input, never fail (``internal``, a logged error, an exception in the
application), and close exactly when and how PROTOCOL.md says.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from hypothesis import currently_in_test_context, event

from chatproto import crypto_utils
from chatproto.codes import CloseCode, ErrorCode
from chatproto.errors import MessageError
from chatproto.framing import FileChunk, decode_plaintext, encode_json
from chatproto.handshake import SessionKeys
from chatproto.limits import MAX_BAD_REQUESTS, MAX_LOGIN_FAILURES, MAX_RECORD_SIZE, MAX_TEXT
from chatproto.messages import LOGIN_TYPES, PRE_LOGIN_TYPES, Context, Request, validate_request
from chatproto.records import RecordSealer
from tests.protocol_client.core import ProtocolViolation, SessionClosed
from tests.protocol_client.inprocess import (
    InProcessClient,
    communicator,
    in_process_session,
    open_session,
)

TIMEOUT = 10.0  # generous: only a hung consumer takes this long (then the test fails)
ERROR_CODES = frozenset(code.value for code in ErrorCode)
COUNTED = frozenset({ErrorCode.BAD_REQUEST.value, ErrorCode.TOO_LARGE.value})
# Messages the server may push at any moment to a session (never direct answers).
TRANSFER_PUSHES = frozenset(
    {"file_offer", "file_accept", "file_reject", "file_ack", "file_end", "file_done", "file_cancel"}
)
# ``users`` without ``ref``: the snapshot after a login (a hostile register may log in).
PUSH_TYPES = (
    frozenset(
        {
            "message",
            "private",
            "users",
            "presence",
            "rooms",
            "devices_changed",
            "to_device",
            "backup_changed",
        }
    )
    | TRANSFER_PUSHES
)
# The direct answer each request type may get (PROTOCOL.md 3.1-3.4); ``error`` where listed.
ANSWERS: dict[str, frozenset[str]] = {
    "login": frozenset({"login_ok", "login_failed"}),
    "register": frozenset({"login_ok", "register_failed"}),
    "send": frozenset({"ack", "error"}),
    "pm": frozenset({"ack", "error"}),
    "users": frozenset({"users"}),
    "rooms": frozenset({"rooms"}),
    "join": frozenset({"rooms", "error"}),
    "leave": frozenset({"rooms", "error"}),
    "create_room": frozenset({"rooms", "error"}),
    "invite": frozenset({"rooms", "error"}),
    "history": frozenset({"history", "error"}),
    "ping": frozenset({"pong"}),
    "file_offer": frozenset({"ok", "error"}),
    # PROTOCOL.md 3.4.
    "resume": frozenset({"login_ok", "login_failed"}),
    "devices": frozenset({"devices"}),
    "revoke": frozenset({"ok", "error"}),
    "logout": frozenset({"ok"}),  # then session_ended logged_out and close 4003
    "change_password": frozenset({"ok", "error"}),
    "otp_setup": frozenset({"otp_setup", "error"}),
    "otp_confirm": frozenset({"otp_enabled", "error"}),
    "otp_disable": frozenset({"ok", "error"}),
    # docs/protocol.md section 4 (a session without a device: error device_required).
    "keys_upload": frozenset({"keys_uploaded", "error"}),
    "user_key_publish": frozenset({"ok", "error"}),
    "keys_query": frozenset({"keys", "error"}),
    "keys_claim": frozenset({"keys_claimed", "error"}),
    "device_list_changes": frozenset({"device_list_changes", "error"}),
    "to_device": frozenset({"ok", "error"}),
    # docs/protocol.md 4.13, the key backup (device_required as above).
    "backup_publish": frozenset({"ok", "error"}),
    "backup_get": frozenset({"backup", "error"}),
    "backup_put": frozenset({"backup_stored", "error"}),
    "backup_fetch": frozenset({"backup_sessions", "error"}),
}
# Requests that get no answer when served, and at most an error when refused.
UNANSWERED = frozenset({"to_device_ack"})
# Revision 1.1: only file_offer is a request; the other steps of a transfer get no answer
# when relayed, ``unknown_transfer`` when they cannot be, and end the transfer with
# file_cancel pushes when they break its rules.
TRANSFER_STEPS = TRANSFER_PUSHES - {"file_offer"}
_barriers = itertools.count(1)


def restore_passwords() -> None:
    """The arena's accounts get their password "pw" back (after a change_password)."""
    from django.contrib.auth.hashers import make_password

    from accounts.models import User

    User.objects.filter(username__in=ARENA_ACCOUNTS).update(password=make_password("pw"))


ARENA_ACCOUNTS = ("fuzzer", "bystander", "witness")
PRIVATE_ROOM = "hideout"  # fuzzer's and bystander's: text in it is e2e_required


# --- what the server must do -----------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """The verdict on one plaintext: an ``error`` (code, ref), a request to serve, or a chunk.

    ``e2e_required``: the request is served, and its one answer is ``error`` ``e2e_required``
    (plain ``text`` where protocol 4.5 wants ``e2e``)."""

    error: str | None = None
    ref: str | None = None
    request: Request | None = None
    chunk: bool = False
    e2e_required: bool = False


def classify(plaintext: bytes, *, logged_in: bool, max_text: int = MAX_TEXT) -> Expect:
    """What PROTOCOL.md 2.1 / 3.1 say the server answers to a plaintext in a valid record."""
    try:
        decoded = decode_plaintext(plaintext)
    except MessageError as exc:
        return Expect(error=str(exc.code), ref=exc.ref)
    if isinstance(decoded, FileChunk):
        if not logged_in:
            return Expect(error=ErrorCode.NOT_AUTHENTICATED.value)
        return Expect(chunk=True)
    try:
        request = validate_request(decoded, Context(max_text=max_text))
    except MessageError as exc:
        return Expect(error=str(exc.code), ref=exc.ref)
    if not logged_in and request.type not in PRE_LOGIN_TYPES:
        return Expect(error=ErrorCode.NOT_AUTHENTICATED.value, ref=request.id)
    if logged_in and request.type in LOGIN_TYPES:
        return Expect(error=ErrorCode.BAD_REQUEST.value, ref=request.id)
    return Expect(request=request)


def plaintext_refused(request: Request, username: str | None) -> bool:
    """Whether the server must answer this ``send`` or ``pm`` with ``e2e_required`` (4.5):
    ``text`` to another active account, or to a private room that ``username`` is a member
    of (elsewhere ``unknown_user``, ``unknown_room``... come first). Reads the database."""
    from accounts.models import User
    from chat.models import Membership

    r: Any = request
    if request.type not in ("send", "pm") or r.e2e is not None or username is None:
        return False
    if request.type == "pm":
        return r.to != username and User.objects.filter(username=r.to, is_active=True).exists()
    return Membership.objects.filter(
        room__name=r.room, room__private=True, user__username=username
    ).exists()


def strict_b64(value: Any) -> bytes | None:
    """Base64 as PROTOCOL.md 1.3 decodes it (padding, no whitespace, canonical), else None."""
    if not isinstance(value, str) or not value.isascii():
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == value else None


def key_message_verdict(text: str, original: dict[str, Any]) -> str:
    """``"same"`` (the handshake must complete with our keys), ``"other-eph"`` (the server may
    complete it with keys we do not have, or close 4000), or ``"close"`` (4000)."""
    try:
        message = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
        text.encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        return "close"
    if not isinstance(message, dict) or not _is_ijson(message):
        return "close"
    version = message.get("version")
    if message.get("type") != "key" or type(version) is not int or version != 1:
        return "close"
    key, eph = strict_b64(message.get("key")), strict_b64(message.get("eph"))
    if key is None or eph is None or len(eph) != 32:
        return "close"
    if key != strict_b64(original["key"]):
        return "close"  # another RSA-OAEP ciphertext: it cannot decrypt (or not to 32 bytes)
    return "same" if eph == strict_b64(original["eph"]) else "other-eph"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate member name")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def _is_ijson(value: Any) -> bool:
    """No lone surrogates and no infinite numbers (``1e400`` parses as inf in Python)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_is_ijson(k) and _is_ijson(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_ijson(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


@dataclass
class Model:
    """The session as the protocol sees it: state and the two counters that end a session."""

    logged_in: bool = False
    username: str | None = None  # whom the session is logged in as
    bad_requests: int = 0
    login_failures: int = 0
    closed: int | None = None
    logged_out: bool = False  # ``logout`` answered ``ok``: session_ended, then 4003
    password_changed: bool = False  # a change_password succeeded (the arena restores "pw")

    def expected_close(self) -> int | None:
        if self.logged_out:
            return CloseCode.SESSION_ENDED
        if self.bad_requests >= MAX_BAD_REQUESTS:
            return CloseCode.POLICY
        if self.login_failures >= MAX_LOGIN_FAILURES:
            return CloseCode.LOGIN_FAILURES
        return None


# --- the hostile client ----------------------------------------------------------------------


@dataclass
class Exchange:
    """What came back for one frame: the messages, and the close code if the server closed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    close: int | None = None


class FuzzSession:
    """One session of the real consumer; every frame is the fuzzer's choice."""

    def __init__(self, client: InProcessClient) -> None:
        self.client = client
        self.protocol = client.protocol  # the handshake, and opening what the server sends
        self.keys: SessionKeys | None = None
        self.model = Model()
        self.key_text: str | None = None
        self.last_record: bytes | None = None
        self.disconnected = False
        self.device: str | None = None  # the remembered device of :meth:`login`

    # --- frames ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and read the hello; the key message is made (``key_text``), not sent."""
        await self.client.connect()
        output = await self.next_frame()
        assert output["type"] == "websocket.send" and output.get("text"), output
        self.key_text = self.protocol.receive_hello(output["text"])
        self.keys = self.protocol.conn.keys

    async def send_text(self, text: str) -> None:
        await self.client.send_text(text)  # any text, the empty one included

    async def send_bytes(self, data: bytes) -> None:
        await self.client.send_bytes(data)

    def seal(self, plaintext: bytes) -> bytes:
        record = self.protocol.seal_raw(plaintext)  # any plaintext, in a valid record
        self.last_record = record
        return record

    async def send_plaintext(self, plaintext: bytes) -> None:
        await self.send_bytes(self.seal(plaintext))

    async def next_frame(self) -> dict[str, Any]:
        """The next thing the consumer sent (an exception inside it is raised here)."""
        return await self.client.read_output(TIMEOUT)

    def open_record(self, output: dict[str, Any]) -> dict[str, Any]:
        """A server record after the key: binary, opens under our keys, a JSON message (the
        first one the greeting). ProtocolViolation otherwise."""
        if output.get("text") is not None or output.get("bytes") is None:
            raise ProtocolViolation(f"the server sent a text message after the handshake: {output}")
        if self.protocol.greeting is None:
            return self.protocol.receive_greeting(output["bytes"])
        message = self.protocol.open(output["bytes"])
        if not isinstance(message, dict):
            raise ProtocolViolation(f"the server sent a file chunk to a fuzzer: {message}")
        return message

    async def read_until(self, done) -> Exchange:
        """Messages until ``done(message)`` holds (that one included) or the server closes."""
        exchange = Exchange()
        while True:
            output = await self.next_frame()
            if output["type"] == "websocket.close":
                exchange.close = output.get("code")
                self.model.closed = exchange.close
                return exchange
            message = self.open_record(output)
            exchange.messages.append(message)
            if done(message):
                return exchange

    async def expect_close(self) -> Exchange:
        return await self.read_until(lambda message: False)

    def barrier(self) -> tuple[str, bytes]:
        """A ``ping`` whose ``pong`` marks the end of the answers to what was sent before."""
        ref = f"\u2020barrier-{next(_barriers)}"
        return ref, encode_json({"type": "ping", "id": ref})

    async def finish(self) -> None:
        """Disconnect and let the consumer end; raises whatever the application raised."""
        if self.disconnected:
            return
        self.disconnected = True
        code = self.model.closed if self.model.closed is not None else 1000
        comm = self.client.comm
        await comm.disconnect(code=code, timeout=TIMEOUT)
        future = comm.future
        assert future.done() and not future.cancelled(), "the consumer did not end by itself"
        if future.exception() is not None:
            raise future.exception()

    # --- the handshake and login -------------------------------------------------------------

    async def complete_handshake(self) -> dict[str, Any]:
        """Send the key; the greeting, read under our keys."""
        assert self.key_text is not None and self.keys is not None
        await self.send_text(self.key_text)
        output = await self.next_frame()
        if output["type"] == "websocket.close":
            raise ProtocolViolation(f"a valid key was refused with {output.get('code')}")
        greeting = self.open_record(output)
        assert greeting["type"] == "greeting", greeting
        return greeting

    async def login(self, username: str, password: str, remember: str | None = None) -> None:
        """Log in; ``remember``: as a new device of that name (end-to-end requests then
        reach the services instead of device_required)."""
        login = {"type": "login", "id": "login", "username": username, "password": password}
        if remember is not None:
            login["remember"] = remember
        await self.send_plaintext(encode_json(login))
        exchange = await self.read_until(lambda m: m.get("ref") == "login")
        answer = exchange.messages[-1] if exchange.messages else None
        if exchange.close is not None or answer is None or answer["type"] != "login_ok":
            raise ProtocolViolation(f"the fuzzer's own login failed: {exchange}")
        self.model.logged_in = True
        self.model.username = username
        self.device = answer.get("device")
        # login_ok is followed by queued private messages, then users.
        await self.read_until(lambda m: m["type"] == "users" and "ref" not in m)

    # --- one hostile frame and its judgement -------------------------------------------------

    async def hostile_plaintext(self, plaintext: bytes) -> Exchange:
        """Send a valid record holding ``plaintext`` and check the answer against the protocol."""
        expect = classify(plaintext, logged_in=self.model.logged_in)
        if expect.request is not None and await sync_to_async(plaintext_refused)(
            expect.request, self.model.username
        ):
            expect = Expect(request=expect.request, e2e_required=True)
        ref, barrier = self.barrier()
        await self.send_plaintext(plaintext)
        await self.send_plaintext(barrier)
        exchange = await self.read_until(lambda m: m.get("ref") == ref and m["type"] == "pong")
        judge(self.model, expect, exchange, barrier_ref=ref)
        return exchange

    async def damaged_frame(self, send, expected_close: int) -> Exchange:
        """Send something that must end the session with ``expected_close``, nothing else."""
        await send()
        exchange = await self.expect_close()
        answers = [m for m in exchange.messages if m["type"] not in PUSH_TYPES or "ref" in m]
        if answers:
            raise ProtocolViolation(f"answered a damaged frame with {answers}")
        if exchange.close != expected_close:
            raise ProtocolViolation(f"closed with {exchange.close}, expected {expected_close}")
        return exchange


def judge(model: Model, expect: Expect, exchange: Exchange, *, barrier_ref: str) -> None:
    """Check one exchange against the protocol and move the model on; raises on a violation."""
    story = f"expected {expect}, got {exchange}"
    _note(expect, exchange, barrier_ref)
    messages = [m for m in exchange.messages if m.get("ref") != barrier_ref]
    for message in messages:
        if message.get("type") == "error":
            code = message.get("code")
            if code == ErrorCode.INTERNAL.value or code not in ERROR_CODES:
                raise ProtocolViolation(f"error code {code!r}: {story}")
    counted = [m for m in messages if m.get("type") == "error" and m.get("code") in COUNTED]
    model.bad_requests += len(counted)
    model.login_failures += sum(1 for m in messages if m.get("type") == "login_failed")

    if expect.error is not None:
        errors = [m for m in messages if m.get("type") == "error"]
        if len(errors) != 1 or errors[0]["code"] != expect.error:
            raise ProtocolViolation(f"not exactly one {expect.error} error: {story}")
        if errors[0].get("ref") != expect.ref:
            raise ProtocolViolation(f"error ref {errors[0].get('ref')!r}: {story}")
        others = [m for m in messages if m is not errors[0]]
    elif expect.chunk:
        # A chunk is no request: ``unknown_transfer`` (no ref) unless it belongs to a transfer
        # this session offered, whose rules may then end it (file_cancel pushes, no error).
        errors = [m for m in messages if m.get("type") == "error"]
        if len(errors) > 1 or any(
            "ref" in e or e["code"] != ErrorCode.UNKNOWN_TRANSFER.value for e in errors
        ):
            raise ProtocolViolation(f"a chunk answered with {errors}: {story}")
        model.bad_requests += len(errors)  # a stray chunk counts as a bad request (1.1)
        others = [m for m in messages if m.get("type") != "error"]
    elif expect.request is not None and expect.request.type in UNANSWERED:
        request = expect.request
        errors = [m for m in messages if m.get("type") == "error"]
        if len(errors) > 1 or any(e.get("ref") != request.id for e in errors):
            raise ProtocolViolation(f"{request.type} answered with {errors}: {story}")
        others = [m for m in messages if m.get("type") != "error"]
    elif expect.request is not None and expect.request.type in TRANSFER_STEPS:
        request = expect.request
        errors = [m for m in messages if m.get("type") == "error"]
        if len(errors) > 1 or any(
            e["code"] != ErrorCode.UNKNOWN_TRANSFER.value or e.get("ref") != request.id
            for e in errors
        ):
            raise ProtocolViolation(f"a transfer step answered with {errors}: {story}")
        others = [m for m in messages if m.get("type") != "error"]
    else:
        request = expect.request
        assert request is not None
        allowed = ANSWERS[request.type]
        if request.id is not None:
            direct = [m for m in messages if m.get("ref") == request.id]
            if len(direct) != 1 or direct[0]["type"] not in allowed:
                raise ProtocolViolation(f"not exactly one direct answer: {story}")
            answer = direct[0]
            others = [m for m in messages if m is not answer]
        else:
            candidates = [m for m in messages if "ref" not in m and m["type"] in allowed]
            if not candidates:
                raise ProtocolViolation(f"no direct answer: {story}")
            answer = candidates[0]
            others = [m for m in messages if m is not answer]
        if answer["type"] == "login_ok":
            model.logged_in = True
            model.username = (answer.get("user") or {}).get("username")
        if expect.e2e_required and (answer["type"], answer.get("code")) != (
            "error",
            ErrorCode.E2E_REQUIRED.value,
        ):
            raise ProtocolViolation(f"plain text where e2e is required was not refused: {story}")
        if request.type == "change_password" and answer["type"] == "ok":
            model.password_changed = True
        if request.type == "logout":
            model.logged_out = True
            ended = [m for m in others if m["type"] == "session_ended"]
            if ended != [{"type": "session_ended", "reason": "logged_out"}]:
                raise ProtocolViolation(f"logout without session_ended logged_out: {story}")
            others = [m for m in others if m["type"] != "session_ended"]
    strays = [m for m in others if m["type"] not in PUSH_TYPES or "ref" in m]
    if strays:
        raise ProtocolViolation(f"messages that answer nothing: {strays}; {story}")

    due = model.expected_close()
    if due is None and exchange.close is not None:
        raise ProtocolViolation(f"closed with {exchange.close} for no reason: {story}")
    if due is not None and exchange.close != due:
        raise ProtocolViolation(f"should have closed with {due}: {story}")
    if exchange.close is None and not any(m.get("ref") == barrier_ref for m in exchange.messages):
        raise ProtocolViolation(f"the session stopped answering: {story}")


def _note(expect: Expect, exchange: Exchange, barrier_ref: str) -> None:
    """Label the case for ``--hypothesis-show-statistics`` (what the fuzzer reached); nothing
    for a case written by hand."""
    if not currently_in_test_context():
        return
    if expect.error is not None:
        label = f"error {expect.error}"
    elif expect.chunk:
        label = "chunk"
    else:
        assert expect.request is not None
        answers = [m["type"] for m in exchange.messages if m.get("ref") != barrier_ref]
        label = f"{expect.request.type} -> {'/'.join(answers) or 'nothing'}"
    event(label)
    if exchange.close is not None:
        event(f"closed {exchange.close}")


# --- damaged records -------------------------------------------------------------------------


def forge(keys: SessionKeys, seq: int, plaintext: bytes, *, version: int = 1) -> bytes:
    """A record with a valid tag, built by hand (for versions and sequence numbers)."""
    iv = b"\x00" * 16
    body = (
        struct.pack(">BQ", version, seq)
        + iv
        + crypto_utils.aes_cbc_encrypt(keys.c2s_enc, iv, plaintext)
    )
    return body + crypto_utils.hmac_sha256(keys.c2s_mac, body)


def damage(session: FuzzSession, recipe: tuple) -> tuple[bytes | str, int]:
    """A damaged frame made from ``recipe`` and the close code it must earn.

    Every damaged *record* closes 4002 (1009 if over 1 MiB); a text message after
    the handshake closes 4002 too.
    """
    assert session.keys is not None
    keys = session.keys
    kind = recipe[0]
    if kind == "text":
        return recipe[1], CloseCode.BAD_RECORD
    if kind == "random":
        data = recipe[1]
    elif kind == "replay":
        previous = session.last_record
        data = previous if previous is not None else b"\x01" * 73
    elif kind == "wrong_direction":
        data = RecordSealer(keys.s2c_enc, keys.s2c_mac).seal(b'\x01{"type":"ping"}')
    elif kind == "version":
        data = forge(keys, session.protocol.next_seq, b'\x01{"type":"ping"}', version=recipe[1])
    elif kind == "seq":
        seq = (session.protocol.next_seq + recipe[1]) % 2**64
        data = forge(keys, seq, b'\x01{"type":"ping"}')
    elif kind == "bad_padding":
        iv = b"\x00" * 16
        block = crypto_utils.aes_cbc_encrypt(keys.c2s_enc, iv, bytes(16))[:16]
        body = struct.pack(">BQ", 1, session.protocol.next_seq) + iv + block
        data = body + crypto_utils.hmac_sha256(keys.c2s_mac, body)
    else:  # a mutation of a valid next record
        valid = RecordSealer(keys.c2s_enc, keys.c2s_mac)
        valid.seq = session.protocol.next_seq
        data = mutate(valid.seal(recipe[1]), recipe[2])
    code = CloseCode.TOO_LARGE if len(data) > MAX_RECORD_SIZE else CloseCode.BAD_RECORD
    return data, code


def mutate(data: bytes, operations: list[tuple[str, int, bytes]]) -> bytes:
    """Apply byte edits (flip, set, insert, delete, truncate); the result always differs."""
    buffer = bytearray(data)
    for op, position, value in operations:
        at = position % (len(buffer) + 1)
        if op == "flip" and buffer:
            buffer[at % len(buffer)] ^= (value[0] if value else 0) or 1
        elif op == "insert":
            buffer[at:at] = value or b"\x00"
        elif op == "delete" and buffer:
            del buffer[at % len(buffer)]
        elif op == "truncate":
            del buffer[at:]
    if bytes(buffer) == data:
        buffer.append(0)
    return bytes(buffer)


# --- errors that must fail a test however they surface ---------------------------------------


class ErrorRecords(logging.Handler):
    """Collects every ERROR (and worse) record of the server's loggers."""

    LOGGERS = ("chat", "accounts", "django", "channels", "daphne", "asyncio")

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def check(self) -> None:
        if self.records:
            first = self.records[0]
            detail = first.getMessage()
            if first.exc_info and first.exc_info[1] is not None:
                detail += f" ({type(first.exc_info[1]).__name__}: {first.exc_info[1]})"
            self.records.clear()
            raise AssertionError(f"the server logged an error: {first.name}: {detail}")


# --- editing the key message -----------------------------------------------------------------


def edit_key_message(text: str, edits: list) -> str:
    """Apply :func:`tests.fuzz.strategies.key_edits` to a valid ``key`` text message."""
    for edit in edits:
        message = json.loads(text) if _is_object(text) else None
        kind = edit[0]
        if kind == "chars":
            text = mutate(text.encode("latin-1", "replace"), edit[1]).decode("latin-1")
        elif message is None:
            text = text + " "  # no longer JSON: field edits do not apply
        elif kind == "set":
            message[edit[1]] = edit[2]
            text = json.dumps(message)
        elif kind == "drop":
            message.pop(edit[1], None)
            text = json.dumps(message)
        elif kind == "extra":
            message.setdefault(edit[1], edit[2])
            text = json.dumps(message)
        elif kind == "b64":
            value = message.get(edit[1])
            if isinstance(value, str):
                message[edit[1]] = _b64_edit(value, edit[2])
            text = json.dumps(message)
        elif kind == "spaces":
            text = json.dumps(message, indent=2)
        elif kind == "reorder":
            text = json.dumps(dict(reversed(list(message.items()))))
    return text


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def _b64_edit(value: str, how: str) -> str:
    if how == "strip_padding":
        return value.rstrip("=") if value.endswith("=") else value[:-4]
    if how == "newline":
        return value[:10] + "\n" + value[10:]
    if how == "urlsafe":
        return value.replace("+", "-").replace("/", "_") + ("" if "+" in value else "-")
    if how == "extra_padding":
        return value + "=="
    return base64.b64encode(bytes(32)).decode("ascii")  # zero_eph: a low-order point


# --- the arena: one event loop, a bystander, and the checks after every case -----------------


class Arena:
    """The event loop the fuzz cases run in, with a logged-in bystander session beside them.

    Every case runs to completion on the same loop (so the in-memory layer and
    the heartbeat stay with it). After each case the bystander must still get
    ``pong``; any error logged by the server or raised in a loop callback fails
    the case. :meth:`still_serving` is the final proof: a new session logs in
    and writes, and the bystander sees it.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        self.loop_errors: list[dict[str, Any]] = []
        self.errors = ErrorRecords()
        self.bystander: InProcessClient | None = None
        self._addresses = itertools.count(1)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(context)

    def start(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.errors.install()
        self.bystander = self.loop.run_until_complete(self._bystander())

    async def _bystander(self) -> InProcessClient:
        session = await open_session(client=("192.0.2.1", 1))
        await session.login("bystander")
        return session

    def client(self) -> tuple[str, int]:
        """A fresh client address per session (throttles are per address)."""
        n = next(self._addresses)
        return (f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 40000)

    def session(self) -> FuzzSession:
        return FuzzSession(InProcessClient(communicator(client=self.client())))

    def run(self, case) -> None:
        """Run one case (a coroutine function taking a FuzzSession) and every check after it."""
        session = self.session()
        try:
            self.loop.run_until_complete(case(session))
            self.loop.run_until_complete(session.finish())
        finally:
            if not session.disconnected:  # the case failed: leave nothing running
                with contextlib.suppress(Exception):
                    self.loop.run_until_complete(session.finish())
        if session.model.password_changed:
            self.loop.run_until_complete(self._restore_passwords())
        self.loop.run_until_complete(self._bystander_answers())
        self.check()

    async def _restore_passwords(self) -> None:
        """A case logged in as one of the arena's accounts and changed its password: every
        other session of it ended (``password_changed``, the bystander's too, as it must);
        the accounts get "pw" back (a bare update: no signal ends anything more) and the
        bystander a new session."""
        await sync_to_async(restore_passwords)()
        assert self.bystander is not None
        try:
            await self.bystander.request({"type": "ping"})
        except SessionClosed:
            self.bystander = await self._bystander()

    async def _bystander_answers(self) -> None:
        assert self.bystander is not None
        answer = await self.bystander.request({"type": "ping"})
        assert answer["type"] == "pong", answer
        self.bystander.pending.clear()  # pushes caused by the fuzzing

    def check(self) -> None:
        self.errors.check()
        if self.loop_errors:
            context = self.loop_errors[0]
            self.loop_errors.clear()
            raise AssertionError(f"an exception escaped into the event loop: {context}")

    async def _still_serving(self) -> None:
        assert self.bystander is not None
        async with in_process_session(client=("192.0.2.2", 1)) as witness:
            await witness.login("witness")
            ack = await witness.request(
                {"type": "send", "room": "lobby", "text": "after the fuzzing"}
            )
            assert ack["type"] == "ack", ack
            while True:
                seen = await self.bystander.find("message")
                if seen["msg_id"] == ack["msg_id"]:
                    assert (seen["from"], seen["text"]) == ("witness", "after the fuzzing")
                    break
            assert (await witness.request({"type": "ping"}))["type"] == "pong"
            assert (await self.bystander.request({"type": "ping"}))["type"] == "pong"

    def still_serving(self) -> None:
        """A new session and the bystander are served as if nothing had happened."""
        self.loop.run_until_complete(self._still_serving())
        self.check()

    def stop(self) -> None:
        try:
            if self.bystander is not None:
                with contextlib.suppress(Exception):
                    self.loop.run_until_complete(self.bystander.close())
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            self.errors.remove()
            asyncio.set_event_loop(None)
            self.loop.close()
