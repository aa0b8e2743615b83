"""``python -m bench.chunk_relay``: what the server spends in ``chatproto`` to relay one
64 KiB file chunk, the chunk copied out and encoded again (as before) against sealed
from the plaintext it was opened in (now), in one run.

One relay step is what the server does per chunk between daphne and daphne: open the
sender's record, decode the plaintext, seal the chunk for the recipient. "Before"
copies the plaintext out of the decrypted buffer (:meth:`RecordOpener.open`), slices
the data out (:func:`decode_plaintext` on bytes) and copies it back behind a header
(:func:`encode_chunk`); "after" is the server's path now
(:meth:`RecordOpener.open_view`, :meth:`ServerConnection.forward_chunk`'s
:func:`chunk_plaintext`). Both do the same checks and make the same record. Rounds
alternate between the two, so that a machine busy with other work slows both alike;
the minimum and the median over rounds are reported. In this tight loop the allocator
hands each step the memory the last one freed; in the server, between other work, a
fresh 64 KiB buffer can cost more (``bench/NOTES.md``, "The file relay").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from chatproto.framing import FileChunk, chunk_plaintext, decode_plaintext, encode_chunk
from chatproto.limits import MAX_CHUNK_SIZE
from chatproto.records import RecordOpener, RecordSealer


def _steps() -> dict[str, Callable[[], bytes]]:
    keys = [os.urandom(32) for _ in range(4)]
    sender, server_in = RecordSealer(*keys[:2]), RecordOpener(*keys[:2])
    plaintext = encode_chunk(os.urandom(16), 0, os.urandom(MAX_CHUNK_SIZE))
    record = sender.seal(plaintext)
    server_out = RecordSealer(*keys[2:])

    def before() -> bytes:
        server_in.seq = server_out.seq = 0
        chunk = decode_plaintext(server_in.open(record))
        assert isinstance(chunk, FileChunk)
        return server_out.seal(encode_chunk(chunk.transfer, chunk.index, chunk.data))

    def after() -> bytes:
        server_in.seq = server_out.seq = 0
        chunk = decode_plaintext(server_in.open_view(record))
        assert isinstance(chunk, FileChunk)
        return server_out.seal(chunk_plaintext(chunk))

    recipient = RecordOpener(*keys[2:])
    for step in (before, after):  # the same record for the recipient, either way
        recipient.seq = 0
        assert recipient.open(step()) == plaintext
    return {"before": before, "after": after}


def _per_call(func: Callable[[], object], count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        func()
    return (time.perf_counter() - began) / count * 1e6


def measure(count: int, rounds: int) -> dict[str, list[float]]:
    """µs per relay step, before and after, one figure per round."""
    steps = _steps()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(_per_call(step, count))
    return times


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.chunk_relay", description=__doc__)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--count", type=int, default=500, help="relay steps per round")
    args = p.parse_args()
    times = measure(args.count, args.rounds)
    (bmin, bmed), (amin, amed) = (
        (min(times[name]), statistics.median(times[name])) for name in ("before", "after")
    )
    print("| relay step, 64 KiB chunk | min (µs) | median (µs) |")
    print("| --- | --- | --- |")
    print(f"| before | {bmin:.1f} | {bmed:.1f} |")
    print(f"| after | {amin:.1f} | {amed:.1f} |")
    print(f"| after / before | {amin / bmin:.2f} | {amed / bmed:.2f} |")


if __name__ == "__main__":
    main()
