"""Raw costs of the primitives, measured in this process on one core: the baselines of the
handshake and file scenarios (what no server built on them can beat)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from chatproto import crypto_utils
from chatproto.framing import encode_chunk
from chatproto.handshake import ClientHandshake, ServerHandshake, derive_session_keys
from chatproto.records import RecordOpener, RecordSealer


def _rate(
    step: Callable[[], tuple[float, float] | None], seconds: float, max_iterations: int
) -> dict[str, float]:
    """Call ``step`` until ``seconds`` of measured time. A step may time its own part and
    return ``(wall, cpu)``; otherwise the whole call is timed.

    ``per_s`` is by wall time; ``cpu_per_s`` by this process's CPU time, which a busy
    machine disturbs less: it is the rate "on one core" that the ratios use.
    """
    wall = cpu = 0.0
    count = 0
    while wall < seconds and count < max_iterations:
        began, cpu_began = time.perf_counter(), time.process_time()
        own = step()
        if own is None:
            own = (time.perf_counter() - began, time.process_time() - cpu_began)
        wall += own[0]
        cpu += own[1]
        count += 1
    return {
        "per_s": count / wall if wall else 0.0,
        "us_each": wall / count * 1e6 if count else 0.0,
        "cpu_per_s": count / cpu if cpu else 0.0,
        "cpu_us_each": cpu / count * 1e6 if count else 0.0,
        "count": count,
    }


def handshake_costs(key_file: str, seconds: float) -> dict[str, Any]:
    """RSA-3072 OAEP decrypt, X25519, HKDF, and the whole server side of a handshake."""
    private_key = crypto_utils.load_private_key(key_file)
    public_key = private_key.public_key()
    secret = os.urandom(32)
    ciphertext = crypto_utils.encrypt_rsa(public_key, secret)
    peer = crypto_utils.x25519_public_bytes(crypto_utils.generate_x25519())
    transcript = os.urandom(1000)

    def rsa() -> None:
        crypto_utils.decrypt_rsa(private_key, ciphertext)

    def x25519() -> None:  # the server's share: a fresh key, then the exchange
        crypto_utils.x25519_shared(crypto_utils.generate_x25519(), peer)

    def hkdf() -> None:
        derive_session_keys(secret, peer, transcript)

    def full() -> tuple[float, float]:
        began, cpu_began = time.perf_counter(), time.process_time()
        server = ServerHandshake(private_key)
        hello = server.hello()
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        client = ClientHandshake()  # the client's work is not the server's: not timed
        client.receive_hello(hello)
        key_message = client.key_message()
        began, cpu_began = time.perf_counter(), time.process_time()
        server.receive_key(key_message)
        return wall + time.perf_counter() - began, cpu + time.process_time() - cpu_began

    return {
        "rsa_oaep_decrypt": _rate(rsa, seconds, 100_000),
        "x25519": _rate(x25519, seconds, 1_000_000),
        "hkdf": _rate(hkdf, seconds, 1_000_000),
        "server_handshake": _rate(full, seconds, 100_000),
    }


def password_hash_cost(seconds: float) -> dict[str, Any]:
    """One Argon2 verification with Django's default parameters (Argon2PasswordHasher)."""
    from django.contrib.auth.hashers import Argon2PasswordHasher

    hasher = Argon2PasswordHasher()
    encoded = hasher.encode("correct horse battery staple", hasher.salt())

    def verify() -> None:
        if not hasher.verify("correct horse battery staple", encoded):
            raise AssertionError("Argon2 verification failed")

    result: dict[str, Any] = _rate(verify, seconds, 50)
    result["params"] = {
        "time_cost": hasher.time_cost,
        "memory_cost_kib": hasher.memory_cost,
        "parallelism": hasher.parallelism,
    }
    return result


def record_costs(chunk_size: int, chunks: int) -> dict[str, Any]:
    """AES-256-CBC + HMAC-SHA256 seal and open of file-chunk records, in MB/s of file data."""
    enc, mac = os.urandom(32), os.urandom(32)
    data = os.urandom(chunk_size)
    transfer = os.urandom(16)
    sealer = RecordSealer(enc, mac)
    began = time.perf_counter()
    records = [sealer.seal(encode_chunk(transfer, i, data)) for i in range(min(chunks, 64))]
    for i in range(64, chunks):
        sealer.seal(encode_chunk(transfer, i, data))
    seal_s = time.perf_counter() - began
    opener = RecordOpener(enc, mac)
    began = time.perf_counter()
    for i in range(chunks):
        opener.seq = i % len(records)  # replay the sealed batch, each record at its own seq
        opener.open(records[i % len(records)])
    open_s = time.perf_counter() - began
    return {
        "chunk_size": chunk_size,
        "chunks": chunks,
        **rates(chunk_size * chunks, chunks, seal=seal_s, open=open_s),
    }


def rates(total: int, chunks: int, **seconds: float) -> dict[str, float]:
    """MB/s and microseconds per chunk of each timed operation (``seal=2.5, open=2.1``) over
    ``chunks`` chunks of ``total`` bytes: one way to put every cipher's cost, so they compare."""
    out = {f"{op}_mb_s": total / s / 1e6 for op, s in seconds.items()}
    out.update({f"{op}_us_per_chunk": s / chunks * 1e6 for op, s in seconds.items()})
    return out
