"""Properties of ``docs/security.md`` that no other test shows: what each attacker gets.

Some of these prove a protection (a stolen server key does not open a recorded
session; a user cannot write as another); others pin down a limit the design
admits (a stolen key lets an impostor pass the pin; lengths show through the
encryption), so that the document's honest "cannot" stays true.
"""

from __future__ import annotations

import base64
import json
import struct

import pytest

from chat import services, storage
from chatproto import crypto_utils
from chatproto.connection import (
    ClientConnection,
    Greeting,
    HandshakeComplete,
    ServerConnection,
    ServerHello,
)
from chatproto.errors import RecordError
from chatproto.framing import encoded_size
from chatproto.handshake import derive_session_keys, transcript
from chatproto.records import RecordOpener
from tests.chatproto.helpers import GREETING, server_key
from tests.protocol_client.inprocess import in_process_session

# --- someone holding the server key ------------------------------------------------------------


def recorded_session():
    """A session as a network attacker records it: hello, key, and one record each way."""
    server = ServerConnection(server_key())
    client = ClientConnection()
    hello = server.hello()
    client.receive_text(hello)
    key = client.send_key()
    assert isinstance(server.receive_text(key)[0], HandshakeComplete)
    greeting = server.send(GREETING)
    assert isinstance(client.receive_bytes(greeting)[0], Greeting)
    login = client.send({"type": "login", "username": "alice", "password": "hunter2 hunter2"})
    return json.loads(hello), json.loads(key), login, client


def keys_from(secret: bytes, dh: bytes, hello: dict, key: dict):
    return derive_session_keys(
        secret,
        dh,
        transcript(
            base64.b64decode(hello["server_key"]),
            base64.b64decode(hello["eph"]),
            base64.b64decode(key["key"]),
            base64.b64decode(key["eph"]),
        ),
    )


def test_a_stolen_server_key_does_not_open_a_recorded_session():
    """Forward secrecy: the RSA key gives the secret, but the X25519 share of each side was
    ephemeral. Every dh the thief can compute (with a key of their own against either eph,
    or the all-zero one) gives keys that do not open the recorded login."""
    hello, key, login, client = recorded_session()
    secret = crypto_utils.decrypt_rsa(server_key(), base64.b64decode(key["key"]))
    assert len(secret) == 32  # the thief does get this far
    thief = crypto_utils.generate_x25519()
    guesses = [
        bytes(32),
        crypto_utils.x25519_shared(thief, base64.b64decode(hello["eph"])),
        crypto_utils.x25519_shared(thief, base64.b64decode(key["eph"])),
    ]
    for dh in guesses:
        keys = keys_from(secret, dh, hello, key)
        with pytest.raises(RecordError):
            RecordOpener(keys.c2s_enc, keys.c2s_mac).open(login)
    # Control: with the client's ephemeral private key (gone once the session ends) it opens.
    keys = client.keys
    assert b"hunter2" in RecordOpener(keys.c2s_enc, keys.c2s_mac).open(login)


def test_a_stolen_server_key_lets_an_impostor_pass_a_pinned_client():
    """The limit of pinning: the fingerprint is the key's, so whoever holds the key *is* the
    server to every client, pinned or not, and reads the password at the next login."""
    impostor = ServerConnection(server_key())  # the stolen key, on the attacker's machine
    client = ClientConnection()
    pinned = crypto_utils.fingerprint(server_key())
    (hello,) = client.receive_text(impostor.hello())
    assert isinstance(hello, ServerHello) and hello.identity.fingerprint == pinned
    impostor.receive_text(client.send_key())
    client.receive_bytes(impostor.send(GREETING))
    (received,) = impostor.receive_bytes(
        client.send({"type": "login", "username": "alice", "password": "hunter2 hunter2"})
    )
    assert received.request.password == "hunter2 hunter2"


# --- a network attacker ------------------------------------------------------------------------


def test_a_record_shows_the_length_of_its_message_to_sixteen_bytes():
    """CBC pads to 16 bytes and nothing more: the size of each record tells an observer the
    size of the message inside, give or take 15 bytes (and the timing of records shows who
    is active)."""
    client, server = ClientConnection(), ServerConnection(server_key())
    client.receive_text(server.hello())
    server.receive_text(client.send_key())
    client.receive_bytes(server.send(GREETING))
    sizes = {}
    for length in (1, 15, 16, 100, 1000, 4000):
        message = {"type": "send", "room": "lobby", "text": "x" * length}
        record = client.send(message)
        sizes[length] = len(record)
        # 57 bytes of header, IV and tag; the plaintext padded to the next multiple of 16.
        assert len(record) == 57 + (encoded_size(message) // 16 + 1) * 16
    assert sorted(sizes.values()) == list(sizes.values())
    assert sizes[4000] - sizes[1000] == pytest.approx(3000, abs=16)


# --- someone holding a database dump -----------------------------------------------------------


def test_a_stored_body_hides_its_text_but_not_its_length(settings, tmp_path):
    """Without storage.key a dump shows no text; it does show each text's length (to 16 bytes),
    and every row's sender, room or recipient and time in clear."""
    settings.CHAT_STORAGE_KEY = tmp_path / "storage.key"
    storage.storage_key(create=True)
    short = base64.b64decode(storage.BodyCipher().encrypt("hi"))
    long = base64.b64decode(storage.BodyCipher().encrypt("a secret plan " * 100))
    assert b"secret" not in long and b"plan" not in long
    assert len(long) - len(short) == pytest.approx(len("a secret plan " * 100) - 2, abs=16)


# --- a malicious logged-in user ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_message_cannot_claim_another_sender(create_users, run_sync):
    """``from`` is the session's user, whatever fields a client adds to its request."""
    await create_users("alice", "bob")
    async with in_process_session() as session:
        await session.login("alice")
        ack = await session.request(
            {
                "type": "send",
                "room": "lobby",
                "text": "from bob, honest",
                "from": "bob",
                "user": "bob",
            }
        )
        assert ack["type"] == "ack"
        pushed = await session.find("message")
        assert pushed["from"] == "alice"
    bob = (await run_sync(lambda: list(services.User.objects.filter(username="bob"))))[0]
    history = await run_sync(services.history, bob, room="lobby")
    assert [(m["from"], m["text"]) for m in history["messages"]] == [("alice", "from bob, honest")]


def test_struct_layout_of_a_record_header_is_version_then_sequence():
    """What an observer reads in clear: the version byte and the sequence number (how many
    records each side has sent), never anything of the content."""
    client, server = ClientConnection(), ServerConnection(server_key())
    client.receive_text(server.hello())
    server.receive_text(client.send_key())
    record = server.send(GREETING)
    assert struct.unpack(">BQ", record[:9]) == (1, 0)
    assert b"greeting" not in record and b"Welcome" not in record
