"""Wycheproof vectors through chatproto's own crypto functions, every vector of six files.

Each check function handles every ``result`` a file uses and fails on any other,
so no vector can be skipped; ``test_every_vector_of_<file>_runs`` runs the same
checks over the whole file and compares the count with ``numberOfTests``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chatproto import crypto_utils
from chatproto.errors import CryptoError
from tests.vectors import WycheproofCase, wycheproof

AES_CBC = "aes_cbc_pkcs5_test.json"
HMAC = "hmac_sha256_test.json"
OAEP_2048 = "rsa_oaep_2048_sha256_mgf1sha256_test.json"
OAEP_3072 = "rsa_oaep_3072_sha256_mgf1sha256_test.json"
HKDF = "hkdf_sha256_test.json"
X25519 = "x25519_test.json"


def cases(name: str, prefix: str = "") -> list:
    return [pytest.param(case, id=f"{prefix}tcId{case.tc_id}") for case in wycheproof(name).cases]


def unexpected(case: WycheproofCase) -> None:
    pytest.fail(f"tcId {case.tc_id}: result {case.result!r} has no check")


# --- AES-CBC-PKCS5 -----------------------------------------------------------------------


def check_aes_cbc(case: WycheproofCase) -> None:
    key, iv, msg, ct = case.hex("key"), case.hex("iv"), case.hex("msg"), case.hex("ct")
    if case.result == "valid":
        assert crypto_utils.aes_cbc_encrypt(key, iv, msg) == ct
        assert crypto_utils.aes_cbc_decrypt(key, iv, ct) == msg
    elif case.result == "invalid":
        with pytest.raises(CryptoError):
            crypto_utils.aes_cbc_decrypt(key, iv, ct)
    else:
        unexpected(case)


@pytest.mark.parametrize("case", cases(AES_CBC))
def test_aes_cbc_pkcs5(case):
    check_aes_cbc(case)


# --- HMAC-SHA256 -------------------------------------------------------------------------


def check_hmac(case: WycheproofCase) -> None:
    key, msg, tag = case.hex("key"), case.hex("msg"), case.hex("tag")
    tag_bytes = case.group["tagSize"] // 8
    computed = crypto_utils.hmac_sha256(key, msg)
    assert len(computed) == 32
    if case.result == "valid":
        assert hmac.compare_digest(computed[:tag_bytes], tag)
    elif case.result == "invalid":
        assert not hmac.compare_digest(computed[:tag_bytes], tag)
    else:
        unexpected(case)
    # verify_hmac_sha256 takes full tags only: a truncated tag never verifies.
    assert crypto_utils.verify_hmac_sha256(key, msg, tag) is (
        case.result == "valid" and tag_bytes == 32
    )


@pytest.mark.parametrize("case", cases(HMAC))
def test_hmac_sha256(case):
    check_hmac(case)


# --- RSA-OAEP (SHA-256, MGF1-SHA-256) -----------------------------------------------------

_oaep_keys: dict[str, rsa.RSAPrivateKey] = {}


def oaep_private_key(case: WycheproofCase, tmp_dir) -> rsa.RSAPrivateKey:
    """The group's key, loaded by chatproto.load_private_key from its PEM in a 0600 file.

    The PKCS#8 DER form of the same group must give the same key.
    """
    pem = case.group["privateKeyPem"]
    if pem not in _oaep_keys:
        path = tmp_dir / f"oaep-{len(_oaep_keys)}.pem"
        crypto_utils.write_secret_file(path, pem.encode("ascii"))
        key = crypto_utils.load_private_key(path)
        der_key = serialization.load_der_private_key(
            bytes.fromhex(case.group["privateKeyPkcs8"]), password=None
        )
        assert key.private_numbers() == der_key.private_numbers()
        assert key.key_size == case.group["keySize"]
        _oaep_keys[pem] = key
    return _oaep_keys[pem]


def check_oaep(case: WycheproofCase, key: rsa.RSAPrivateKey) -> None:
    assert (case.group["sha"], case.group["mgf"], case.group["mgfSha"]) == (
        "SHA-256",
        "MGF1",
        "SHA-256",
    )
    ct, msg, label = case.hex("ct"), case.hex("msg"), case.hex("label")
    if case.result == "valid" and not label:
        assert crypto_utils.decrypt_rsa(key, ct) == msg
    elif case.result == "valid":
        # decrypt_rsa has no label (the protocol uses none), so these vectors cannot pass
        # through it: check the same OAEP parameters with the label directly, and that
        # decrypt_rsa refuses the labelled ciphertext.
        labelled = padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
        )
        assert key.decrypt(ct, labelled) == msg
        with pytest.raises(CryptoError):
            crypto_utils.decrypt_rsa(key, ct)
    elif case.result == "invalid":
        assert not label, "an invalid vector with a label would not test decrypt_rsa"
        with pytest.raises(CryptoError):
            crypto_utils.decrypt_rsa(key, ct)
    else:
        unexpected(case)


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("oaep-keys")


@pytest.mark.parametrize("case", cases(OAEP_2048, "2048-") + cases(OAEP_3072, "3072-"))
def test_rsa_oaep_sha256(case, key_dir):
    check_oaep(case, oaep_private_key(case, key_dir))


def test_oaep_failures_all_raise_the_same_opaque_error(key_dir):
    """Manger's attack needs distinguishable failures: every one must read the same."""
    messages = set()
    for name in (OAEP_2048, OAEP_3072):
        for case in wycheproof(name).cases:
            if case.result == "invalid":
                with pytest.raises(CryptoError) as info:
                    crypto_utils.decrypt_rsa(oaep_private_key(case, key_dir), case.hex("ct"))
                messages.add((type(info.value), str(info.value), info.value.__cause__))
    assert messages == {(CryptoError, "cryptographic check failed", None)}


# --- HKDF-SHA256 -------------------------------------------------------------------------


def check_hkdf(case: WycheproofCase) -> None:
    ikm, salt, info, size = case.hex("ikm"), case.hex("salt"), case.hex("info"), case.test["size"]
    if case.result == "valid":
        assert crypto_utils.hkdf_sha256(ikm, salt, info, size) == case.hex("okm")
    elif case.result == "invalid":
        assert "SizeTooLarge" in case.test["flags"]
        with pytest.raises(CryptoError):
            crypto_utils.hkdf_sha256(ikm, salt, info, size)
    else:
        unexpected(case)


@pytest.mark.parametrize("case", cases(HKDF))
def test_hkdf_sha256(case):
    check_hkdf(case)


# --- X25519 ------------------------------------------------------------------------------

ZERO = bytes(32)


def check_x25519(case: WycheproofCase) -> None:
    assert case.group["curve"] == "curve25519"
    private = crypto_utils.x25519_private_from_bytes(case.hex("private"))
    public, shared = case.hex("public"), case.hex("shared")
    if case.result == "valid":
        assert shared != ZERO
        assert crypto_utils.x25519_shared(private, public) == shared
    elif case.result == "acceptable" and shared == ZERO:
        # A low-order point: the protocol aborts the handshake.
        with pytest.raises(CryptoError):
            crypto_utils.x25519_shared(private, public)
    elif case.result == "acceptable":
        # Twist points, non-canonical encodings...: computed exactly as RFC 7748 says.
        assert crypto_utils.x25519_shared(private, public) == shared
    else:
        unexpected(case)


@pytest.mark.parametrize("case", cases(X25519))
def test_x25519(case):
    check_x25519(case)


def test_x25519_zero_results_are_exactly_the_flagged_ones():
    zero = {c.tc_id for c in wycheproof(X25519).cases if c.hex("shared") == ZERO}
    flagged = {c.tc_id for c in wycheproof(X25519).cases if "ZeroSharedSecret" in c.test["flags"]}
    assert zero == flagged and len(zero) == 31


# --- every vector runs ------------------------------------------------------------------

CHECKS: dict[str, Callable[[WycheproofCase], None]] = {
    AES_CBC: check_aes_cbc,
    HMAC: check_hmac,
    HKDF: check_hkdf,
    X25519: check_x25519,
}


@pytest.mark.parametrize("name", [*CHECKS, OAEP_2048, OAEP_3072])
def test_every_vector_of_the_file_runs(name, key_dir):
    file = wycheproof(name)
    ran = 0
    for case in file.cases:
        if name in CHECKS:
            CHECKS[name](case)
        else:
            check_oaep(case, oaep_private_key(case, key_dir))
        ran += 1
    assert ran == file.number_of_tests > 0


def test_parametrized_ids_cover_every_vector():
    for name in (AES_CBC, HMAC, OAEP_2048, OAEP_3072, HKDF, X25519):
        ids = [param.id for param in cases(name)]
        assert len(ids) == len(set(ids)) == wycheproof(name).number_of_tests


def test_aes_file_covers_every_key_size():
    sizes = {c.group["keySize"] for c in wycheproof(AES_CBC).cases}
    assert sizes == {128, 192, 256}
