"""Fuzzing the real consumer: hostile frames before, during and after the handshake and login.

Each case is one session of the WebSocket application (in process, through
Channels' communicator) that receives generated frames, each judged by
:mod:`tests.fuzz.harness`: the answer or close code PROTOCOL.md names, never
``internal``, never an error in the server's logs or an exception out of the
application; and after every case a bystander session still gets ``pong``.
Each test ends with a new session that logs in and writes, seen by the
bystander: the process kept serving everyone else.

``make test`` runs a bounded, derandomized number of cases (a few thousand
frames in all); ``make fuzz`` sets ``CHAT_FUZZ_EXAMPLES`` for a long random run.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatproto.codes import CloseCode
from chatproto.framing import encode_json
from chatproto.limits import MAX_RECORD_SIZE
from tests.fuzz import strategies
from tests.fuzz.harness import (
    PRIVATE_ROOM,
    Exchange,
    Expect,
    FuzzSession,
    Model,
    ProtocolViolation,
    classify,
    damage,
    edit_key_message,
    judge,
    key_message_verdict,
)
from tests.protocol_client.e2e_body import e2e_body

pytestmark = pytest.mark.django_db(transaction=True)

_CONFIGURED = os.environ.get("CHAT_FUZZ_EXAMPLES", "").strip()
LONG_RUN = bool(_CONFIGURED)


def examples(default: int) -> int:
    """Cases per test: ``default`` in ``make test``, ``CHAT_FUZZ_EXAMPLES`` in ``make fuzz``."""
    return int(_CONFIGURED) if LONG_RUN else default


def fuzz_settings(default: int) -> settings:
    # derandomize: `make test` runs the same cases every time (CI never flakes on a new
    # seed); the long run explores. database=None: nothing written into the repository.
    return settings(
        max_examples=examples(default),
        deadline=None,
        derandomize=not LONG_RUN,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


def timeout(default: int) -> pytest.MarkDecorator:
    """The long run takes as long as it takes; the bounded one must stay short."""
    return pytest.mark.timeout(max(300, examples(default) // 2))


# --- before the handshake --------------------------------------------------------------------


@timeout(150)
def test_anything_but_a_key_before_the_handshake_closes_4000(arena):
    @given(frame=strategies.first_frames)
    @fuzz_settings(150)
    def case(frame):
        async def run(session: FuzzSession) -> None:
            await session.open()
            kind, payload = frame
            if kind == "text":
                await session.send_text(payload)
            else:
                await session.send_bytes(payload)
            output = await session.next_frame()
            if output["type"] != "websocket.close" or output.get("code") != CloseCode.BAD_HANDSHAKE:
                raise ProtocolViolation(f"{frame!r} was answered with {output}, not a 4000 close")
            session.model.closed = output["code"]

        arena.run(run)

    case()
    arena.still_serving()


@timeout(150)
def test_edited_key_messages_close_4000_or_complete_the_handshake(arena):
    @given(edits=strategies.key_edits())
    @fuzz_settings(150)
    def case(edits):
        async def run(session: FuzzSession) -> None:
            await session.open()
            original = json.loads(session.key_text)
            text = edit_key_message(session.key_text, edits)
            verdict = key_message_verdict(text, original)
            await session.send_text(text)
            output = await session.next_frame()
            if output["type"] == "websocket.close":
                session.model.closed = output.get("code")
                if verdict == "same" or output.get("code") != CloseCode.BAD_HANDSHAKE:
                    raise ProtocolViolation(f"{text!r} ({verdict}) closed with {output}")
                return
            if verdict == "close":
                raise ProtocolViolation(f"{text!r} should have closed 4000, got {output}")
            if verdict == "same":
                assert session.open_record(output)["type"] == "greeting"
                await session.send_plaintext(b'\x01{"type":"ping","id":"p"}')
                answer = session.open_record(await session.next_frame())
                assert answer == {"type": "pong", "ref": "p"}, answer
                return
            # Another eph: the server derived keys we do not hold; its greeting must not open.
            with pytest.raises(ProtocolViolation):
                session.open_record(output)

        arena.run(run)

    case()
    arena.still_serving()


# --- after the handshake, before and after login ---------------------------------------------


async def play(session: FuzzSession, frames: list) -> None:
    """Send ``frames`` in order, judging each, until the session is closed."""
    for kind, payload in frames:
        if kind == "plaintext":
            await session.hostile_plaintext(payload)
        else:
            data, code = damage(session, payload)
            if isinstance(data, str):
                await session.damaged_frame(lambda d=data: session.send_text(d), code)
            else:
                await session.damaged_frame(lambda d=data: session.send_bytes(d), code)
        if session.model.closed is not None:
            return


@timeout(150)
def test_hostile_records_before_login(arena):
    @given(frames=strategies.session_frames)
    @fuzz_settings(150)
    def case(frames):
        async def run(session: FuzzSession) -> None:
            await session.open()
            await session.complete_handshake()
            await play(session, frames)

        arena.run(run)

    case()
    arena.still_serving()


@pytest.mark.slow  # 220 cases by default: about 9 s of CPU, 10-25 s on a shared machine
@timeout(220)
def test_hostile_records_after_login(arena):
    @given(frames=strategies.session_frames, device=st.booleans())
    @fuzz_settings(220)
    def case(frames, device):
        async def run(session: FuzzSession) -> None:
            await session.open()
            await session.complete_handshake()
            await session.login("fuzzer", "pw", remember="fuzz device" if device else None)
            await play(session, frames)

        arena.run(run)

    case()
    arena.still_serving()


# --- end to end: where text is refused (docs/protocol.md 4.5) ---------------------------------


def test_the_oracle_holds_the_server_to_e2e_required_for_plain_text(arena):
    """The judge knows where ``text`` is refused: to another account in a ``pm``, and in a
    private room one is a member of; elsewhere it is served, or refused for another reason."""
    plain = [
        {"type": "pm", "id": "to bystander", "to": "bystander", "text": "in clear"},
        {"type": "pm", "id": "to self", "to": "fuzzer", "text": "in clear"},
        {"type": "pm", "id": "to nobody", "to": "nobody", "text": "in clear"},
        {"type": "send", "id": "private", "room": PRIVATE_ROOM, "text": "in clear"},
        {"type": "send", "id": "public", "room": "lobby", "text": "in clear"},
    ]

    async def run(session: FuzzSession) -> None:
        await session.open()
        await session.complete_handshake()
        await session.login("fuzzer", "pw", remember="fuzz device")
        sealed = e2e_body(session.device or "")
        answers = {}
        for request in [
            *plain,
            {"type": "pm", "id": "e2e", "to": "bystander", "e2e": sealed},
            {"type": "send", "id": "e2e room", "room": PRIVATE_ROOM, "e2e": sealed},
        ]:
            exchange = await session.hostile_plaintext(encode_json(request))
            answer = next(m for m in exchange.messages if m.get("ref") == request["id"])
            answers[request["id"]] = answer.get("code", answer["type"])
        assert answers == {
            "to bystander": "e2e_required",
            "to self": "bad_request",
            "to nobody": "unknown_user",
            "private": "e2e_required",
            "public": "ack",
            "e2e": "ack",
            "e2e room": "ack",
        }

    arena.run(run)
    arena.still_serving()


def test_an_ack_for_plain_text_where_e2e_is_required_is_a_violation():
    expect = classify(
        encode_json({"type": "pm", "id": "p", "to": "bob", "text": "hi"}), logged_in=True
    )
    refused = Expect(request=expect.request, e2e_required=True)
    ack = {"type": "ack", "ref": "p", "msg_id": 1, "ts": "2026-01-01T00:00:00.000Z"}
    pong = {"type": "pong", "ref": "barrier"}
    with pytest.raises(ProtocolViolation, match="not refused"):
        judge(Model(logged_in=True), refused, Exchange([ack, pong]), barrier_ref="barrier")
    error = {"type": "error", "ref": "p", "code": "e2e_required", "message": "update"}
    judge(Model(logged_in=True), refused, Exchange([error, pong]), barrier_ref="barrier")


# --- frames too large for a record -----------------------------------------------------------


@pytest.mark.parametrize("stage", ["before login", "after login"])
@pytest.mark.parametrize("frame", ["binary", "text"])
def test_frames_over_one_mebibyte_close_the_session(arena, stage, frame):
    """A record over 1 MiB closes 1009; an oversized *text* frame is still a text frame (4002).

    (Through daphne both are refused with 1009 by the WebSocket layer before the
    consumer sees them; in process the consumer must decide, and must not choke.)
    """

    async def run(session: FuzzSession) -> None:
        await session.open()
        await session.complete_handshake()
        if stage == "after login":
            await session.login("fuzzer", "pw")
        if frame == "binary":
            await session.damaged_frame(
                lambda: session.send_bytes(b"\x01" + bytes(MAX_RECORD_SIZE)), CloseCode.TOO_LARGE
            )
        else:
            await session.damaged_frame(
                lambda: session.send_text("x" * (MAX_RECORD_SIZE + 1)), CloseCode.BAD_RECORD
            )

    arena.run(run)
    arena.still_serving()
