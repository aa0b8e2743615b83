"""The test client's protocol core against chatproto's server side, with no I/O at all."""

from __future__ import annotations

import pytest

from chatproto import crypto_utils
from chatproto.connection import RequestReceived, SendRecord, ServerConnection
from chatproto.framing import FileChunk
from tests.protocol_client.core import ClientProtocol, ProtocolViolation


@pytest.fixture(scope="module")
def server_key():
    return crypto_utils.generate_private_key()


def connected(server_key, expected: str | None = None) -> tuple[ClientProtocol, ServerConnection]:
    """A client and a server that went through hello, key and greeting."""
    server = ServerConnection(server_key)
    client = ClientProtocol(expected or crypto_utils.fingerprint(server_key))
    server.receive_text(client.receive_hello(server.hello()))
    client.receive_greeting(server.send({"type": "greeting", "server": "test"}))
    return client, server


def test_the_handshake_checks_the_pin_and_reads_the_greeting(server_key):
    client, _server = connected(server_key)
    assert client.greeting == {"type": "greeting", "server": "test"}
    assert client.identity.fingerprint == crypto_utils.fingerprint(server_key)


def test_a_server_key_that_is_not_the_pinned_one_is_refused_before_the_key_is_sent(server_key):
    client = ClientProtocol("SHA256:not-this-one")
    with pytest.raises(ProtocolViolation, match="server key changed"):
        client.receive_hello(ServerConnection(server_key).hello())
    assert client.conn.keys is None  # nothing derived, nothing to send


def test_answers_go_to_their_request_and_pushes_stay_in_order(server_key):
    client, server = connected(server_key)
    ref, record = client.request({"type": "ping"})
    (received,) = server.receive_bytes(record)
    assert isinstance(received, RequestReceived) and received.request.id == ref
    pushes = [{"type": "users", "online": [], "all": []}, {"type": "message", "text": "hi"}]
    client.receive(server.send(pushes[0]))
    client.receive(server.send({"type": "pong", "ref": ref}))
    client.receive(server.send(pushes[1]))
    assert client.take_answer(ref) == {"type": "pong", "ref": ref}
    assert client.take_answer(ref) is None
    assert list(client.pending) == pushes


def test_find_skips_expect_insists_and_through_takes_up_to_a_kind(server_key):
    client, server = connected(server_key)
    for message in ({"type": "private"}, {"type": "users"}, {"type": "message"}):
        client.receive(server.send(message))
    assert client.take_through("rooms") is None
    assert client.take_through("users") == [{"type": "private"}, {"type": "users"}]
    client.receive(server.send({"type": "users"}))
    assert client.take_kind("users") == {"type": "users"}
    assert list(client.skipped) == [{"type": "message"}]
    assert client.take_kind("users") is None
    client.receive(server.send({"type": "rooms"}))
    with pytest.raises(AssertionError, match="expected users"):
        client.take_expected("users")


def test_chunks_and_messages_are_two_streams_and_one_order(server_key):
    client, server = connected(server_key)
    client.receive(server.send_chunk(bytes(16), 0, b"data"))
    client.receive(server.send({"type": "file_end"}))
    assert client.take_item() == FileChunk(bytes(16), 0, b"data")
    client.receive(server.send_chunk(bytes(16), 1, b"more"))
    client.receive(server.send({"type": "file_done"}))
    assert client.take_message() == {"type": "file_end"}
    assert client.take_message() == {"type": "file_done"}
    assert client.take_message() is None
    assert client.take_chunk() == FileChunk(bytes(16), 1, b"more")  # it waited for its turn


def test_a_raw_plaintext_goes_in_a_valid_record_and_the_sequence_goes_on(server_key):
    client, server = connected(server_key)
    server.receive_bytes(client.seal({"type": "ping"}))
    assert client.next_seq == 1
    (answer,) = server.receive_bytes(client.seal_raw(b"\x09 no such kind"))
    assert isinstance(answer, SendRecord)  # an error answer: the record opened, no close
    (received,) = server.receive_bytes(client.seal({"type": "ping", "id": "after"}))
    assert isinstance(received, RequestReceived) and received.request.id == "after"
    assert client.next_seq == 3


def test_a_damaged_record_or_a_text_message_is_the_servers_fault(server_key):
    client, server = connected(server_key)
    record = bytearray(server.send({"type": "pong"}))
    record[-1] ^= 1
    with pytest.raises(ProtocolViolation, match="bad record"):
        client.receive(bytes(record))
    with pytest.raises(ProtocolViolation, match="text message"):
        connected(server_key)[0].receive('{"type": "pong"}')
