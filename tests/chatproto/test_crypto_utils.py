"""crypto_utils: key files, storage encryption, fingerprints and the primitive wrappers."""

from __future__ import annotations

import base64
import hashlib
import hmac as std_hmac
import os
import stat

import pytest
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from chatproto import crypto_utils
from chatproto.crypto_utils import KeyFileError
from chatproto.errors import CryptoError
from tests.chatproto.helpers import server_key

STORAGE_KEY = bytes(range(64))


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- the server key file ------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One generated server key (RSA-3072 generation is slow: do it once)."""
    path = tmp_path_factory.mktemp("keys") / "new-folder" / "server_key.pem"
    key = crypto_utils.load_private_key(path)
    return path, key


def test_missing_key_file_is_generated_as_rsa_3072(generated):
    _, key = generated
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    assert key.public_key().public_numbers().e == 65537


def test_generated_key_file_is_0600_in_a_new_0700_folder(generated):
    path, _ = generated
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700


def test_generated_key_loads_back_the_same(generated):
    path, key = generated
    assert crypto_utils.load_private_key(path).private_numbers() == key.private_numbers()
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700])
def test_key_file_readable_by_others_is_refused_with_the_fix(tmp_path, mode):
    path = tmp_path / "server_key.pem"
    path.write_bytes(crypto_utils.private_key_pem(server_key()))
    path.chmod(mode)
    if mode == 0o700:  # owner-only (even executable) is not loose
        assert crypto_utils.load_private_key(path).key_size == 3072
        return
    with pytest.raises(KeyFileError) as info:
        crypto_utils.load_private_key(path)
    message = str(info.value)
    assert str(path) in message
    assert f"chmod 600 {path}" in message
    assert "PRIVATE KEY" not in message


def test_key_file_that_holds_no_key_is_refused_with_advice(tmp_path):
    path = tmp_path / "server_key.pem"
    crypto_utils.write_secret_file(path, b"not a key")
    with pytest.raises(KeyFileError) as info:
        crypto_utils.load_private_key(path)
    assert str(path) in str(info.value) and "backup" in str(info.value)


def test_key_file_with_a_non_rsa_key_is_refused(tmp_path):
    path = tmp_path / "server_key.pem"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    crypto_utils.write_secret_file(path, pem)
    with pytest.raises(KeyFileError, match="not RSA"):
        crypto_utils.load_private_key(path)


@pytest.mark.parametrize(("bits", "exponent"), [(1024, 65537), (2048, 3)])
def test_key_file_with_a_key_clients_refuse_is_refused_at_load(tmp_path, bits, exponent):
    path = tmp_path / "server_key.pem"
    weak = rsa.generate_private_key(public_exponent=exponent, key_size=bits)
    crypto_utils.write_secret_file(path, crypto_utils.private_key_pem(weak))
    with pytest.raises(KeyFileError) as info:
        crypto_utils.load_private_key(path)
    assert str(path) in str(info.value) and f"{bits}-bit" in str(info.value)


def test_key_file_with_a_2048_bit_key_is_accepted(tmp_path):
    path = tmp_path / "server_key.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    crypto_utils.write_secret_file(path, crypto_utils.private_key_pem(key))
    assert crypto_utils.load_private_key(path).private_numbers() == key.private_numbers()


def test_write_secret_file_never_overwrites(tmp_path):
    path = tmp_path / "secret"
    crypto_utils.write_secret_file(path, b"first")
    with pytest.raises(FileExistsError):
        crypto_utils.write_secret_file(path, b"second")
    assert crypto_utils.read_secret_file(path) == b"first"
    assert mode_of(path) == 0o600


def test_read_secret_file_refuses_a_group_writable_file(tmp_path):
    path = tmp_path / "secret"
    crypto_utils.write_secret_file(path, b"x")
    path.chmod(0o620)
    with pytest.raises(KeyFileError, match="chmod 600"):
        crypto_utils.read_secret_file(path)


# --- encrypt_aes / decrypt_aes (encryption at rest) ------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2000))
def test_storage_encryption_round_trips(plaintext):
    token = crypto_utils.encrypt_aes(STORAGE_KEY, plaintext)
    assert isinstance(token, str)
    assert crypto_utils.decrypt_aes(STORAGE_KEY, token) == plaintext
    assert crypto_utils.decrypt_aes(STORAGE_KEY, token.encode("ascii")) == plaintext


def test_storage_token_is_iv_ciphertext_and_tag_as_documented():
    """An independent computation with the library's primitives gives the same token."""
    iv = bytes(range(100, 116))
    plaintext = b"attack at dawn"
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(STORAGE_KEY[:32]), modes.CBC(iv)).encryptor()
    body = iv + encryptor.update(padded) + encryptor.finalize()
    tag = std_hmac.new(STORAGE_KEY[32:], body, hashlib.sha256).digest()
    expected = base64.b64encode(body + tag).decode("ascii")
    assert crypto_utils.encrypt_aes(STORAGE_KEY, plaintext, iv=iv) == expected


def test_storage_encryption_uses_a_fresh_iv():
    tokens = {crypto_utils.encrypt_aes(STORAGE_KEY, b"same") for _ in range(20)}
    assert len(tokens) == 20


def storage_failure(key: bytes, token) -> str:
    with pytest.raises(CryptoError) as info:
        crypto_utils.decrypt_aes(key, token)
    assert info.value.__cause__ is None
    return str(info.value)


def test_every_tampered_byte_of_a_token_is_refused_alike():
    raw = base64.b64decode(crypto_utils.encrypt_aes(STORAGE_KEY, b"sixteen byte msg" * 2))
    messages = set()
    for position in range(len(raw)):
        for bit in (0x01, 0x80):
            tampered = bytearray(raw)
            tampered[position] ^= bit
            messages.add(storage_failure(STORAGE_KEY, base64.b64encode(bytes(tampered))))
    assert messages == {"cryptographic check failed"}


def test_wrong_key_and_garbage_tokens_are_refused_alike():
    token = crypto_utils.encrypt_aes(STORAGE_KEY, b"secret")
    raw = base64.b64decode(token)
    other_key = bytes(64)
    swapped_halves = STORAGE_KEY[32:] + STORAGE_KEY[:32]
    garbage = [
        "",
        "!!!!",
        "not base64 at all",
        "é" * 8,
        token[:-4],  # truncated
        token + "AAAA",  # extended
        token.replace("+", "-").replace("/", "_") if {"+", "/"} & set(token) else token + "-",
        base64.b64encode(raw[:63]).decode(),  # shorter than iv + block + tag
        base64.b64encode(bytes(64)).decode(),
        base64.b64encode(raw[:-32] + bytes(32)).decode(),
        " " + token,
    ]
    messages = {storage_failure(key, token) for key in (other_key, swapped_halves)}
    messages |= {storage_failure(STORAGE_KEY, bad) for bad in garbage}
    assert messages == {"cryptographic check failed"}


def test_valid_tag_over_bad_padding_is_refused_alike():
    # A token whose tag is right but whose plaintext padding is wrong (only the key holder
    # could make one): still the same error.
    iv = bytes(16)
    block = crypto_utils.aes_cbc_encrypt(STORAGE_KEY[:32], iv, bytes(16))[:16]
    body = iv + block
    token = base64.b64encode(body + crypto_utils.hmac_sha256(STORAGE_KEY[32:], body))
    assert storage_failure(STORAGE_KEY, token) == "cryptographic check failed"


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_storage_key_must_be_64_bytes(size):
    with pytest.raises(ValueError, match="64 bytes"):
        crypto_utils.encrypt_aes(bytes(size), b"x")
    with pytest.raises(ValueError, match="64 bytes"):
        crypto_utils.decrypt_aes(bytes(size), "AAAA")


# --- fingerprints and public keys --------------------------------------------------------------


def test_fingerprint_is_openssh_style_without_padding():
    der = crypto_utils.public_key_der(server_key())
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    for form in (der, bytearray(der), server_key(), server_key().public_key()):
        fingerprint = crypto_utils.fingerprint(form)
        assert fingerprint == expected
    assert len(fingerprint) == len("SHA256:") + 43 and "=" not in fingerprint


def test_different_keys_have_different_fingerprints():
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert crypto_utils.fingerprint(other) != crypto_utils.fingerprint(server_key())


def test_load_public_key_accepts_der_pem_and_key_objects():
    public = server_key().public_key()
    der = crypto_utils.public_key_der(public)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for form in (der, pem, pem.decode("ascii"), public):
        assert crypto_utils.load_public_key(form).public_numbers() == public.public_numbers()


@pytest.mark.parametrize(
    "make",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),  # noqa: S505
        lambda: rsa.generate_private_key(public_exponent=3, key_size=2048).public_key(),
        lambda: crypto_utils.public_key_der(
            rsa.generate_private_key(public_exponent=65537, key_size=2047)  # noqa: S505
        ),
        lambda: (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
        lambda: b"garbage",
        lambda: "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n",
    ],
    ids=["1024 bits", "exponent 3", "2047 bits DER", "EC key", "garbage", "garbage PEM"],
)
def test_load_public_key_refuses_keys_the_protocol_does_not_accept(make):
    with pytest.raises(CryptoError):
        crypto_utils.load_public_key(make())


# --- RSA-OAEP, X25519, HKDF, AES-CBC, HMAC wrappers ------------------------------------------


def test_rsa_oaep_round_trip_and_randomization():
    public = server_key().public_key()
    first = crypto_utils.encrypt_rsa(public, b"s" * 32)
    assert first != crypto_utils.encrypt_rsa(public, b"s" * 32)
    assert crypto_utils.decrypt_rsa(server_key(), first) == b"s" * 32


@pytest.mark.parametrize(
    "ciphertext", [b"", bytes(384), b"\xff" * 384, bytes(383), bytes(385)], ids=len
)
def test_rsa_decryption_failures_are_crypto_errors(ciphertext):
    with pytest.raises(CryptoError):
        crypto_utils.decrypt_rsa(server_key(), ciphertext)


def test_rsa_encrypting_too_much_is_a_crypto_error():
    with pytest.raises(CryptoError):
        crypto_utils.encrypt_rsa(server_key().public_key(), bytes(400))


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_x25519_public_key_of_wrong_length_is_a_crypto_error(size):
    with pytest.raises(CryptoError):
        crypto_utils.x25519_shared(crypto_utils.generate_x25519(), bytes(size))


def test_x25519_agreement():
    a, b = crypto_utils.generate_x25519(), crypto_utils.generate_x25519()
    shared = crypto_utils.x25519_shared(a, crypto_utils.x25519_public_bytes(b))
    assert shared == crypto_utils.x25519_shared(b, crypto_utils.x25519_public_bytes(a))
    assert len(shared) == 32 and shared != bytes(32)


def test_hkdf_output_size_limit():
    assert len(crypto_utils.hkdf_sha256(b"k", b"s", b"i", 255 * 32)) == 8160
    with pytest.raises(CryptoError):
        crypto_utils.hkdf_sha256(b"k", b"s", b"i", 255 * 32 + 1)


@pytest.mark.parametrize(
    ("iv", "ciphertext"),
    [(bytes(16), b""), (bytes(16), bytes(15)), (bytes(16), bytes(17)), (bytes(15), bytes(16))],
    ids=["empty", "15 bytes", "17 bytes", "short iv"],
)
def test_aes_cbc_decrypt_refuses_malformed_input(iv, ciphertext):
    with pytest.raises(CryptoError):
        crypto_utils.aes_cbc_decrypt(bytes(32), iv, ciphertext)


@pytest.mark.parametrize("key_size", [0, 15, 33])
def test_aes_cbc_encrypt_refuses_a_bad_key(key_size):
    with pytest.raises(CryptoError):
        crypto_utils.aes_cbc_encrypt(bytes(key_size), bytes(16), b"x")


def test_verify_hmac_rejects_wrong_and_truncated_tags():
    tag = crypto_utils.hmac_sha256(b"key", b"data")
    assert crypto_utils.verify_hmac_sha256(b"key", b"data", tag)
    assert not crypto_utils.verify_hmac_sha256(b"key", b"data!", tag)
    assert not crypto_utils.verify_hmac_sha256(b"key", b"data", tag[:16])
    assert not crypto_utils.verify_hmac_sha256(b"key", b"data", b"")


# --- keys set up once per direction (the record layer) -------------------------------------

ENC_KEY, MAC_KEY = bytes(range(32)), bytes(range(32, 64))


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 200, 4095, 4096, 4097, 65536 + 26])
def test_keys_set_up_once_seal_exactly_what_the_one_call_functions_make(size):
    """Both of seal's paths (small: concatenated; large: one buffer) give the same bytes."""
    keys = crypto_utils.CbcHmacKeys(ENC_KEY, MAC_KEY)
    prefix, iv, plaintext = b"\x01" + bytes(8), os.urandom(16), os.urandom(size)
    body = prefix + iv + crypto_utils.aes_cbc_encrypt(ENC_KEY, iv, plaintext)
    assert keys.seal(prefix, iv, plaintext) == body + crypto_utils.hmac_sha256(MAC_KEY, body)


def test_the_keyed_hmac_is_reused_not_consumed():
    """Every message gets a copy of the keyed HMAC: the same input gives the same tag again,
    and a different message does not carry the previous one's state into its tag."""
    keys = crypto_utils.CbcHmacKeys(ENC_KEY, MAC_KEY)
    iv = bytes(16)
    first = keys.seal(b"p", iv, b"one")
    keys.seal(b"p", iv, b"something else entirely")
    assert keys.seal(b"p", iv, b"one") == first
    assert keys.verify(first) and keys.verify(first)


@pytest.mark.parametrize("size", [0, 200, 65536 + 26])
def test_keys_set_up_once_open_what_they_sealed_and_refuse_any_change(size):
    keys = crypto_utils.CbcHmacKeys(ENC_KEY, MAC_KEY)
    plaintext = os.urandom(size)
    record = keys.seal(b"h", b"\x07" * 16, plaintext)
    assert keys.verify(record)
    assert keys.decrypt(record[1:17], memoryview(record)[17:-32]) == plaintext
    for where in (0, 5, len(record) // 2, len(record) - 1):
        tampered = bytearray(record)
        tampered[where] ^= 1
        assert not keys.verify(bytes(tampered))
    assert not keys.verify(record[:-1])
    assert not keys.verify(record[:10])
    assert not crypto_utils.CbcHmacKeys(ENC_KEY, bytes(32)).verify(record)


@pytest.mark.parametrize(
    "last_block",
    [bytes(16), bytes(15) + b"\x11", bytes(14) + b"\x02\x03", bytes(15) + b"\x02"],
)
def test_keys_set_up_once_refuse_bad_padding_with_the_opaque_error(last_block):
    keys = crypto_utils.CbcHmacKeys(ENC_KEY, MAC_KEY)
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(ENC_KEY), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(bytes(16) + last_block) + encryptor.finalize()
    with pytest.raises(CryptoError):
        keys.decrypt(iv, ciphertext)


@pytest.mark.parametrize("ciphertext", [b"", bytes(15), bytes(17)])
def test_keys_set_up_once_refuse_ciphertext_not_in_whole_blocks(ciphertext):
    with pytest.raises(CryptoError):
        crypto_utils.CbcHmacKeys(ENC_KEY, MAC_KEY).decrypt(bytes(16), ciphertext)


def test_keys_set_up_once_refuse_a_bad_key_with_the_opaque_error():
    with pytest.raises(CryptoError):
        crypto_utils.CbcHmacKeys(bytes(20), MAC_KEY)


# --- SHA-512 and Ed25519 (end-to-end encryption, protocol.md section 4) -------------------

# RFC 8032 section 7.1, test 1: the signature of the empty message.
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_EMPTY_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def unpadded(hex_text: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_text)).decode("ascii").rstrip("=")


def test_sha512_is_the_standard_hash():
    assert crypto_utils.sha512(b"abc") == hashlib.sha512(b"abc").digest()


def test_ed25519_accepts_rfc8032s_signature():
    assert crypto_utils.verify_ed25519(
        unpadded(RFC8032_PUBLIC), unpadded(RFC8032_EMPTY_SIGNATURE), b""
    )


def test_ed25519_refuses_another_message_or_a_flipped_bit():
    public = unpadded(RFC8032_PUBLIC)
    flipped = bytearray.fromhex(RFC8032_EMPTY_SIGNATURE)
    flipped[0] ^= 1
    assert not crypto_utils.verify_ed25519(public, unpadded(RFC8032_EMPTY_SIGNATURE), b"x")
    assert not crypto_utils.verify_ed25519(public, unpadded(flipped.hex()), b"")


@pytest.mark.parametrize(
    "public, signature",
    [
        (unpadded(RFC8032_PUBLIC) + "=", unpadded(RFC8032_EMPTY_SIGNATURE)),  # padded key
        (unpadded(RFC8032_PUBLIC), unpadded(RFC8032_EMPTY_SIGNATURE) + "=="),  # padded sig
        (unpadded(RFC8032_PUBLIC)[:-4], unpadded(RFC8032_EMPTY_SIGNATURE)),  # short key
        (unpadded(RFC8032_PUBLIC), unpadded(RFC8032_EMPTY_SIGNATURE)[:-4]),  # short sig
        ("not base64!", unpadded(RFC8032_EMPTY_SIGNATURE)),
        (unpadded(RFC8032_PUBLIC), ""),
    ],
)
def test_ed25519_answers_false_for_a_misspelled_key_or_signature(public, signature):
    assert crypto_utils.verify_ed25519(public, signature, b"") is False


def test_ed25519_sign_makes_rfc8032s_signature():
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert crypto_utils.ed25519_public(secret) == unpadded(RFC8032_PUBLIC)
    assert crypto_utils.ed25519_sign(secret, b"") == unpadded(RFC8032_EMPTY_SIGNATURE)


def test_ed25519_private_keys_are_32_bytes():
    with pytest.raises(ValueError):
        crypto_utils.ed25519_sign(bytes(31), b"")


# --- AES-256-GCM and HPKE (end-to-end files and key backup, sections 4.12 and 4.13) --------


def test_bytes_equal():
    assert crypto_utils.bytes_equal(b"abc", b"abc")
    assert not crypto_utils.bytes_equal(b"abc", b"abd")
    assert not crypto_utils.bytes_equal(b"abc", b"ab")


GCM_KEY = bytes(range(32))
GCM_NONCE = bytes(12)


def test_aes_gcm_seals_what_aesgcm_makes_and_opens_it():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = crypto_utils.AesGcmKey(GCM_KEY)
    sealed = key.seal(GCM_NONCE, memoryview(b"piece"), b"aad")
    assert sealed == AESGCM(GCM_KEY).encrypt(GCM_NONCE, b"piece", b"aad")
    assert len(sealed) == len(b"piece") + 16
    assert key.open(GCM_NONCE, memoryview(sealed), b"aad") == b"piece"


@pytest.mark.parametrize(
    ("nonce", "change", "aad"),
    [
        (GCM_NONCE, lambda c: c, b"other aad"),
        (bytes(11) + b"\x01", lambda c: c, b"aad"),
        (GCM_NONCE, lambda c: c[:-1], b"aad"),
        (GCM_NONCE, lambda c: bytes([c[0] ^ 1]) + c[1:], b"aad"),
        (GCM_NONCE, lambda c: b"", b"aad"),
        (bytes(3), lambda c: c, b"aad"),
    ],
    ids=["aad", "nonce", "truncated", "bit", "empty", "short-nonce"],
)
def test_aes_gcm_refuses_any_change_with_the_opaque_error(nonce, change, aad):
    key = crypto_utils.AesGcmKey(GCM_KEY)
    sealed = key.seal(GCM_NONCE, b"piece", b"aad")
    with pytest.raises(CryptoError):
        key.open(nonce, change(sealed), aad)


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33])
def test_aes_gcm_keys_are_32_bytes(size):
    with pytest.raises(CryptoError):
        crypto_utils.AesGcmKey(bytes(size))


HPKE_PRIVATE = bytes(range(32, 64))
HPKE_PUBLIC = crypto_utils.x25519_public_bytes(crypto_utils.x25519_private_from_bytes(HPKE_PRIVATE))


def test_hpke_round_trip_is_randomised_and_32_plus_16_bytes_longer():
    first = crypto_utils.hpke_seal(HPKE_PUBLIC, b"secret", b"info")
    second = crypto_utils.hpke_seal(HPKE_PUBLIC, b"secret", b"info")
    assert first != second
    assert len(first) == 32 + len(b"secret") + 16
    assert crypto_utils.hpke_open(HPKE_PRIVATE, first, b"info") == b"secret"
    assert crypto_utils.hpke_open(HPKE_PRIVATE, second, b"info") == b"secret"


@pytest.mark.parametrize(
    ("private", "change", "info"),
    [
        (HPKE_PRIVATE, lambda c: c, b"other info"),
        (bytes(range(32)), lambda c: c, b"info"),
        (HPKE_PRIVATE, lambda c: c[:-1], b"info"),
        (HPKE_PRIVATE, lambda c: bytes([c[0] ^ 1]) + c[1:], b"info"),
        (HPKE_PRIVATE, lambda c: c[:40], b"info"),
        (HPKE_PRIVATE, lambda c: bytes(32) + c[32:], b"info"),
        (HPKE_PRIVATE, lambda c: b"", b"info"),
        (bytes(31), lambda c: c, b"info"),
    ],
    ids=["info", "other-key", "truncated", "enc-bit", "short", "low-order-enc", "empty", "key-31"],
)
def test_hpke_open_refuses_with_the_opaque_error(private, change, info):
    sealed = crypto_utils.hpke_seal(HPKE_PUBLIC, b"secret", b"info")
    with pytest.raises(CryptoError):
        crypto_utils.hpke_open(private, change(sealed), info)
