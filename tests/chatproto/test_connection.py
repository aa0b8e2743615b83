"""The session state machines: what each kind of input does in each state."""

from __future__ import annotations

import os

import pytest

from chatproto import records
from chatproto.codes import ErrorCode
from chatproto.connection import (
    BadLoginAnswer,
    ChunkReceived,
    ClientConnection,
    CloseConnection,
    Greeting,
    LoginFailed,
    LoginRefused,
    MessageReceived,
    RegisterFailed,
    RequestReceived,
    SendRecord,
    ServerConnection,
    SessionEnded,
    State,
    error_message,
)
from chatproto.connection import LoggedIn as ClientLoggedIn
from chatproto.errors import LocalProtocolError
from chatproto.framing import FileChunk, encode_json
from chatproto.limits import (
    KEY_DEADLINE_SECONDS,
    LOGIN_DEADLINE_SECONDS,
    MAX_BAD_REQUESTS,
    MAX_CHUNK_SIZE,
    MAX_LOGIN_FAILURES,
    MAX_RECORD_SIZE,
    MAX_RECORDS_PER_DIRECTION,
)
from chatproto.records import RecordSealer, SequenceExhausted
from tests.chatproto.helpers import GREETING, VALID, handshake, logged_in, replies, server_key

TRANSFER = bytes.fromhex("0123456789abcdef0123456789abcdef")


def full_request(kind: str, id_: str = "q1") -> dict:
    return {"type": kind, "id": id_, **VALID[kind][0]}


def fresh_server() -> ServerConnection:
    server = ServerConnection(server_key())
    server.hello()
    return server


def forger(conn: ClientConnection | ServerConnection) -> RecordSealer:
    """Seals any plaintext at all (what ``send`` refuses to carry) as ``conn``'s side would,
    with its session keys, continuing after the records it sent: a buggy or hostile peer."""
    keys = conn.keys
    assert keys is not None
    if isinstance(conn, ServerConnection):
        sealer = RecordSealer(keys.s2c_enc, keys.s2c_mac)
    else:
        sealer = RecordSealer(keys.c2s_enc, keys.c2s_mac)
    sealer.seq = conn.records_sent
    return sealer


def closes_with(events, code) -> bool:
    return events[-1] == CloseConnection(code) and not any(
        isinstance(e, CloseConnection) for e in events[:-1]
    )


# --- WebSocket message kinds ----------------------------------------------------------------


def test_binary_message_before_the_handshake_closes_4000():
    server = fresh_server()
    assert server.receive_bytes(b"\x01" + bytes(100)) == [CloseConnection(4000)]
    assert server.state is State.CLOSED


def test_client_closes_4000_on_binary_before_hello_and_before_key():
    assert ClientConnection().receive_bytes(bytes(80)) == [CloseConnection(4000)]
    client = ClientConnection()
    client.receive_text(ServerConnection(server_key()).hello())
    assert client.receive_bytes(bytes(80)) == [CloseConnection(4000)]  # awaiting trust


def test_client_closes_4000_on_text_while_awaiting_the_greeting():
    server = fresh_server()
    client = ClientConnection()
    client.receive_text(server.hello())
    client.send_key()
    assert client.receive_text(server.hello()) == [CloseConnection(4000)]


@pytest.mark.parametrize("logged", [False, True], ids=["awaiting login", "logged in"])
def test_text_message_after_the_handshake_closes_4002(logged):
    _, server = logged_in() if logged else handshake()
    assert server.receive_text('{"type": "ping"}') == [CloseConnection(4002)]
    assert server.state is State.CLOSED


def test_client_closes_4002_on_text_after_the_greeting():
    client, _ = handshake()
    assert client.receive_text('{"type": "pong"}') == [CloseConnection(4002)]


def test_second_key_message_is_a_text_after_the_handshake():
    server = fresh_server()
    client = ClientConnection()
    client.receive_text(server.hello())
    key = client.send_key()
    server.receive_text(key)
    assert server.receive_text(key) == [CloseConnection(4002)]


@pytest.mark.parametrize("side", ["server", "client"])
def test_bad_record_closes_4002_and_oversized_closes_1009(side):
    client, server = handshake()
    receiver, sender = (server, client) if side == "server" else (client, server)
    record = bytearray(sender.send({"type": "ping"}))
    record[-1] ^= 1
    assert receiver.receive_bytes(bytes(record)) == [CloseConnection(4002)]
    client, server = handshake()
    receiver = server if side == "server" else client
    assert receiver.receive_bytes(bytes(MAX_RECORD_SIZE + 1)) == [CloseConnection(1009)]


def test_replayed_record_closes_4002():
    client, server = handshake()
    record = client.send({"type": "ping"})
    server.receive_bytes(record)
    assert server.receive_bytes(record) == [CloseConnection(4002)]


# --- before login ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["login", "register", "resume", "ping"])
def test_login_register_resume_and_ping_pass_before_login(kind):
    client, server = handshake()
    [event] = server.receive_bytes(client.send(full_request(kind)))
    assert isinstance(event, RequestReceived)
    assert (event.request.type, event.request.id) == (kind, "q1")


@pytest.mark.parametrize("kind", sorted(set(VALID) - {"login", "register", "resume", "ping"}))
def test_other_known_types_are_not_authenticated_before_login(kind):
    client, server = handshake()
    events = server.receive_bytes(client.send(full_request(kind)))
    assert replies(client, events) == [
        {"type": "error", "code": "not_authenticated", "message": "log in first", "ref": "q1"}
    ]
    assert server.state is State.AWAITING_LOGIN


def test_unknown_type_before_login_is_bad_request():
    client, server = handshake()
    [error] = replies(client, server.receive_bytes(client.send({"type": "nope", "id": "q7"})))
    assert (error["code"], error["ref"]) == ("bad_request", "q7")


def test_chunk_before_login_is_not_authenticated():
    client, server = handshake()
    events = server.receive_bytes(client.send_chunk(TRANSFER, 0, b"data"))
    [error] = replies(client, events)
    assert error["code"] == "not_authenticated" and "ref" not in error


def test_not_authenticated_does_not_count_as_a_bad_request():
    client, server = handshake()
    for _ in range(MAX_BAD_REQUESTS + 2):
        events = server.receive_bytes(client.send(full_request("send")))
        assert not any(isinstance(e, CloseConnection) for e in events)


# --- after login ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(VALID))
def test_after_login_every_type_but_the_logins_is_passed_on(kind):
    client, server = logged_in()
    events = server.receive_bytes(client.send(full_request(kind)))
    if kind in ("login", "register", "resume"):
        [error] = replies(client, events)
        assert (error["code"], error["ref"]) == ("bad_request", "q1")
    else:
        [event] = events
        assert isinstance(event, RequestReceived) and event.request.type == kind


def test_chunk_after_login_is_received():
    client, server = logged_in()
    events = server.receive_bytes(client.send_chunk(TRANSFER, 3, b"data"))
    assert events == [ChunkReceived(FileChunk(TRANSFER, 3, b"data"))]
    assert client.receive_bytes(server.send_chunk(TRANSFER, 4, b"back")) == [
        ChunkReceived(FileChunk(TRANSFER, 4, b"back"))
    ]


def test_a_relayed_chunk_reaches_the_other_client_sealed_from_the_plaintext_it_came_in():
    alice, alice_server = logged_in()
    bob, bob_server = logged_in()
    data = os.urandom(MAX_CHUNK_SIZE)
    [received] = alice_server.receive_bytes(alice.send_chunk(TRANSFER, 7, data))
    assert isinstance(received, ChunkReceived)
    chunk = received.chunk
    assert isinstance(chunk.data, memoryview) and chunk.data.obj is chunk.plaintext.obj  # no copy
    assert bob.receive_bytes(bob_server.forward_chunk(chunk)) == [
        ChunkReceived(FileChunk(TRANSFER, 7, data))
    ]


def test_forwarding_a_chunk_made_by_hand_encodes_it_with_the_same_checks():
    client, server = logged_in()
    record = server.forward_chunk(FileChunk(TRANSFER, 2, b"made here"))
    assert client.receive_bytes(record) == [ChunkReceived(FileChunk(TRANSFER, 2, b"made here"))]
    with pytest.raises(LocalProtocolError):
        server.forward_chunk(FileChunk(TRANSFER, 3, bytes(MAX_CHUNK_SIZE + 1)))


def test_forwarding_an_oversized_received_chunk_is_refused_like_encoding_it():
    # The relay cancels such a chunk (chunk_too_large) before it would forward it; were
    # it forwarded anyway, the plaintext path refuses it as encode_chunk does.
    client, server = logged_in()  # (a client's send_chunk would refuse to make it)
    oversized = b"\x02" + TRANSFER + bytes(4) + bytes(MAX_CHUNK_SIZE + 1)
    [received] = server.receive_bytes(forger(client).seal(oversized))
    assert isinstance(received, ChunkReceived)
    _, other = logged_in()
    with pytest.raises(LocalProtocolError):
        other.forward_chunk(received.chunk)


def test_login_succeeded_only_while_awaiting_login():
    _, server = logged_in()
    with pytest.raises(LocalProtocolError):
        server.login_succeeded()
    with pytest.raises(LocalProtocolError):
        fresh_server().login_succeeded()


# --- counting bad requests and failed logins ------------------------------------------------


def test_tenth_bad_request_closes_4008_and_not_the_ninth():
    client, server = handshake()
    for n in range(1, MAX_BAD_REQUESTS):
        events = server.receive_bytes(client.send({"type": "nope", "id": str(n)}))
        assert [type(e) for e in events] == [SendRecord], n
        assert replies(client, events)[0]["code"] == "bad_request"
    events = server.receive_bytes(client.send({"type": "nope", "id": "10"}))
    assert [type(e) for e in events] == [SendRecord, CloseConnection]
    assert closes_with(events, 4008)
    [error] = replies(client, events)
    assert (error["code"], error["ref"]) == ("bad_request", "10")  # answered, then closed
    assert server.state is State.CLOSED
    assert server.receive_bytes(client.send({"type": "ping"})) == []


def test_every_kind_of_bad_request_counts_including_too_large():
    client, server = logged_in()
    bad_messages = [
        {"type": "nope"},
        {"type": "ping", "id": ""},
        {"type": "send", "room": "Bad", "text": "x"},
        {"type": "send", "room": "lobby", "text": "x" * 4001},  # too_large
        {"type": "history", "room": "lobby", "with": "bob"},
        {"type": "login", "username": "a", "password": "b"},  # login after login
    ]
    # Plaintexts that send() cannot produce, sealed with the client's own keys.
    bad_plaintexts = [b"", b"\x02" + TRANSFER, b"\x09{}", b"\x01[]"]
    records = [client.send(m) for m in bad_messages]
    forged = forger(client)
    records += [forged.seal(p) for p in bad_plaintexts]
    assert len(records) == MAX_BAD_REQUESTS
    codes = []
    for record in records[:-1]:
        events = server.receive_bytes(record)
        assert [type(e) for e in events] == [SendRecord]
        codes += [m["code"] for m in replies(client, events)]
    assert set(codes) == {"bad_request", "too_large"}
    assert closes_with(server.receive_bytes(records[-1]), 4008)


def test_too_large_text_is_answered_too_large_with_ref():
    client, server = logged_in()
    message = {"type": "send", "id": "t", "room": "lobby", "text": "x" * 4001}
    [error] = replies(client, server.receive_bytes(client.send(message)))
    assert (error["code"], error["ref"]) == ("too_large", "t")


def test_server_max_text_setting_is_enforced_and_capped():
    client, server = handshake(max_text=5)
    server.login_succeeded()
    message = {"type": "send", "id": "t", "room": "lobby", "text": "x" * 6}
    [error] = replies(client, server.receive_bytes(client.send(message)))
    assert error["code"] == "too_large"
    with pytest.raises(ValueError, match="max_text"):
        ServerConnection(server_key(), max_text=4001)
    with pytest.raises(ValueError, match="max_text"):
        ServerConnection(server_key(), max_text=0)


def test_application_errors_count_only_bad_request_and_too_large():
    client, server = logged_in()
    for _ in range(MAX_BAD_REQUESTS + 1):
        events = server.reply_error(ErrorCode.FORBIDDEN, "not a member", "x")
        assert [type(e) for e in events] == [SendRecord]
        replies(client, events)
    for n in range(1, MAX_BAD_REQUESTS):
        events = server.reply_error(ErrorCode.BAD_REQUEST, "pm to oneself", str(n))
        assert [type(e) for e in events] == [SendRecord]
        replies(client, events)
    events = server.reply_error("too_large", "file too large", "f")
    assert closes_with(events, 4008)
    assert replies(client, events)[-1] == error_message("too_large", "file too large", "f")


def test_fifth_failed_login_is_answered_then_closes_4001():
    client, server = handshake()
    answer = {"type": "login_failed", "ref": "l", "reason": "invalid_credentials"}
    for _ in range(1, MAX_LOGIN_FAILURES):
        events = server.login_failed(answer)
        assert [type(e) for e in events] == [SendRecord]
        assert replies(client, events) == [answer]
    events = server.login_failed(answer)
    assert [type(e) for e in events] == [SendRecord, CloseConnection]
    assert closes_with(events, 4001)
    assert replies(client, events) == [answer]
    assert server.state is State.CLOSED


def test_failed_logins_and_bad_requests_are_counted_apart():
    client, server = handshake()
    answer = {"type": "login_failed", "ref": "l", "reason": "invalid_credentials"}
    for _ in range(MAX_LOGIN_FAILURES - 1):
        server.login_failed(answer)
    for _ in range(MAX_BAD_REQUESTS - 1):
        events = server.receive_bytes(client.send({"type": "nope"}))
        assert not any(isinstance(e, CloseConnection) for e in events)


# --- deadlines ----------------------------------------------------------------------------


def test_key_deadline_closes_4000():
    server = fresh_server()
    assert server.deadline() == KEY_DEADLINE_SECONDS == 10
    assert server.timed_out(KEY_DEADLINE_SECONDS - 0.001) == []
    assert server.state is State.AWAITING_KEY
    assert server.timed_out(KEY_DEADLINE_SECONDS) == [CloseConnection(4000)]
    assert server.state is State.CLOSED
    assert server.deadline() is None


def test_login_deadline_closes_4008():
    _, server = handshake()
    assert server.deadline() == LOGIN_DEADLINE_SECONDS == 60
    assert server.timed_out(LOGIN_DEADLINE_SECONDS - 0.001) == []
    assert server.timed_out(LOGIN_DEADLINE_SECONDS) == [CloseConnection(4008)]
    assert server.state is State.CLOSED


def test_no_deadline_once_logged_in():
    _, server = logged_in()
    assert server.deadline() is None
    assert server.timed_out(10_000) == []
    assert server.state is State.LOGGED_IN


# --- closed ---------------------------------------------------------------------------------


def test_closed_connection_ignores_all_input():
    client, server = handshake()
    record = client.send({"type": "ping"})
    server.close()
    assert server.state is State.CLOSED
    assert server.receive_bytes(record) == []
    assert server.receive_text("anything") == []
    assert server.receive_bytes(b"") == []
    with pytest.raises(LocalProtocolError):
        server.send({"type": "pong"})
    client.close()
    assert client.receive_bytes(forger(server).seal(b"\x01{}")) == []
    assert client.receive_text("x") == []
    with pytest.raises(LocalProtocolError):
        client.send({"type": "ping"})


def test_fresh_server_closed_before_key_ignores_the_key():
    server = fresh_server()
    server.close()
    assert server.receive_text('{"type": "key"}') == []


# --- client side after the greeting ---------------------------------------------------------


def test_client_passes_on_unknown_types_and_fields():
    client, server = handshake()
    message = {"type": "something_new", "extra": {"nested": [1, 2]}}
    assert client.receive_bytes(server.send(message)) == [MessageReceived(message)]


def test_client_ignores_a_malformed_message_and_goes_on():
    client, server = handshake()
    forged = forger(server)
    for plaintext in [b"\x01{", b"\x01[]", b"", b"\x07", b'\x01{"a":1,"a":2}', b'\x01{"x":1}']:
        assert client.receive_bytes(forged.seal(plaintext)) == []
    assert client.receive_bytes(forged.seal(encode_json({"type": "pong"}))) == [
        MessageReceived({"type": "pong"})
    ]


def test_sender_at_two_to_the_32_records_must_reconnect(monkeypatch):
    # The record layer stops at 2**32 (tests/chatproto/test_records.py seals up to it); the
    # limit is lowered here to what the connections reach, to see each side stop there.
    assert MAX_RECORDS_PER_DIRECTION == records.MAX_RECORDS_PER_DIRECTION == 2**32
    client, server = handshake()
    limit = 3
    monkeypatch.setattr(records, "MAX_RECORDS_PER_DIRECTION", limit)
    while server.records_sent < limit:
        assert client.receive_bytes(server.send({"type": "pong"})) == [
            MessageReceived({"type": "pong"})
        ]
    with pytest.raises(SequenceExhausted):
        server.send({"type": "pong"})
    while client.records_sent < limit:
        assert server.receive_bytes(client.send({"type": "ping", "id": "p"}))
    with pytest.raises(SequenceExhausted):
        client.send({"type": "ping"})


def test_records_sent_counts_the_records_each_side_sealed():
    assert fresh_server().records_sent == 0
    assert ClientConnection().records_sent == 0
    client, server = handshake()
    assert (server.records_sent, client.records_sent) == (1, 0)  # the greeting
    server.receive_bytes(client.send({"type": "ping", "id": "p"}))
    client.receive_bytes(server.send({"type": "pong", "ref": "p"}))
    assert (server.records_sent, client.records_sent) == (2, 1)


def test_session_id_is_eight_bytes_of_th_in_hex():
    client, server = handshake()
    assert server.session_id == client.keys.th[:8].hex()
    assert len(server.session_id) == 16
    assert fresh_server().session_id is None


def test_error_message_has_ref_only_when_given():
    assert error_message(ErrorCode.FORBIDDEN, "no") == {
        "type": "error",
        "code": "forbidden",
        "message": "no",
    }
    assert error_message("bad_request", "bad", "r")["ref"] == "r"


def test_send_refuses_a_message_too_large_for_a_record():
    client, server = logged_in()
    with pytest.raises(LocalProtocolError):
        server.send({"type": "history", "messages": ["x" * MAX_RECORD_SIZE]})
    # and the session still works
    assert client.receive_bytes(server.send({"type": "pong"})) == [
        MessageReceived({"type": "pong"})
    ]


def test_a_plaintext_encoded_once_is_sealed_for_each_session_in_its_sequence():
    from chatproto.framing import encode_json

    pairs = [logged_in(), logged_in()]
    for client, server in pairs:  # sessions at different sequence numbers
        client.receive_bytes(server.send({"type": "pong"}))
    pairs[1][0].receive_bytes(pairs[1][1].send({"type": "pong"}))
    message = {"type": "message", "msg_id": 7, "room": "lobby", "from": "a", "text": "hi"}
    plaintext = encode_json(message)
    for client, server in pairs:
        assert client.receive_bytes(server.send_plaintext(plaintext)) == [MessageReceived(message)]
        # and the next record follows in sequence
        assert client.receive_bytes(server.send({"type": "pong"})) == [
            MessageReceived({"type": "pong"})
        ]


def test_send_plaintext_refuses_before_the_handshake_and_anything_but_encoded_json():
    from chatproto.framing import encode_chunk, encode_json

    with pytest.raises(LocalProtocolError):
        fresh_server().send_plaintext(encode_json({"type": "pong"}))
    client, server = logged_in()
    with pytest.raises(LocalProtocolError):
        server.send_plaintext(encode_chunk(TRANSFER, 0, b"data"))
    with pytest.raises(LocalProtocolError):
        server.send_plaintext(b"")
    # refusals seal nothing: the session goes on in sequence
    assert client.receive_bytes(server.send({"type": "pong"})) == [
        MessageReceived({"type": "pong"})
    ]


# --- client side: login, answers, session_ended ---------------------------------------------

ROOMS = [{"name": "lobby", "private": False, "owner": None, "members": ["alice"]}]


def login_ok(ref: str = "l1") -> dict:
    return {"type": "login_ok", "ref": ref, "user": {"username": "alice"}, "rooms": ROOMS}


def strict_handshake() -> tuple[ClientConnection, ServerConnection]:
    """A strict client (as the chat clients make it) and a server, greeting verified."""
    server = fresh_server()
    client = ClientConnection(strict=True)
    client.receive_text(server.hello())
    server.receive_text(client.send_key())
    [greeting] = client.receive_bytes(server.send(GREETING))
    assert isinstance(greeting, Greeting)
    return client, server


def strict_logged_in() -> tuple[ClientConnection, ServerConnection]:
    client, server = strict_handshake()
    server.receive_bytes(client.send_login("l1", "alice", "pw"))
    server.login_succeeded()
    [event] = client.receive_bytes(server.send(login_ok()))
    assert isinstance(event, ClientLoggedIn)
    return client, server


@pytest.mark.parametrize("strict", [False, True], ids=["tool", "strict"])
def test_client_turns_login_ok_into_logged_in_and_serves_every_request(strict):
    client, server = strict_handshake() if strict else handshake()
    record = client.send_login("l1", "alice", "pw")
    assert client.state is State.LOGGING_IN and not client.may_log_in
    [request] = server.receive_bytes(record)
    assert request.request.type == "login"
    server.login_succeeded()

    [event] = client.receive_bytes(server.send(login_ok()))

    assert event == ClientLoggedIn(login_ok(), "alice", ROOMS)
    assert isinstance(event, MessageReceived) and event.message == login_ok()  # tools see it too
    assert client.state is State.LOGGED_IN and client.logged_in and client.username == "alice"
    [sent] = server.receive_bytes(client.send(full_request("send")))
    assert isinstance(sent, RequestReceived)


def test_client_login_failed_says_why_and_allows_another_try():
    client, server = strict_handshake()
    server.receive_bytes(client.send_login("l1", "alice", "bad"))
    answer = {"type": "login_failed", "ref": "l1", "reason": "rate_limited", "retry_after": 30}

    [event] = client.receive_bytes(server.send(answer))

    assert event == LoginFailed(answer, "rate_limited", 30, False)
    assert client.state is State.AWAITING_LOGIN and client.may_log_in
    server.receive_bytes(client.send_login("l2", "alice", "pw"))
    assert client.state is State.LOGGING_IN


def test_client_register_failed_carries_the_servers_words():
    client, server = strict_handshake()
    [request] = server.receive_bytes(client.send_login("r1", "bob", "pw", otp="1", register=True))
    assert request.request.type == "register" and "otp" not in request.request.as_dict()
    answer = {"type": "register_failed", "ref": "r1", "reason": "username_taken", "message": "m"}

    [event] = client.receive_bytes(server.send(answer))

    assert isinstance(event, RegisterFailed) and event.registering
    assert (event.reason, event.detail, event.retry_after) == ("username_taken", "m", None)


def test_client_an_error_answering_the_login_is_a_refusal_with_its_code():
    client, server = strict_handshake()
    server.receive_bytes(client.send_login("l1", "alice", "pw"))
    answer = error_message(ErrorCode.INTERNAL, "try again", "l1")

    [event] = client.receive_bytes(server.send(answer))

    assert type(event) is LoginRefused
    assert (event.reason, event.code, event.detail) == ("error", "internal", "try again")
    assert client.may_log_in


@pytest.mark.parametrize("retry_after", ["30", 1.5, True, None])
def test_client_retry_after_must_be_whole_seconds(retry_after):
    client, server = strict_handshake()
    server.receive_bytes(client.send_login("l1", "alice", "pw"))
    answer = {"type": "login_failed", "ref": "l1", "reason": "rate_limited"}
    [event] = client.receive_bytes(server.send({**answer, "retry_after": retry_after}))
    assert event.retry_after is None


def test_client_other_messages_while_logging_in_are_passed_on():
    client, server = strict_handshake()
    server.receive_bytes(client.send_login("l1", "alice", "pw"))
    client.send({"type": "ping", "id": "k1"})  # a keepalive may go while the login is out
    for message in [{"type": "pong", "ref": "k1"}, {"type": "login_ok", "ref": "other"}]:
        assert client.receive_bytes(server.send(message)) == [MessageReceived(message)]
    assert client.state is State.LOGGING_IN


@pytest.mark.parametrize(
    "answer",
    [
        {"type": "login_ok", "ref": "l1", "rooms": []},
        {"type": "login_ok", "ref": "l1", "user": {"username": 7}, "rooms": []},
        {"type": "login_ok", "ref": "l1", "user": {"username": "alice"}, "rooms": {}},
    ],
)
def test_client_a_malformed_login_ok_closes(answer):
    client, server = strict_handshake()
    server.receive_bytes(client.send_login("l1", "alice", "pw"))

    events = client.receive_bytes(server.send(answer))

    assert events == [BadLoginAnswer(answer), CloseConnection(1000)]
    assert client.state is State.CLOSED and client.progress is State.LOGGING_IN


def test_client_session_ended_counts_only_after_login():
    client, server = strict_handshake()
    ended = {"type": "session_ended", "reason": "deactivated"}
    assert client.receive_bytes(server.send(ended)) == [MessageReceived(ended)]
    assert client.ended is None

    client, server = strict_logged_in()
    [event] = client.receive_bytes(server.send(ended))

    assert event == SessionEnded(ended, "deactivated") and client.ended == event
    client.close()
    assert client.ended == event and client.progress is State.LOGGED_IN


def test_client_session_ended_without_a_reason_still_ends():
    client, server = strict_logged_in()
    [event] = client.receive_bytes(server.send({"type": "session_ended"}))
    assert event.reason == "ended"


def test_client_progress_is_the_state_it_closed_in():
    client, _server = strict_handshake()
    assert client.progress is State.AWAITING_LOGIN
    assert client.receive_text("{}") == [CloseConnection(4002)]
    assert (client.state, client.progress) == (State.CLOSED, State.AWAITING_LOGIN)
    fresh = ClientConnection()
    fresh.close()
    assert fresh.progress is State.AWAITING_HELLO


# What a strict client lets out in each state (PROTOCOL.md 3.1), for every request type.
def strict_client_in(state: State) -> ClientConnection:
    if state is State.LOGGED_IN:
        return strict_logged_in()[0]
    client, _ = strict_handshake()
    if state is State.LOGGING_IN:
        client.send_login("l1", "alice", "pw")
    return client


def allowed(state: State, kind: str) -> bool:
    if state is State.AWAITING_LOGIN:
        return kind in ("login", "register", "resume", "ping")
    if state is State.LOGGING_IN:
        return kind == "ping"
    return kind not in ("login", "register", "resume")


@pytest.mark.parametrize("kind", sorted(VALID))
@pytest.mark.parametrize("state", [State.AWAITING_LOGIN, State.LOGGING_IN, State.LOGGED_IN])
def test_strict_client_sends_only_what_the_server_serves_in_its_state(state, kind):
    client = strict_client_in(state)
    if allowed(state, kind):
        client.send(full_request(kind))
    else:
        with pytest.raises(LocalProtocolError):
            client.send(full_request(kind))
        assert client.state is state  # a refusal changes nothing


@pytest.mark.parametrize("state", [State.AWAITING_LOGIN, State.LOGGING_IN, State.LOGGED_IN])
def test_strict_client_sends_chunks_only_once_logged_in(state):
    client = strict_client_in(state)
    if state is State.LOGGED_IN:
        client.send_chunk(TRANSFER, 0, b"data")
    else:
        with pytest.raises(LocalProtocolError):
            client.send_chunk(TRANSFER, 0, b"data")


def test_strict_client_refuses_a_login_it_could_not_recognise_the_answer_of():
    client, _ = strict_handshake()
    with pytest.raises(LocalProtocolError):
        client.send({"type": "login", "username": "a", "password": "b"})
    with pytest.raises(LocalProtocolError):
        client.send_plaintext(b'\x01{"type": "ping"}')
    assert client.may_log_in


def test_a_strict_clients_refusals_seal_nothing():
    client, server = strict_handshake()
    with pytest.raises(LocalProtocolError):
        client.send(full_request("send"))
    [event] = server.receive_bytes(client.send(full_request("ping")))
    assert isinstance(event, RequestReceived)  # in sequence: the refused request took no number


def test_a_tool_client_may_send_what_the_server_refuses():
    client, server = handshake()  # not strict: it plays a misbehaving client
    [error] = replies(client, server.receive_bytes(client.send(full_request("send"))))
    assert error["code"] == "not_authenticated"
    server.receive_bytes(client.send({"type": "login", "username": "a", "password": "b"}))
    server.login_succeeded()
    answer = {"type": "login_ok", "user": {"username": "a"}, "rooms": []}
    [event] = client.receive_bytes(server.send(answer))
    assert isinstance(event, ClientLoggedIn)  # a login without id is answered without ref


def test_a_rate_limited_error_always_carries_retry_after_of_at_least_one_second():
    assert error_message(ErrorCode.RATE_LIMITED, "slow down", "r", 12)["retry_after"] == 12
    assert error_message(ErrorCode.RATE_LIMITED, "slow down")["retry_after"] == 1
    assert error_message(ErrorCode.RATE_LIMITED, "slow down", None, 0)["retry_after"] == 1
    assert "retry_after" not in error_message(ErrorCode.FORBIDDEN, "no", None, 5)
