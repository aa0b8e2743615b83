"""What a server session keeps of its handshake: nothing once the key message is processed,
and one DER encoding of the server key per process instead of one per connection."""

from __future__ import annotations

import gc
import weakref

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chatproto import connection, crypto_utils, handshake
from chatproto.connection import ClientConnection, CloseConnection, ServerConnection, State
from chatproto.errors import LocalProtocolError
from tests.chatproto.helpers import server_key


@pytest.fixture
def handshakes(monkeypatch) -> weakref.WeakSet:
    """Every :class:`~chatproto.handshake.ServerHandshake` a connection makes, while it lives."""
    alive: weakref.WeakSet = weakref.WeakSet()

    class Watched(handshake.ServerHandshake):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            alive.add(self)

    monkeypatch.setattr(connection, "ServerHandshake", Watched)
    return alive


def kept(handshakes: weakref.WeakSet) -> int:
    """How many handshake states are still held by anything."""
    gc.collect()
    return len(handshakes)


def test_the_handshake_state_is_dropped_after_a_good_key_message(handshakes):
    server = ServerConnection(server_key())
    assert kept(handshakes) == 1
    client = ClientConnection()
    client.receive_text(server.hello())
    server.receive_text(client.send_key())
    assert server.state is State.AWAITING_LOGIN
    assert kept(handshakes) == 0
    with pytest.raises(LocalProtocolError):
        server.hello()


def test_the_handshake_state_is_dropped_after_a_bad_key_message(handshakes):
    server = ServerConnection(server_key())
    server.hello()
    assert kept(handshakes) == 1
    assert server.receive_text('{"type": "key"}') == [CloseConnection(4000)]
    assert kept(handshakes) == 0


def test_the_server_key_der_is_encoded_once_per_key():
    key = server_key()
    first = handshake.server_key_der(key)
    assert first == crypto_utils.public_key_der(key)
    assert handshake.server_key_der(key) is first  # the cached bytes, not a new encoding
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert handshake.server_key_der(other) == crypto_utils.public_key_der(other)
    assert handshake.server_key_der(key) == first  # a different key is never served from cache
