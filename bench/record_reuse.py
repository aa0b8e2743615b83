"""``python -m bench.record_reuse``: the record layer's cost per record, keys set up per
record (as before issue 12) against keys set up once per direction (now), in one run.

"Before" is the old ``RecordSealer.seal`` / ``RecordOpener.open`` body, rebuilt here
from the one-call functions it used (:func:`chatproto.crypto_utils.aes_cbc_encrypt`,
``hmac_sha256``, ``verify_hmac_sha256``, ``aes_cbc_decrypt``: a new AES object,
padder, CBC context and HMAC per record); "after" is the record layer itself
(:class:`chatproto.crypto_utils.CbcHmacKeys`). Rounds alternate between the two, so
that a machine busy with other work slows both alike; the minimum over rounds is
reported, and the ratio of the two.
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from collections.abc import Callable

from chatproto import crypto_utils
from chatproto.framing import encode_chunk
from chatproto.records import RecordOpener, RecordSealer

_HEADER = struct.Struct(">BQ")


def _old_seal(enc: bytes, mac: bytes, seq: int, plaintext: bytes) -> bytes:
    iv = os.urandom(16)
    body = _HEADER.pack(1, seq) + iv + crypto_utils.aes_cbc_encrypt(enc, iv, plaintext)
    return body + crypto_utils.hmac_sha256(mac, body)


def _old_open(enc: bytes, mac: bytes, record: bytes) -> bytes:
    body, tag = record[:-32], record[-32:]
    if not crypto_utils.verify_hmac_sha256(mac, body, tag):
        raise ValueError("tag")
    return crypto_utils.aes_cbc_decrypt(enc, body[9:25], body[25:])


def _per_call(func: Callable[[], object], count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        func()
    return (time.perf_counter() - began) / count * 1e6


def measure(plaintext: bytes, count: int, rounds: int) -> dict[str, float]:
    """µs per seal and per open, before and after (minimum over ``rounds``)."""
    enc, mac = os.urandom(32), os.urandom(32)
    sealer, opener = RecordSealer(enc, mac), RecordOpener(enc, mac)
    record = sealer.seal(plaintext)
    assert _old_open(enc, mac, record) == plaintext  # the same records both ways

    def new_open() -> bytes:
        opener.seq = 0
        return opener.open(record)

    cases: dict[str, Callable[[], object]] = {
        "seal_before": lambda: _old_seal(enc, mac, 0, plaintext),
        "seal_after": lambda: sealer.seal(plaintext),
        "open_before": lambda: _old_open(enc, mac, record),
        "open_after": new_open,
    }
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, func in cases.items():
            best[name] = min(best[name], _per_call(func, count))
    return best


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.record_reuse", description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    sizes = (
        ("200-byte JSON record", os.urandom(200), 20_000),
        ("64 KiB file chunk", encode_chunk(os.urandom(16), 0, os.urandom(65536)), 1_000),
    )
    print("| record | step | before (µs) | after (µs) | after / before |")
    print("| --- | --- | --- | --- | --- |")
    for label, plaintext, count in sizes:
        best = measure(plaintext, count, args.rounds)
        for step in ("seal", "open"):
            before, after = best[f"{step}_before"], best[f"{step}_after"]
            print(f"| {label} | {step} | {before:.2f} | {after:.2f} | {after / before:.2f} |")


if __name__ == "__main__":
    main()
