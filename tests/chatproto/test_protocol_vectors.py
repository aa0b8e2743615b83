"""The worked example of docs/protocol.md, reproduced byte for byte through chatproto."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest

from chatproto import crypto_utils, framing, handshake
from chatproto.connection import (
    ClientConnection,
    CloseConnection,
    Greeting,
    HandshakeComplete,
    MessageReceived,
    RequestReceived,
    ServerConnection,
    ServerHello,
)
from chatproto.errors import CryptoError, HandshakeError, RecordError
from chatproto.framing import FileChunk
from chatproto.handshake import ClientHandshake, ServerHandshake, SessionKeys
from chatproto.records import RecordOpener, RecordSealer
from tests.chatproto.helpers import b64, edit_json, server_key, vector_bytes, vector_x25519
from tests.vectors import protocol_vectors

V = protocol_vectors()
KEY_NAMES = ("c2s_enc", "c2s_mac", "s2c_enc", "s2c_mac")


def assert_vector_keys(keys: SessionKeys) -> None:
    assert keys.th == vector_bytes("th_hex")
    for name in KEY_NAMES:
        assert getattr(keys, name) == vector_bytes(f"{name}_hex"), name


def vector_server() -> ServerHandshake:
    return ServerHandshake(server_key(), eph_private=vector_x25519("eph_s_private_hex"))


def vector_client(**kwargs) -> ClientHandshake:
    return ClientHandshake(
        secret=vector_bytes("secret_b64"), eph_private=vector_x25519("eph_c_private_hex"), **kwargs
    )


def b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def record_keys(direction: str) -> tuple[bytes, bytes]:
    return vector_bytes(f"{direction}_enc_hex"), vector_bytes(f"{direction}_mac_hex")


# --- identity and handshake messages -------------------------------------------------------


def test_server_key_der_and_fingerprint_match_the_example():
    der = vector_bytes("server_key_der_b64")
    assert crypto_utils.public_key_der(server_key()) == der
    assert crypto_utils.fingerprint(der) == V["server_key_fingerprint"]
    assert crypto_utils.fingerprint(server_key()) == V["server_key_fingerprint"]
    assert crypto_utils.fingerprint(server_key().public_key()) == V["server_key_fingerprint"]


def test_ephemeral_public_keys_match_their_private_keys():
    eph_s = crypto_utils.x25519_public_bytes(vector_x25519("eph_s_private_hex"))
    eph_c = crypto_utils.x25519_public_bytes(vector_x25519("eph_c_private_hex"))
    assert eph_s == vector_bytes("eph_s_public_hex")
    assert eph_c == vector_bytes("eph_c_public_hex")


def test_server_hello_is_the_example_hello():
    assert json.loads(vector_server().hello()) == V["hello_json"]


def test_client_reads_the_example_hello():
    identity = vector_client().receive_hello(json.dumps(V["hello_json"]))
    assert identity.der == vector_bytes("server_key_der_b64")
    assert identity.fingerprint == V["server_key_fingerprint"]
    assert identity.public_key.public_numbers() == server_key().public_key().public_numbers()


def test_key_ciphertext_decrypts_to_the_secret():
    # RSA-OAEP is randomized: the ciphertext cannot be recomputed, only decrypted.
    ciphertext = vector_bytes("key_ciphertext_b64")
    assert V["key_json"]["key"] == V["key_ciphertext_b64"]
    assert crypto_utils.decrypt_rsa(server_key(), ciphertext) == vector_bytes("secret_b64")


# --- key schedule ------------------------------------------------------------------------


def test_both_sides_compute_the_example_dh():
    dh = vector_bytes("dh_hex")
    server_side = crypto_utils.x25519_shared(
        vector_x25519("eph_s_private_hex"), vector_bytes("eph_c_public_hex")
    )
    client_side = crypto_utils.x25519_shared(
        vector_x25519("eph_c_private_hex"), vector_bytes("eph_s_public_hex")
    )
    assert server_side == client_side == dh


def test_transcript_th_and_okm_match_the_example():
    transcript = handshake.transcript(
        vector_bytes("server_key_der_b64"),
        vector_bytes("eph_s_public_hex"),
        vector_bytes("key_ciphertext_b64"),
        vector_bytes("eph_c_public_hex"),
    )
    assert transcript == vector_bytes("transcript_hex")
    assert hashlib.sha256(transcript).digest() == vector_bytes("th_hex")
    okm = crypto_utils.hkdf_sha256(
        vector_bytes("secret_b64") + vector_bytes("dh_hex"),
        vector_bytes("th_hex"),
        b"chat/v1 session keys",
        128,
    )
    assert okm == vector_bytes("okm_hex")
    assert okm == b"".join(vector_bytes(f"{name}_hex") for name in KEY_NAMES)


def test_derive_session_keys_gives_the_example_keys():
    keys = handshake.derive_session_keys(
        vector_bytes("secret_b64"), vector_bytes("dh_hex"), vector_bytes("transcript_hex")
    )
    assert_vector_keys(keys)
    assert keys.session_id == V["th_hex"][:16]


def test_server_handshake_derives_the_example_keys_from_the_example_key_message():
    assert_vector_keys(vector_server().receive_key(json.dumps(V["key_json"])))


def test_client_handshake_reproduces_the_example_key_message_and_keys():
    client = vector_client(key_ciphertext=vector_bytes("key_ciphertext_b64"))
    client.receive_hello(json.dumps(V["hello_json"]))
    assert json.loads(client.key_message()) == V["key_json"]
    assert client.keys is not None
    assert_vector_keys(client.keys)


def test_client_handshake_with_its_own_ciphertext_agrees_with_the_server():
    client = vector_client()
    client.receive_hello(json.dumps(V["hello_json"]))
    key_message = json.loads(client.key_message())
    assert key_message["eph"] == b64(vector_bytes("eph_c_public_hex"))
    ciphertext = b64decode(key_message["key"])
    assert crypto_utils.decrypt_rsa(server_key(), ciphertext) == vector_bytes("secret_b64")
    assert key_message["key"] != V["key_ciphertext_b64"]  # OAEP drew fresh randomness
    server_keys = vector_server().receive_key(json.dumps(key_message))
    assert client.keys == server_keys
    expected = handshake.derive_session_keys(
        vector_bytes("secret_b64"),
        vector_bytes("dh_hex"),
        handshake.transcript(
            vector_bytes("server_key_der_b64"),
            vector_bytes("eph_s_public_hex"),
            ciphertext,
            vector_bytes("eph_c_public_hex"),
        ),
    )
    assert server_keys == expected


# --- records -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record", V["records"], ids=[f"{r['direction']}-seq{r['seq']}" for r in V["records"]]
)
def test_record_is_sealed_byte_for_byte_with_the_example_iv(record):
    iv = bytes.fromhex(record["iv_hex"])
    sealer = RecordSealer(*record_keys(record["direction"]), iv_source=lambda n: iv[:n])
    sealer.seq = record["seq"]
    assert sealer.seal(bytes.fromhex(record["plaintext_hex"])) == bytes.fromhex(
        record["record_hex"]
    )
    assert sealer.seq == record["seq"] + 1


@pytest.mark.parametrize(
    "record", V["records"], ids=[f"{r['direction']}-seq{r['seq']}" for r in V["records"]]
)
def test_record_opens_to_the_example_plaintext(record):
    opener = RecordOpener(*record_keys(record["direction"]))
    opener.seq = record["seq"]
    assert opener.open(bytes.fromhex(record["record_hex"])) == bytes.fromhex(
        record["plaintext_hex"]
    )


@pytest.mark.parametrize(
    "record", V["records"], ids=[f"{r['direction']}-seq{r['seq']}" for r in V["records"]]
)
def test_record_plaintext_decodes_and_reencodes_identically(record):
    plaintext = bytes.fromhex(record["plaintext_hex"])
    decoded = framing.decode_plaintext(plaintext)
    if isinstance(decoded, FileChunk):
        assert framing.encode_chunk(decoded.transfer, decoded.index, decoded.data) == plaintext
    else:
        assert framing.encode_json(decoded) == plaintext
        assert framing.encoded_size(decoded) == len(plaintext)


def test_example_chunk_record_carries_transfer_index_and_data():
    [chunk_record] = [r for r in V["records"] if r["plaintext_hex"].startswith("02")]
    chunk = framing.decode_plaintext(bytes.fromhex(chunk_record["plaintext_hex"]))
    assert isinstance(chunk, FileChunk)
    assert chunk.transfer_hex == chunk_record["plaintext_hex"][2:34]
    assert chunk.index == int(chunk_record["plaintext_hex"][34:42], 16)
    assert chunk.data == bytes.fromhex(chunk_record["plaintext_hex"][42:])


def test_whole_example_session_through_the_connections():
    """Both connections, with every random input injected, emit the example's bytes."""
    ivs = {
        direction: [bytes.fromhex(r["iv_hex"]) for r in V["records"] if r["direction"] == direction]
        for direction in ("s2c", "c2s")
    }
    server = ServerConnection(
        server_key(),
        eph_private=vector_x25519("eph_s_private_hex"),
        iv_source=lambda n: ivs["s2c"].pop(0),
    )
    client = ClientConnection(
        secret=vector_bytes("secret_b64"),
        eph_private=vector_x25519("eph_c_private_hex"),
        key_ciphertext=vector_bytes("key_ciphertext_b64"),
        iv_source=lambda n: ivs["c2s"].pop(0),
    )
    [hello] = client.receive_text(server.hello())
    assert isinstance(hello, ServerHello)
    assert hello.identity.fingerprint == V["server_key_fingerprint"]
    key_text = client.send_key()
    assert json.loads(key_text) == V["key_json"]
    [complete] = server.receive_text(key_text)
    assert complete == HandshakeComplete(V["th_hex"][:16])
    assert server.session_id == client.keys.session_id == V["th_hex"][:16]

    by_seq = {(r["direction"], r["seq"]): r for r in V["records"]}
    greeting_record = by_seq["s2c", 0]
    greeting = json.loads(bytes.fromhex(greeting_record["plaintext_hex"])[1:])
    sealed = server.send(greeting)
    assert sealed.hex() == greeting_record["record_hex"]
    assert client.receive_bytes(sealed) == [Greeting(greeting)]

    login = by_seq["c2s", 0]
    sealed = client.send(json.loads(bytes.fromhex(login["plaintext_hex"])[1:]))
    assert sealed.hex() == login["record_hex"]
    [login_event] = server.receive_bytes(sealed)
    assert isinstance(login_event, RequestReceived)
    assert login_event.request.type == "login"
    server.login_succeeded()

    chunk_plain = bytes.fromhex(by_seq["c2s", 1]["plaintext_hex"])
    chunk = framing.decode_plaintext(chunk_plain)
    sealed = client.send_chunk(chunk.transfer, chunk.index, chunk.data)
    assert sealed.hex() == by_seq["c2s", 1]["record_hex"]
    assert [type(e).__name__ for e in server.receive_bytes(sealed)] == ["ChunkReceived"]

    sealed = client.send({"type": "ping"})
    assert sealed.hex() == by_seq["c2s", 2]["record_hex"]
    [ping] = server.receive_bytes(sealed)
    assert isinstance(ping, RequestReceived) and ping.request.type == "ping"
    ivs["s2c"].append(os.urandom(16))
    pong = server.send({"type": "pong"})
    assert isinstance(client.receive_bytes(pong)[0], MessageReceived)


# --- rejections --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    V["invalid_c2s_records_expecting_seq_0"],
    ids=[case["why"] for case in V["invalid_c2s_records_expecting_seq_0"]],
)
def test_invalid_example_record_is_rejected(case):
    opener = RecordOpener(*record_keys("c2s"))
    with pytest.raises(RecordError):
        opener.open(bytes.fromhex(case["record_hex"]))
    assert opener.seq == 0


@pytest.mark.parametrize(
    "case",
    V["invalid_c2s_records_expecting_seq_0"],
    ids=[case["why"] for case in V["invalid_c2s_records_expecting_seq_0"]],
)
def test_server_closes_4002_on_invalid_example_record(case):
    server = ServerConnection(server_key(), eph_private=vector_x25519("eph_s_private_hex"))
    server.hello()
    server.receive_text(json.dumps(V["key_json"]))
    assert server.receive_bytes(bytes.fromhex(case["record_hex"])) == [CloseConnection(4002)]


def test_invalid_examples_are_rejected_for_their_stated_reason():
    """Each invalid record differs from the valid one only as its `why` says."""
    valid = bytes.fromhex(next(r for r in V["records"] if r["direction"] == "c2s")["record_hex"])
    cases = {
        c["why"]: bytes.fromhex(c["record_hex"]) for c in V["invalid_c2s_records_expecting_seq_0"]
    }
    assert cases["truncated: last byte missing"] == valid[:-1]
    assert cases["version byte is not 1"][1:] == valid[1:]
    for why in ("one bit of the ciphertext flipped", "one bit of the tag flipped"):
        diff = [a ^ b for a, b in zip(cases[why], valid, strict=True)]
        assert sum(bin(d).count("1") for d in diff) == 1, why


@pytest.mark.parametrize("public_hex", V["low_order_x25519_publics_hex"])
def test_low_order_public_key_gives_crypto_error(public_hex):
    with pytest.raises(CryptoError):
        crypto_utils.x25519_shared(vector_x25519("eph_s_private_hex"), bytes.fromhex(public_hex))


@pytest.mark.parametrize("public_hex", V["low_order_x25519_publics_hex"])
def test_key_message_with_low_order_eph_fails_the_handshake(public_hex):
    key_text = edit_json(json.dumps(V["key_json"]), eph=b64(bytes.fromhex(public_hex)))
    with pytest.raises(HandshakeError):
        vector_server().receive_key(key_text)
    server = ServerConnection(server_key())
    server.hello()
    assert server.receive_text(key_text) == [CloseConnection(4000)]


@pytest.mark.parametrize("public_hex", V["low_order_x25519_publics_hex"])
def test_client_aborts_on_a_hello_with_low_order_eph(public_hex):
    hello = edit_json(json.dumps(V["hello_json"]), eph=b64(bytes.fromhex(public_hex)))
    with pytest.raises(HandshakeError):
        vector_client().receive_hello(hello)
    client = ClientConnection()
    assert client.receive_text(hello) == [CloseConnection(4000)]
