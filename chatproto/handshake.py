"""The handshake of PROTOCOL.md section 1, as two small I/O-free classes.

The server sends ``hello`` (its RSA key and a fresh X25519 key); the client
answers ``key`` (a 32-byte secret under RSA-OAEP and its own X25519 key). Both
derive the session keys from ``secret || dh`` with the transcript hash as salt,
so a changed handshake field gives different keys and the first record fails.

Every failure raises the same bare :class:`HandshakeError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import PROTOCOL_VERSION, crypto_utils
from .errors import CryptoError, HandshakeError, LocalProtocolError, MessageError
from .framing import parse_json_text

SECRET_SIZE = 32
TRANSCRIPT_LABEL = b"chat/v1"
HKDF_INFO = b"chat/v1 session keys"
OKM_SIZE = 128


@dataclass(frozen=True)
class SessionKeys:
    """The four keys of a session and the transcript hash that names it."""

    th: bytes
    c2s_enc: bytes
    c2s_mac: bytes
    s2c_enc: bytes
    s2c_mac: bytes

    @property
    def session_id(self) -> str:
        """The first 8 bytes of ``th`` in hex: a log id that reveals nothing."""
        return self.th[:8].hex()

    def __repr__(self) -> str:  # never print key material
        return f"SessionKeys(session_id={self.session_id!r})"


@dataclass(frozen=True)
class ServerIdentity:
    """What the client learnt from ``hello``: the key to pin, and its fingerprint."""

    der: bytes
    public_key: RSAPublicKey
    fingerprint: str


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def transcript(server_key_der: bytes, eph_s: bytes, key_ciphertext: bytes, eph_c: bytes) -> bytes:
    """``"chat/v1" || lp(server_key) || lp(eph_s) || lp(key) || lp(eph_c)``."""
    return TRANSCRIPT_LABEL + _lp(server_key_der) + _lp(eph_s) + _lp(key_ciphertext) + _lp(eph_c)


def derive_session_keys(secret: bytes, dh: bytes, transcript_bytes: bytes) -> SessionKeys:
    """The key schedule of PROTOCOL.md 1.3."""
    th = crypto_utils.sha256(transcript_bytes)
    okm = crypto_utils.hkdf_sha256(secret + dh, th, HKDF_INFO, OKM_SIZE)
    return SessionKeys(th, okm[0:32], okm[32:64], okm[64:96], okm[96:128])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _strict_b64(value: Any) -> bytes:
    """Padding required, no whitespace, only the standard alphabet, canonical.

    ``b64decode(validate=True)`` still accepts non-zero bits after the last
    character (``"QR=="`` decodes like ``"QQ=="``); re-encoding refuses those,
    so every accepted field has exactly one spelling.
    """
    if not isinstance(value, str) or not value.isascii():
        raise HandshakeError()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HandshakeError() from None
    if _b64(raw) != value:
        raise HandshakeError()
    return raw


def _parse(text: str | bytes, expected_type: str) -> dict[str, Any]:
    try:
        message = parse_json_text(text)
    except MessageError:
        raise HandshakeError() from None
    version = message.get("version")
    if (
        message.get("type") != expected_type
        or type(version) is not int
        or version != PROTOCOL_VERSION
    ):
        raise HandshakeError()
    return message


# The last server key whose DER was encoded, and that DER: a server has one key, and
# re-encoding it for every connection cost a measurable share of a handshake.
_der_cache: tuple[RSAPrivateKey, bytes] | None = None


def server_key_der(private_key: RSAPrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``private_key``'s public key, encoded once per key.

    The cache holds one entry and compares keys by identity, so it never grows and
    a different key object (a rotated key, a test's key) is encoded afresh.
    """
    global _der_cache
    cached = _der_cache
    if cached is not None and cached[0] is private_key:
        return cached[1]
    der = crypto_utils.public_key_der(private_key)
    _der_cache = (private_key, der)
    return der


class ServerHandshake:
    """The server's side: ``hello()`` to send, then ``receive_key(text)`` gives the keys.

    ``eph_private`` is injectable for the known-answer tests only.
    """

    def __init__(
        self, private_key: RSAPrivateKey, *, eph_private: X25519PrivateKey | None = None
    ) -> None:
        self._private_key = private_key
        self._server_key_der = server_key_der(private_key)
        self._eph = eph_private or crypto_utils.generate_x25519()
        self._eph_public = crypto_utils.x25519_public_bytes(self._eph)

    def hello(self) -> str:
        """The ``hello`` text message."""
        return json.dumps(
            {
                "type": "hello",
                "version": PROTOCOL_VERSION,
                "server_key": _b64(self._server_key_der),
                "eph": _b64(self._eph_public),
            }
        )

    def receive_key(self, text: str | bytes) -> SessionKeys:
        """Check the client's ``key`` message and derive the keys, or raise HandshakeError."""
        message = _parse(text, "key")
        ciphertext = _strict_b64(message.get("key"))
        eph_c = _strict_b64(message.get("eph"))
        try:
            secret = crypto_utils.decrypt_rsa(self._private_key, ciphertext)
            dh = crypto_utils.x25519_shared(self._eph, eph_c)
        except CryptoError:
            raise HandshakeError() from None
        if len(secret) != SECRET_SIZE:
            raise HandshakeError()
        return derive_session_keys(
            secret, dh, transcript(self._server_key_der, self._eph_public, ciphertext, eph_c)
        )


class ClientHandshake:
    """The client's side: ``receive_hello(text)``, decide on trust, then ``key_message()``.

    ``secret``, ``eph_private`` and ``key_ciphertext`` are injectable for the
    known-answer tests only: RSA-OAEP is randomized, so the worked example's
    ``key`` can only be reproduced by handing in its ciphertext (which must be
    RSA-OAEP(server_key, secret), or the server derives other keys).
    """

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        eph_private: X25519PrivateKey | None = None,
        key_ciphertext: bytes | None = None,
    ) -> None:
        self._secret = os.urandom(SECRET_SIZE) if secret is None else secret
        self._eph = eph_private or crypto_utils.generate_x25519()
        self._key_ciphertext = key_ciphertext
        self._identity: ServerIdentity | None = None
        self._eph_s = b""
        self._dh = b""
        self.keys: SessionKeys | None = None

    def receive_hello(self, text: str | bytes) -> ServerIdentity:
        """Parse ``hello``; the caller must check the fingerprint before sending ``key``."""
        message = _parse(text, "hello")
        der = _strict_b64(message.get("server_key"))
        eph_s = _strict_b64(message.get("eph"))
        try:
            public_key = crypto_utils.load_public_key(der)
            # An all-zero dh (low-order eph) aborts here, before the user is asked to trust.
            dh = crypto_utils.x25519_shared(self._eph, eph_s)
        except CryptoError:
            raise HandshakeError() from None
        # load_der_public_key also takes PKCS#1 RSAPublicKey; the protocol sends the DER
        # SubjectPublicKeyInfo only, so one key has one fingerprint.
        if crypto_utils.public_key_der(public_key) != der:
            raise HandshakeError()
        self._identity = ServerIdentity(der, public_key, crypto_utils.fingerprint(der))
        self._eph_s = eph_s
        self._dh = dh
        return self._identity

    def key_message(self) -> str:
        """The ``key`` text message; also derives :attr:`keys`."""
        if self._identity is None:
            raise LocalProtocolError("key_message() before a hello was accepted")
        if self._key_ciphertext is not None:
            ciphertext = self._key_ciphertext
        else:
            try:
                ciphertext = crypto_utils.encrypt_rsa(self._identity.public_key, self._secret)
            except CryptoError:
                raise HandshakeError() from None
        eph_c = crypto_utils.x25519_public_bytes(self._eph)
        self.keys = derive_session_keys(
            self._secret, self._dh, transcript(self._identity.der, self._eph_s, ciphertext, eph_c)
        )
        return json.dumps(
            {
                "type": "key",
                "version": PROTOCOL_VERSION,
                "key": _b64(ciphertext),
                "eph": _b64(eph_c),
            }
        )
