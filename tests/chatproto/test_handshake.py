"""The handshake: agreement, tampering in flight, malformed messages, key confirmation."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chatproto import crypto_utils
from chatproto.connection import (
    ClientConnection,
    CloseConnection,
    Greeting,
    HandshakeComplete,
    MessageReceived,
    RequestReceived,
    ServerConnection,
    ServerHello,
    State,
)
from chatproto.errors import HandshakeError, LocalProtocolError
from chatproto.handshake import ClientHandshake, ServerHandshake
from tests.chatproto.helpers import (
    GREETING,
    b64,
    edit_json,
    handshake,
    server_key,
    vector_x25519,
)
from tests.vectors import protocol_vectors

V = protocol_vectors()


@functools.cache
def rsa_key(bits: int, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def fresh_eph() -> bytes:
    return crypto_utils.x25519_public_bytes(crypto_utils.generate_x25519())


# --- agreement ---------------------------------------------------------------------------


def test_client_and_server_agree_on_keys_and_talk_both_ways():
    client, server = handshake()
    assert client.keys == server.keys
    assert client.ready and server.state is State.AWAITING_LOGIN
    assert client.identity.fingerprint == crypto_utils.fingerprint(server_key())

    [received] = server.receive_bytes(client.send({"type": "ping", "id": "p1"}))
    assert isinstance(received, RequestReceived)
    assert (received.request.type, received.request.id) == ("ping", "p1")
    assert client.receive_bytes(server.send({"type": "pong", "ref": "p1"})) == [
        MessageReceived({"type": "pong", "ref": "p1"})
    ]
    server.login_succeeded()
    for n in range(3):
        [event] = server.receive_bytes(
            client.send({"type": "send", "room": "lobby", "text": f"{n}"})
        )
        assert event.request.text == str(n)
        [event] = client.receive_bytes(server.send({"type": "message", "text": f"{n}"}))
        assert event.message["text"] == str(n)


def test_greeting_is_delivered_as_key_confirmation():
    server = ServerConnection(server_key())
    client = ClientConnection()
    client.receive_text(server.hello())
    server.receive_text(client.send_key())
    assert client.receive_bytes(server.send(GREETING)) == [Greeting(GREETING)]


def test_each_connection_uses_fresh_ephemeral_keys_and_secret():
    (c1, _), (c2, _) = handshake(), handshake()
    assert c1.keys.th != c2.keys.th and c1.keys.c2s_enc != c2.keys.c2s_enc
    assert (
        json.loads(ServerConnection(server_key()).hello())["eph"]
        != json.loads(ServerConnection(server_key()).hello())["eph"]
    )


def test_session_keys_repr_shows_no_key_material():
    client, _ = handshake()
    text = repr(client.keys)
    assert client.keys.c2s_enc.hex() not in text and client.keys.session_id in text


# --- tampering in flight -----------------------------------------------------------------

Tamper = Callable[[str], str]


def run_handshake(tamper_hello: Tamper | None = None, tamper_key: Tamper | None = None):
    """Run a handshake through a meddling network; return who stopped it and how."""
    server = ServerConnection(server_key())
    client = ClientConnection()
    hello = server.hello()
    events = client.receive_text(tamper_hello(hello) if tamper_hello else hello)
    if events != [ServerHello(client.identity)]:
        return "client", events
    key = client.send_key()
    events = server.receive_text(tamper_key(key) if tamper_key else key)
    if not isinstance(events[0], HandshakeComplete):
        return "server", events
    events = client.receive_bytes(server.send(GREETING))
    if events != [Greeting(GREETING)]:
        return "client", events
    return "nobody", events


def test_untampered_handshake_completes():
    assert run_handshake() == ("nobody", [Greeting(GREETING)])


def flip_b64(field: str, position: int = 10) -> Tamper:
    def tamper(text: str) -> str:
        raw = bytearray(base64.b64decode(json.loads(text)[field]))
        raw[position] ^= 0x01
        return edit_json(text, **{field: b64(bytes(raw))})

    return tamper


def replace(field: str, make: Callable[[], bytes]) -> Tamper:
    return lambda text: edit_json(text, **{field: b64(make())})


def other_secret_under_server_key() -> bytes:
    return crypto_utils.encrypt_rsa(server_key().public_key(), b"\x42" * 32)


TAMPERED = {
    "hello server_key replaced by another key": (
        replace("server_key", lambda: crypto_utils.public_key_der(rsa_key(2048))),
        None,
        ("server", [CloseConnection(4000)]),
    ),
    "hello eph replaced": (replace("eph", fresh_eph), None, ("client", [CloseConnection(4002)])),
    "hello eph bit flipped": (flip_b64("eph"), None, ("client", [CloseConnection(4002)])),
    "key ciphertext bit flipped": (None, flip_b64("key"), ("server", [CloseConnection(4000)])),
    "key ciphertext replaced by another valid secret": (
        None,
        replace("key", other_secret_under_server_key),
        ("client", [CloseConnection(4002)]),
    ),
    "key eph replaced": (None, replace("eph", fresh_eph), ("client", [CloseConnection(4002)])),
    "key eph bit flipped": (None, flip_b64("eph"), ("client", [CloseConnection(4002)])),
}


@pytest.mark.parametrize(
    ("tamper_hello", "tamper_key", "outcome"), TAMPERED.values(), ids=TAMPERED.keys()
)
def test_changing_a_handshake_field_in_flight_fails(tamper_hello, tamper_key, outcome):
    assert run_handshake(tamper_hello, tamper_key) == outcome


def test_server_key_replaced_in_hello_shows_another_fingerprint():
    """The attacker's own key decrypts the secret: only the pin check stops this one."""
    attacker = rsa_key(2048)
    client = ClientConnection()
    hello = edit_json(
        ServerConnection(server_key()).hello(),
        server_key=b64(crypto_utils.public_key_der(attacker)),
    )
    [event] = client.receive_text(hello)
    assert event.identity.fingerprint == crypto_utils.fingerprint(attacker)
    assert event.identity.fingerprint != crypto_utils.fingerprint(server_key())


def test_server_key_sent_as_pkcs1_instead_of_spki_is_refused():
    # Same key, another encoding: it would have another fingerprint, so it is refused.
    pkcs1 = (
        server_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    )
    hello = edit_json(ServerConnection(server_key()).hello(), server_key=b64(pkcs1))
    assert ClientConnection().receive_text(hello) == [CloseConnection(4000)]


# --- malformed handshake messages ----------------------------------------------------------

KEY_TEXT = json.dumps(V["key_json"])
HELLO_TEXT = json.dumps(V["hello_json"])


def vector_server_connection() -> ServerConnection:
    server = ServerConnection(server_key(), eph_private=vector_x25519("eph_s_private_hex"))
    server.hello()
    return server


def test_controls_the_example_key_and_hello_are_accepted():
    assert isinstance(vector_server_connection().receive_text(KEY_TEXT)[0], HandshakeComplete)
    assert isinstance(ClientConnection().receive_text(HELLO_TEXT)[0], ServerHello)


def set_field(name, value):
    return lambda text: edit_json(text, **{name: value})


def drop_field(name):
    def tamper(text):
        message = json.loads(text)
        del message[name]
        return json.dumps(message)

    return tamper


def on_b64(name, change):
    return lambda text: edit_json(text, **{name: change(json.loads(text)[name])})


def non_canonical(value: str) -> str:
    """Set the unused low bits of the last base64 character before the padding."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    if not value.endswith("="):  # no unused bits: one byte shorter has some
        value = b64(base64.b64decode(value)[:-1])
    body = value.rstrip("=")
    last = alphabet.index(body[-1]) | (0b11 if len(value) - len(body) == 1 else 0b1111)
    return body[:-1] + alphabet[last] + "=" * (len(value) - len(body))


def without_padding(value: str) -> str:
    """The value without its "=" padding; one byte shorter first if it had none (384 bytes)."""
    if not value.endswith("="):
        value = b64(base64.b64decode(value)[:-1])
    return value.rstrip("=")


@functools.cache
def slashy_eph() -> str:
    """A valid X25519 public key whose base64 has '+' or '/', for the url-safe case."""
    for seed in range(1, 100):
        private = crypto_utils.x25519_private_from_bytes(bytes([seed]) * 32)
        text = b64(crypto_utils.x25519_public_bytes(private))
        if {"+", "/"} & set(text):
            return text
    raise AssertionError("no seed gave a '+' or '/'")


def common_malformations(expected_type: str, b64_fields: tuple[str, str]):
    cases = {
        "version true": set_field("version", True),
        "version 1.0": set_field("version", 1.0),
        "version 2": set_field("version", 2),
        "version 0": set_field("version", 0),
        "version '1'": set_field("version", "1"),
        "version null": set_field("version", None),
        "version missing": drop_field("version"),
        "type wrong": set_field("type", "hello" if expected_type == "key" else "key"),
        "type capitalised": set_field("type", expected_type.capitalize()),
        "type missing": drop_field("type"),
        "type not a string": set_field("type", 1),
        "duplicate keys": lambda t: t[:-1] + ', "version": 1}',
        "duplicate type": lambda t: t[:-1] + f', "type": "{expected_type}"}}',
        "NaN": lambda t: t[:-1] + ', "x": NaN}',
        "Infinity": lambda t: t[:-1] + ', "x": -Infinity}',
        "lone surrogate": lambda t: t[:-1] + ', "x": "\\ud800"}',
        "not an object": lambda t: f"[{t}]",
        "not JSON": lambda t: t[:-1],
        "empty": lambda t: "",
    }
    for name in b64_fields:
        cases |= {
            f"{name} missing padding": on_b64(name, without_padding),
            f"{name} with a newline": on_b64(name, lambda v: v[:8] + "\n" + v[8:]),
            f"{name} with a space": on_b64(name, lambda v: v[:8] + " " + v[8:]),
            f"{name} with trailing whitespace": on_b64(name, lambda v: v + " "),
            f"{name} url-safe alphabet": on_b64(
                name, lambda v: v.replace("+", "-").replace("/", "_")
            ),
            f"{name} extra padding": on_b64(name, lambda v: v + "=="),
            f"{name} non-canonical trailing bits": on_b64(name, non_canonical),
            f"{name} non-ascii": on_b64(name, lambda v: v[:8] + "\u00e9" + v[9:]),
            f"{name} empty": set_field(name, ""),
            f"{name} not a string": set_field(name, [1, 2]),
            f"{name} null": set_field(name, None),
            f"{name} missing": drop_field(name),
        }
    return cases


KEY_MALFORMED = common_malformations("key", ("key", "eph")) | {
    # The example's eph_c has no '+' or '/': use a key that has one (see the control below).
    "eph url-safe alphabet": set_field("eph", slashy_eph().replace("+", "-").replace("/", "_")),
    "eph 31 bytes": set_field("eph", b64(bytes(range(1, 32)))),
    "eph 33 bytes": on_b64("eph", lambda v: b64(base64.b64decode(v) + b"\x01")),
    "secret of 31 bytes": set_field(
        "key", b64(crypto_utils.encrypt_rsa(server_key().public_key(), bytes(31)))
    ),
    "secret of 33 bytes": set_field(
        "key", b64(crypto_utils.encrypt_rsa(server_key().public_key(), bytes(33)))
    ),
    "empty secret": set_field("key", b64(crypto_utils.encrypt_rsa(server_key().public_key(), b""))),
    "ciphertext one byte short": on_b64("key", lambda v: b64(base64.b64decode(v)[:-1])),
}


def test_malformation_cases_really_change_the_text():
    for name, tamper in KEY_MALFORMED.items():
        assert tamper(KEY_TEXT) != KEY_TEXT, name
    for name, tamper in HELLO_MALFORMED.items():
        assert tamper(HELLO_TEXT) != HELLO_TEXT, name


@pytest.mark.parametrize("tamper", KEY_MALFORMED.values(), ids=KEY_MALFORMED.keys())
def test_malformed_key_message_closes_4000_and_sends_nothing(tamper):
    server = vector_server_connection()
    assert server.receive_text(tamper(KEY_TEXT)) == [CloseConnection(4000)]
    assert server.state is State.CLOSED
    assert server.receive_bytes(b"\x01" * 100) == []
    with pytest.raises(LocalProtocolError):
        server.send({"type": "greeting"})


@pytest.mark.parametrize("tamper", KEY_MALFORMED.values(), ids=KEY_MALFORMED.keys())
def test_malformed_key_message_raises_handshake_error(tamper):
    handshake = ServerHandshake(server_key(), eph_private=vector_x25519("eph_s_private_hex"))
    with pytest.raises(HandshakeError) as info:
        handshake.receive_key(tamper(KEY_TEXT))
    assert str(info.value) == "handshake failed" and info.value.__cause__ is None


HELLO_MALFORMED = common_malformations("hello", ("server_key", "eph")) | {
    "eph 31 bytes": set_field("eph", b64(bytes(range(1, 32)))),
    "eph 33 bytes": on_b64("eph", lambda v: b64(base64.b64decode(v) + b"\x01")),
    "server_key not a key": set_field("server_key", b64(b"\x30\x03\x02\x01\x01")),
    "server_key with trailing bytes": on_b64(
        "server_key", lambda v: b64(base64.b64decode(v) + b"\x00")
    ),
}


@pytest.mark.parametrize("tamper", HELLO_MALFORMED.values(), ids=HELLO_MALFORMED.keys())
def test_malformed_hello_closes_4000(tamper):
    client = ClientConnection()
    assert client.receive_text(tamper(HELLO_TEXT)) == [CloseConnection(4000)]
    assert client.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        client.send_key()


def test_control_the_slashy_eph_in_standard_base64_is_accepted():
    events = vector_server_connection().receive_text(edit_json(KEY_TEXT, eph=slashy_eph()))
    assert isinstance(events[0], HandshakeComplete)


def test_non_canonical_base64_decodes_to_the_same_bytes_under_lenient_decoding():
    # What makes the case meaningful: only the strict re-encoding check can refuse it.
    for value in (V["hello_json"]["eph"], V["key_json"]["key"], V["hello_json"]["server_key"]):
        changed = non_canonical(value)
        assert changed != value
        lenient = base64.b64decode(changed, validate=True)
        assert b64(lenient) != changed


def test_url_safe_cases_have_characters_to_change():
    assert {"+", "/"} & set(V["key_json"]["key"])
    assert {"+", "/"} & set(V["hello_json"]["server_key"])
    assert {"+", "/"} & set(V["hello_json"]["eph"])


# --- server keys the client refuses ---------------------------------------------------------


@pytest.mark.parametrize(("bits", "exponent"), [(1024, 65537), (2047, 65537), (2048, 3)])
def test_client_refuses_weak_server_keys(bits, exponent):
    hello = ServerConnection(rsa_key(bits, exponent)).hello()
    assert ClientConnection().receive_text(hello) == [CloseConnection(4000)]


def test_client_accepts_a_2048_bit_server_key():
    server = ServerConnection(rsa_key(2048))
    client = ClientConnection()
    [event] = client.receive_text(server.hello())
    assert isinstance(event, ServerHello)
    server.receive_text(client.send_key())
    assert client.receive_bytes(server.send(GREETING)) == [Greeting(GREETING)]


def test_client_refuses_a_non_rsa_server_key():
    der = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hello = edit_json(HELLO_TEXT, server_key=b64(der))
    assert ClientConnection().receive_text(hello) == [CloseConnection(4000)]


# --- key confirmation ------------------------------------------------------------------------


def test_client_cannot_send_before_the_greeting_verified():
    server = ServerConnection(server_key())
    client = ClientConnection()

    def refuses_to_send():
        with pytest.raises(LocalProtocolError):
            client.send({"type": "login", "username": "a", "password": "b"})
        with pytest.raises(LocalProtocolError):
            client.send_chunk(bytes(16), 0, b"x")
        assert not client.ready

    refuses_to_send()  # before hello
    with pytest.raises(LocalProtocolError):
        client.send_key()
    client.receive_text(server.hello())
    refuses_to_send()  # hello received, trust not yet decided
    server.receive_text(client.send_key())
    refuses_to_send()  # key sent, greeting not yet verified
    with pytest.raises(LocalProtocolError):
        client.send_key()
    client.receive_bytes(server.send(GREETING))
    assert client.ready
    client.send({"type": "ping"})


def test_client_never_sends_after_a_greeting_that_fails_to_open():
    server = ServerConnection(server_key())
    client = ClientConnection()
    client.receive_text(server.hello())
    server.receive_text(edit_json(client.send_key(), eph=b64(fresh_eph())))
    assert client.receive_bytes(server.send(GREETING)) == [CloseConnection(4002)]
    with pytest.raises(LocalProtocolError):
        client.send({"type": "login", "username": "a", "password": "secret"})


def test_first_record_that_is_not_a_greeting_closes_4000():
    server = ServerConnection(server_key())
    client = ClientConnection()
    client.receive_text(server.hello())
    server.receive_text(client.send_key())
    assert client.receive_bytes(server.send({"type": "pong"})) == [CloseConnection(4000)]


def test_client_handshake_refuses_key_message_before_hello():
    with pytest.raises(LocalProtocolError):
        ClientHandshake().key_message()


def test_server_cannot_send_records_before_the_key():
    server = ServerConnection(server_key())
    server.hello()
    with pytest.raises(LocalProtocolError):
        server.send(GREETING)
