"""Every cryptographic primitive the project uses, over ``cryptography`` only.

This is the one module that imports ``cryptography.hazmat``. Each function
raises :class:`~chatproto.errors.CryptoError` and nothing else for a failed
check, so no caller can leak which check failed. Random bytes come from
``os.urandom``; the IV and ephemeral keys can be injected only so that the
known-answer tests can reproduce the worked example.
"""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Union

from cryptography.exceptions import InvalidKey, InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import constant_time, hashes, hpke, padding, serialization
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import unpadded_b64
from .errors import CryptoError
from .limits import AES_BLOCK_SIZE, IV_SIZE, TAG_SIZE

RSA_KEY_BITS = 3072  # what a server generates
MIN_PEER_RSA_BITS = 2048  # what a client accepts
RSA_PUBLIC_EXPONENT = 65537
AES_KEY_SIZE = 32
MAC_KEY_SIZE = 32
STORAGE_KEY_SIZE = AES_KEY_SIZE + MAC_KEY_SIZE  # encrypt_aes/decrypt_aes take both keys at once
X25519_KEY_SIZE = 32
ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64

IvSource = Callable[[int], bytes]
PathLike = Union[str, "os.PathLike[str]"]

_OAEP = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class KeyFileError(Exception):
    """A key file is unusable (readable by others, not a key...). The message says what to do."""


# --- key files -----------------------------------------------------------------------------


def write_secret_file(path: PathLike, data: bytes, *, replace: bool = False) -> None:
    """Publish ``data`` at ``path`` with mode 0600 (its folder 0700 if new), atomically.

    The one way the project writes a secret or private file (server key, storage key,
    Django's secret key, the clients' pinned keys and settings). The bytes go to a
    private temporary file in the same folder first (``mkstemp``: 0600 from creation,
    so the mode is never widened after the fact), are flushed to disk, and the file is
    then put in place in one step, so a reader, another process or a crash never sees
    a half-written file.

    ``replace=False`` (keys): hard-linked into place, so an existing file is never
    overwritten (FileExistsError: another process won; read its file).
    ``replace=True`` (files a user edits through the program): renamed over it.
    """
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temporary, target)
        else:
            os.link(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, so that a crash after publishing cannot lose the
    new name (on POSIX the rename or link is durable only once its directory is synced).
    Where a folder cannot be opened (Windows), the file system's own ordering is all there is."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the data itself is synced
    finally:
        os.close(fd)


def read_or_create_secret_file(path: PathLike, make: Callable[[], bytes]) -> bytes:
    """The secret in ``path``, created first from ``make()`` if the file does not exist.

    Several server processes may start at once: exactly one file wins
    (:func:`write_secret_file` never overwrites) and every process reads that one.
    Raises :class:`KeyFileError` if the file is readable by other users.
    """
    target = Path(path)
    if not target.exists():
        with contextlib.suppress(FileExistsError):
            write_secret_file(target, make())
    return read_secret_file(target)


def read_secret_file(path: PathLike) -> bytes:
    """Read a secret file, refusing one that users other than its owner can read or write."""
    target = Path(path)
    mode = target.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{target} can be read or written by other users (mode {stat.S_IMODE(mode):o}); "
            f"run 'chmod 600 {target}' and start again"
        )
    return target.read_bytes()


def generate_private_key() -> rsa.RSAPrivateKey:
    """A new RSA-3072 server key with public exponent 65537."""
    return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=RSA_KEY_BITS)


def private_key_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the file's 0600 mode is its protection."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(path: PathLike) -> rsa.RSAPrivateKey:
    """Load the server's RSA key from ``path``, generating it (mode 0600) on first use.

    Raises :class:`KeyFileError` with advice when the file is readable by others
    or holds no RSA private key.
    """
    target = Path(path)
    # Several server processes starting at once all use the key of the first one written.
    data = read_or_create_secret_file(target, lambda: private_key_pem(generate_private_key()))
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{target} holds no unencrypted PEM private key; restore it from a backup, "
            "or move it away to have a new key generated (clients will then warn)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(f"{target} holds a key that is not RSA; the protocol needs RSA")
    exponent = key.public_key().public_numbers().e
    if key.key_size < MIN_PEER_RSA_BITS or exponent != RSA_PUBLIC_EXPONENT:
        # Every client would refuse it with a bare close 4000: say so at startup instead.
        raise KeyFileError(
            f"{target} holds a {key.key_size}-bit RSA key with exponent {exponent}; clients "
            f"accept only {MIN_PEER_RSA_BITS} bits or more with exponent {RSA_PUBLIC_EXPONENT}. "
            "Move it away to have a new key generated (clients will then warn)"
        )
    return key


def load_public_key(data: bytes | str | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    """Load an RSA public key from DER bytes, PEM bytes or text, or pass one through.

    Refuses (with :class:`CryptoError`) anything that is not an RSA key of at
    least 2048 bits with exponent 65537, the keys the protocol accepts.
    """
    if isinstance(data, rsa.RSAPublicKey):
        loaded: PublicKeyTypes = data
    else:
        raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
        try:
            if raw.lstrip().startswith(b"-----BEGIN"):
                loaded = serialization.load_pem_public_key(raw)
            else:
                loaded = serialization.load_der_public_key(raw)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CryptoError() from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise CryptoError()
    key = loaded
    numbers = key.public_numbers()
    if key.key_size < MIN_PEER_RSA_BITS or numbers.e != RSA_PUBLIC_EXPONENT:
        raise CryptoError()
    return key


def public_key_der(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo sent in ``hello`` and hashed into the fingerprint."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(key: bytes | rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """``SHA256:`` + unpadded base64 of SHA-256 over the DER key, as OpenSSH prints it."""
    der = key if isinstance(key, (bytes, bytearray)) else public_key_der(key)
    digest = sha256(der)
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


# --- RSA-OAEP ------------------------------------------------------------------------------


def encrypt_rsa(public_key: rsa.RSAPublicKey, secret: bytes) -> bytes:
    """RSA-OAEP with SHA-256 and MGF1-SHA-256, no label."""
    try:
        return public_key.encrypt(secret, _OAEP)
    except ValueError:
        raise CryptoError() from None


def decrypt_rsa(private_key: rsa.RSAPrivateKey, ciphertext: bytes) -> bytes:
    """Decrypt RSA-OAEP (SHA-256, MGF1-SHA-256) with the library's constant-time decoder."""
    try:
        return private_key.decrypt(ciphertext, _OAEP)
    except (ValueError, TypeError):
        raise CryptoError() from None


# --- X25519 and HKDF -----------------------------------------------------------------------


def generate_x25519() -> X25519PrivateKey:
    """A fresh ephemeral X25519 key, new for every connection."""
    return X25519PrivateKey.generate()


def x25519_private_from_bytes(raw: bytes) -> X25519PrivateKey:
    """An X25519 private key from its 32 raw bytes (known-answer tests, and the backup
    key of section 4.13, which is derived)."""
    return X25519PrivateKey.from_private_bytes(raw)


def x25519_public_bytes(private_key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of the public key sent as ``eph``."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def x25519_shared(private_key: X25519PrivateKey, peer_public: bytes) -> bytes:
    """X25519(private, peer). A wrong length or an all-zero result raises CryptoError.

    pyca/cryptography raises ``ValueError`` for the all-zero output of a
    low-order point; the explicit check below keeps that guarantee whatever
    the backend does.
    """
    if len(peer_public) != X25519_KEY_SIZE:
        raise CryptoError()
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        raise CryptoError() from None
    if constant_time.bytes_eq(shared, bytes(X25519_KEY_SIZE)):
        raise CryptoError()
    return shared


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869). A length over 255*32 raises CryptoError."""
    try:
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)
    except (ValueError, InvalidKey):
        raise CryptoError() from None


# --- AES-256-CBC + HMAC-SHA256 -------------------------------------------------------------


_SHA256 = hashes.SHA256()  # immutable: one instance serves every hash and HMAC


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-256 of ``data`` (32 bytes)."""
    digest = hashes.Hash(_SHA256)
    digest.update(data)
    return digest.finalize()


_SHA512 = hashes.SHA512()


def sha512(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-512 of ``data`` (64 bytes): the hash that safety numbers iterate (section 4)."""
    digest = hashes.Hash(_SHA512)
    digest.update(data)
    return digest.finalize()


class Sha256:
    """Incremental SHA-256 of a stream (a file being sent or received).

    :meth:`hexdigest` may be asked at any point and the stream go on, as with
    ``hashlib``: it finalizes a copy.
    """

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashes.Hash(_SHA256)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.copy().finalize().hex()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 tag of ``data`` (32 bytes)."""
    mac = crypto_hmac.HMAC(key, _SHA256)
    mac.update(data)
    return mac.finalize()


def verify_hmac_sha256(key: bytes, data: bytes, tag: bytes) -> bool:
    """True when ``tag`` is the HMAC-SHA256 of ``data``, compared in constant time."""
    mac = crypto_hmac.HMAC(key, _SHA256)
    mac.update(data)
    try:
        mac.verify(tag)  # constant time (OpenSSL's CRYPTO_memcmp)
    except InvalidSignature:
        return False
    return True


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-CBC with PKCS#7 padding (the key's length picks AES-128/192/256)."""
    try:
        padder = padding.PKCS7(AES_BLOCK_SIZE * 8).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        return encryptor.update(padded) + encryptor.finalize()
    except ValueError:
        raise CryptoError() from None


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Decrypt AES-CBC and remove PKCS#7 padding. Any failure is a bare CryptoError.

    Callers must have verified a MAC over ``iv || ciphertext`` first: CBC
    padding errors are a classic oracle when reported before authentication.
    """
    if not ciphertext or len(ciphertext) % AES_BLOCK_SIZE:
        raise CryptoError()
    try:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(AES_BLOCK_SIZE * 8).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CryptoError() from None


_IN_PLACE_FROM = 4096  # plaintext bytes from which CbcHmacKeys.seal writes into one buffer


class CbcHmacKeys:
    """AES-CBC + HMAC-SHA256 under one pair of keys, set up once for many messages.

    The record layer seals and opens every record of a direction under the same
    keys (PROTOCOL.md 2); this keeps what ``cryptography`` lets a caller keep
    between messages: the ``algorithms.AES`` object (the key schedule's checks)
    and an HMAC keyed once, of which each message gets a ``copy()`` (the
    documented way to reuse a keyed HMAC: the template is never updated or
    finalized). What must be new per message stays new: the IV (the caller's),
    the CBC context made with it, and the MAC's state. Measured per record in
    ``bench/NOTES.md`` ("The file relay"; ``python -m bench.record_reuse``): a
    200-byte record 2-25% cheaper, a 64 KiB chunk's open 13%, its seal the same.
    Byte for byte the same as :func:`aes_cbc_encrypt` and :func:`hmac_sha256`
    (``tests/chatproto/test_crypto_utils.py``).
    """

    __slots__ = ("_aes", "_mac")

    def __init__(self, enc_key: bytes, mac_key: bytes) -> None:
        try:
            self._aes = algorithms.AES(enc_key)
        except ValueError:
            raise CryptoError() from None
        self._mac = crypto_hmac.HMAC(mac_key, _SHA256)

    def seal(self, prefix: bytes, iv: bytes, plaintext: bytes | memoryview) -> bytes:
        """``prefix || iv || ct || tag``: ``ct`` is AES-CBC(iv) of the PKCS#7-padded
        ``plaintext``, ``tag`` the HMAC of everything before it (encrypt-then-MAC).

        A large plaintext (a file chunk) is encrypted straight into the record's
        buffer: each fresh 64 KiB copy costs more than the copying (the allocator
        hands back memory it has just returned to the system), and the plain
        concatenations made three of them. A small one is cheaper concatenated.
        ``plaintext`` may be a view (a relayed chunk, :meth:`decrypt`'s result).
        """
        pad = AES_BLOCK_SIZE - len(plaintext) % AES_BLOCK_SIZE
        try:
            encryptor = Cipher(self._aes, modes.CBC(iv)).encryptor()
        except ValueError:
            raise CryptoError() from None
        mac = self._mac.copy()
        if len(plaintext) < _IN_PLACE_FROM:
            body = prefix + iv + encryptor.update(b"".join((plaintext, bytes((pad,)) * pad)))
            mac.update(body)
            return body + mac.finalize()
        start = len(prefix) + IV_SIZE
        end = start + len(plaintext) + pad
        # update_into wants room for a block more than it writes; trimmed below.
        out = bytearray(end + AES_BLOCK_SIZE - 1 + TAG_SIZE)
        out[: len(prefix)] = prefix
        out[len(prefix) : start] = iv
        with memoryview(out) as view:
            written = encryptor.update_into(plaintext, view[start:])
            encryptor.update_into(bytes((pad,)) * pad, view[start + written :])
            mac.update(view[:end])
        out[end:] = mac.finalize()
        return bytes(out)

    def verify(self, record: bytes) -> bool:
        """True when the last 32 bytes of ``record`` are the HMAC of the rest (constant time)."""
        if len(record) < TAG_SIZE:
            return False
        mac = self._mac.copy()
        with memoryview(record) as view:
            mac.update(view[:-TAG_SIZE])
        try:
            mac.verify(record[-TAG_SIZE:])  # constant time (OpenSSL's CRYPTO_memcmp)
        except InvalidSignature:
            return False
        return True

    def decrypt(self, iv: bytes, ciphertext: bytes | memoryview) -> memoryview:
        """AES-CBC decryption and PKCS#7 removal; any failure is a bare CryptoError.

        As for :func:`aes_cbc_decrypt`, only after :meth:`verify` accepted the MAC over
        ``iv || ciphertext``: the padding is then the sender's, and its check needs no
        constant time (there is no oracle left to feed). The plaintext is a read-only
        view of the decrypted buffer without its padding: cutting the padding off a
        64 KiB chunk by slicing was a copy the relay does not need (``bench/NOTES.md``,
        "Issue 12 leftovers").
        """
        if not len(ciphertext) or len(ciphertext) % AES_BLOCK_SIZE:
            raise CryptoError()
        try:
            decryptor = Cipher(self._aes, modes.CBC(iv)).decryptor()
            padded = decryptor.update(ciphertext) + decryptor.finalize()
        except ValueError:
            raise CryptoError() from None
        pad = padded[-1]
        if not 1 <= pad <= AES_BLOCK_SIZE or padded[-pad:] != bytes((pad,)) * pad:
            raise CryptoError()
        return memoryview(padded)[:-pad]


def bytes_equal(first: bytes, second: bytes) -> bool:
    """``first == second`` in constant time (a check value that is not an HMAC's tag)."""
    return constant_time.bytes_eq(first, second)


# --- AES-256-GCM (end-to-end file chunks, section 4.12) -----------------------------------


class AesGcmKey:
    """AES-256-GCM under one key, its ``AESGCM`` object made once for many messages.

    A file's chunks are all sealed under the file's key (4.12). The caller owns the
    nonce: it must never repeat under one key. Every failure to open is a bare
    :class:`CryptoError`.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != AES_KEY_SIZE:
            raise CryptoError()
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        """The ciphertext followed by its 16-byte tag."""
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes | memoryview, aad: bytes) -> bytes:
        """The plaintext, or CryptoError (altered, another key, nonce or aad, too short)."""
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise CryptoError() from None


# --- HPKE (key backup blobs, section 4.13) -------------------------------------------------

_HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def hpke_seal(public_key: bytes, plaintext: bytes, info: bytes) -> bytes:
    """RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, to the
    32-byte X25519 ``public_key``: the encapsulated key (32 bytes), then the AEAD
    output. Randomised: the ephemeral key is fresh each time."""
    return _HPKE.encrypt(plaintext, X25519PublicKey.from_public_bytes(public_key), info=info)


def hpke_open(private_key: bytes, ciphertext: bytes, info: bytes) -> bytes:
    """The plaintext of :func:`hpke_seal`'s output; CryptoError for every failure."""
    try:
        private = X25519PrivateKey.from_private_bytes(private_key)
        return _HPKE.decrypt(ciphertext, private, info=info)
    except (InvalidTag, ValueError):
        raise CryptoError() from None


# --- Ed25519 (end-to-end signatures, section 4) -------------------------------------------


def verify_ed25519(public_b64: str, signature_b64: str, data: bytes) -> bool:
    """True when ``signature_b64`` is the Ed25519 signature of ``data`` by ``public_b64``.

    Both are unpadded base64 (as vodozemac prints them). A key or signature that is
    not strict unpadded base64 of the right length is simply not a valid signature:
    the answer is False, whatever was wrong, so that callers have one case to handle.
    """
    try:
        public = unpadded_b64.decode(public_b64)
        signature = unpadded_b64.decode(signature_b64)
    except ValueError:
        return False
    if len(public) != ED25519_KEY_SIZE or len(signature) != ED25519_SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, bytes(data))
    except (InvalidSignature, ValueError):
        return False
    return True


def ed25519_public(private_key: bytes) -> str:
    """The public key (unpadded base64) of a 32-byte Ed25519 private key (RFC 8032 seed).

    A user key is such a seed: vodozemac signs with a device's Account, the clients
    sign with the user key through here.
    """
    return unpadded_b64.encode(_ed25519_private(private_key).public_key().public_bytes_raw())


def ed25519_sign(private_key: bytes, data: bytes) -> str:
    """The Ed25519 signature (unpadded base64) of ``data`` by a 32-byte private key."""
    return unpadded_b64.encode(_ed25519_private(private_key).sign(bytes(data)))


def _ed25519_private(private_key: bytes) -> Ed25519PrivateKey:
    if len(private_key) != ED25519_KEY_SIZE:
        raise ValueError(f"an Ed25519 private key is {ED25519_KEY_SIZE} bytes")
    return Ed25519PrivateKey.from_private_bytes(bytes(private_key))


def encrypt_aes(key: bytes, plaintext: bytes, *, iv: bytes | None = None) -> str:
    """Encrypt-then-MAC ``plaintext`` into a base64 token ``iv || ct || tag``.

    ``key`` is 64 bytes: 32 for AES-256-CBC, then 32 for HMAC-SHA256 (as Fernet
    splits its key). ``iv`` is for known-answer tests only; by default it is 16
    fresh random bytes.
    """
    enc_key, mac_key = _split_storage_key(key)
    iv = os.urandom(IV_SIZE) if iv is None else iv
    body = iv + aes_cbc_encrypt(enc_key, iv, plaintext)
    return base64.b64encode(body + hmac_sha256(mac_key, body)).decode("ascii")


def decrypt_aes(key: bytes, token: str | bytes) -> bytes:
    """Open a token of :func:`encrypt_aes`: the tag is checked in constant time first.

    Raises :class:`CryptoError` for every failure: bad base64, short token, bad
    tag, bad padding, all alike.
    """
    enc_key, mac_key = _split_storage_key(key)
    try:
        raw = base64.b64decode(token, validate=True)
    except (ValueError, TypeError):
        raise CryptoError() from None
    if len(raw) < IV_SIZE + AES_BLOCK_SIZE + TAG_SIZE:
        raise CryptoError()
    body, tag = raw[:-TAG_SIZE], raw[-TAG_SIZE:]
    if not verify_hmac_sha256(mac_key, body, tag):
        raise CryptoError()
    return aes_cbc_decrypt(enc_key, body[:IV_SIZE], body[IV_SIZE:])


def _split_storage_key(key: bytes) -> tuple[bytes, bytes]:
    if len(key) != STORAGE_KEY_SIZE:
        raise ValueError(f"the key must be {STORAGE_KEY_SIZE} bytes (AES-256 key, then HMAC key)")
    return key[:AES_KEY_SIZE], key[AES_KEY_SIZE:]


__all__ = [
    "AesGcmKey",
    "CbcHmacKeys",
    "KeyFileError",
    "aes_cbc_decrypt",
    "aes_cbc_encrypt",
    "bytes_equal",
    "decrypt_aes",
    "decrypt_rsa",
    "ed25519_public",
    "ed25519_sign",
    "encrypt_aes",
    "encrypt_rsa",
    "fingerprint",
    "generate_private_key",
    "generate_x25519",
    "hkdf_sha256",
    "hmac_sha256",
    "hpke_open",
    "hpke_seal",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_der",
    "read_or_create_secret_file",
    "read_secret_file",
    "sha512",
    "verify_ed25519",
    "verify_hmac_sha256",
    "write_secret_file",
    "x25519_private_from_bytes",
    "x25519_public_bytes",
    "x25519_shared",
]
