"""Shared pieces of the chatproto tests: the worked example's key and a connected pair."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatproto import crypto_utils
from chatproto.connection import (
    ClientConnection,
    Event,
    Greeting,
    HandshakeComplete,
    MessageReceived,
    SendRecord,
    ServerConnection,
    ServerHello,
)
from chatproto.limits import MAX_TEXT
from tests.vectors import protocol_vectors

T = "0123456789abcdef0123456789abcdef"  # a transfer id
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

KEY_B64 = "A" * 43  # 32 bytes in unpadded base64, as vodozemac prints a key
OLM_BODY = {"algorithm": "olm.v1", "sender_key": KEY_B64, "type": 0, "ciphertext": "AwgA"}
SIGNATURE_B64 = "A" * 86  # 64 bytes
USER_KEY = {
    "user": "alice",
    "ed25519": KEY_B64,
    "version": 1,
    "signatures": {"device": SIGNATURE_B64},
}
BLOB = {"ciphertext": "AwgA", "mac": KEY_B64}
BACKUP = {
    "user": "alice",
    "version": 1,
    "algorithm": "chat.backup.v1",
    "public_key": KEY_B64,
    "identity": BLOB,
    "signatures": {"user": SIGNATURE_B64},
}

# A valid example of every request type, and the typed fields it must give (besides id).
VALID: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "login": (
        {"username": "alice", "password": "correct horse"},
        {"username": "alice", "password": "correct horse", "otp": None, "remember": None},
    ),
    "register": (
        {"username": "bob", "password": "pw"},
        {"username": "bob", "password": "pw", "remember": None},
    ),
    "resume": (
        {"username": "alice", "token": "t" * 43},
        {"username": "alice", "token": "t" * 43},
    ),
    "devices": ({}, {}),
    "revoke": ({"device": "d1"}, {"device": "d1"}),
    "logout": ({}, {}),
    "change_password": (
        {"password": "old", "new_password": "new"},
        {"password": "old", "new_password": "new"},
    ),
    "otp_setup": ({}, {}),
    "otp_confirm": ({"code": "123456"}, {"code": "123456"}),
    "otp_disable": (
        {"password": "pw", "code": "123456"},
        {"password": "pw", "code": "123456"},
    ),
    "send": ({"room": "lobby", "text": "hi"}, {"room": "lobby", "text": "hi", "e2e": None}),
    "pm": ({"to": "bob", "text": "hi"}, {"to": "bob", "text": "hi", "e2e": None}),
    "users": ({}, {}),
    "rooms": ({}, {}),
    "join": ({"room": "dev"}, {"room": "dev"}),
    "leave": ({"room": "dev"}, {"room": "dev"}),
    "create_room": ({"room": "dev"}, {"room": "dev", "private": False, "members": ()}),
    "invite": ({"room": "dev", "user": "carol"}, {"room": "dev", "user": "carol"}),
    "history": ({"room": "lobby"}, {"room": "lobby", "with_": None, "before": None, "limit": 50}),
    "ping": ({}, {}),
    "file_offer": (
        {"transfer": T, "to": "bob", "name": "a.txt", "size": 3, "sha256": SHA},
        {"transfer": T, "to": "bob", "name": "a.txt", "size": 3, "sha256": SHA, "e2e": None},
    ),
    "file_accept": ({"transfer": T}, {"transfer": T}),
    "file_reject": ({"transfer": T}, {"transfer": T}),
    "file_ack": ({"transfer": T, "index": 0}, {"transfer": T, "index": 0}),
    "file_end": ({"transfer": T}, {"transfer": T}),
    "file_done": ({"transfer": T, "ok": True}, {"transfer": T, "ok": True}),
    "file_cancel": ({"transfer": T}, {"transfer": T, "reason": ""}),
    # docs/protocol.md section 4.
    "keys_upload": ({}, {"device_keys": None, "one_time_keys": (), "fallback_key": None}),
    "user_key_publish": ({"user_key": USER_KEY}, {"user_key": USER_KEY, "reset": False}),
    "keys_query": ({"users": ["bob", "bob"]}, {"users": ("bob",)}),
    "keys_claim": (
        {"devices": [{"user": "bob", "device": "d1"}]},
        {"devices": (("bob", "d1"),)},
    ),
    "device_list_changes": ({"since": 0}, {"since": 0}),
    "to_device": (
        {"messages": [{"user": "bob", "device": "d1", "body": OLM_BODY}]},
        {"messages": (("bob", "d1", OLM_BODY),)},
    ),
    "to_device_ack": ({"upto": 3}, {"upto": 3}),
    # docs/protocol.md 4.13.
    "backup_publish": ({"backup": BACKUP}, {"backup": BACKUP, "password": None}),
    "backup_get": ({}, {}),
    "backup_put": (
        {"version": 1, "sessions": [{"session_id": KEY_B64, "first_index": 0, "blob": BLOB}]},
        {"version": 1, "sessions": ((KEY_B64, 0, BLOB),)},
    ),
    "backup_fetch": ({"version": 2}, {"version": 2, "after": None, "limit": 500}),
}


GREETING = {
    "type": "greeting",
    "server": "test",
    "text": "Welcome. Please log in.",
    "registration": True,
    "limits": {"max_text": MAX_TEXT, "max_file_size": 1 << 30},
}


@functools.cache
def server_key() -> rsa.RSAPrivateKey:
    """The worked example's RSA-3072 key: a real server key without generating one per test."""
    key = serialization.load_pem_private_key(
        protocol_vectors()["server_rsa_private_key_pem"].encode("ascii"), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def vector_bytes(name: str) -> bytes:
    """A ``*_hex`` or ``*_b64`` field of the worked example as bytes."""
    value = protocol_vectors()[name]
    return bytes.fromhex(value) if name.endswith("_hex") else base64.b64decode(value)


def vector_x25519(name: str):
    return crypto_utils.x25519_private_from_bytes(vector_bytes(name))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def edit_json(text: str, **changes: Any) -> str:
    """The JSON text with fields replaced (re-encoded, so it stays valid JSON)."""
    message = json.loads(text)
    message.update(changes)
    return json.dumps(message)


def handshake(*, max_text: int = MAX_TEXT) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server that completed the handshake in memory and verified the greeting."""
    server = ServerConnection(server_key(), max_text=max_text)
    client = ClientConnection()
    [hello] = client.receive_text(server.hello())
    assert isinstance(hello, ServerHello)
    events = server.receive_text(client.send_key())
    assert [type(e) for e in events] == [HandshakeComplete]
    [greeting] = client.receive_bytes(server.send(GREETING))
    assert isinstance(greeting, Greeting)
    return client, server


def logged_in() -> tuple[ClientConnection, ServerConnection]:
    client, server = handshake()
    server.login_succeeded()
    return client, server


def replies(client: ClientConnection, events: list[Event]) -> list[dict[str, Any]]:
    """What the client reads from the records among ``events`` (in order)."""
    messages = []
    for event in events:
        if isinstance(event, SendRecord):
            [received] = client.receive_bytes(event.data)
            assert isinstance(received, MessageReceived)
            messages.append(received.message)
    return messages
