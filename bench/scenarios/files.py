"""Files: one file (1 GiB in the full run) from one client to another through the server.

Beside it, measured in the same run:

- the raw cost of AES-256-CBC + HMAC-SHA256 on the same 64 KiB chunks (seal and
  open of chunk records, in this process, one core);
- the same bytes relayed by a bare ``websockets`` server, no Django, no
  encryption, with the same window of 16 chunks in flight.

The product's transfer follows PROTOCOL.md 3.3 (offer, accept, chunk records,
acks, end, done). A server that does not relay files yet answers the offer
with an error: the result then says "not available" with that answer; nothing
is estimated in its place. Throughput is file bytes per second from the first
chunk to ``file_done``; memory is the server's peak RSS growth (sampled every
20 ms) over the transfer.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from .. import procs, product
from ..config import Config
from ..loadgen import LoadGen
from ..servers import KINDS, Context
from . import crypto

RECEIVER, SENDER = 0, 1


def unavailable(sent: dict[str, Any], until: str) -> dict[str, Any]:
    """The result of a transfer the server refused at its offer: not available until
    ``until`` ("the server accepts e2e offers: it") answered otherwise, with its answer."""
    answer = sent.get("answer", {})
    return {
        "unavailable": f"not available until {until} answered "
        f"file_offer with {answer.get('type')} {answer.get('code', '')} "
        f"({answer.get('message', '')})".strip()
    }


def check_completed(
    sent: dict[str, Any], received: dict[str, Any], what: str, size: int | None = None
) -> None:
    """Raise unless both ends of ``what`` say it completed (and, given ``size``, the receiver
    got that many bytes): a benchmark of a failed transfer would measure nothing."""
    done = sent.get("result", {})
    if (
        "failed" in sent
        or done.get("type") != "file_done"
        or not done.get("ok")
        or not received.get("ok")
        or (size is not None and received.get("bytes") != size)
    ):
        raise RuntimeError(f"{what} did not complete: sender {sent}, receiver {received}")


def run(ctx: Context, cfg: Config) -> dict[str, Any]:
    timeout = 120 + cfg.file_size / 5e6  # even at 5 MB/s the transfer ends in time
    result: dict[str, Any] = {"size": cfg.file_size, "chunk_size": cfg.chunk_size}
    print("[files] raw record seal/open", flush=True)
    result["raw"] = crypto.record_costs(cfg.chunk_size, cfg.crypto_chunks)
    for name, measure in (("relay", _relay), ("product", _product)):
        print(f"[files] {name}", flush=True)
        try:
            result[name] = measure(ctx, cfg, timeout)
        except Exception as exc:
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
            print(f"[files] {name}: {exc}", flush=True)
            if not isinstance(exc, (procs.ServerError, product.ProductUnavailable)):
                traceback.print_exc()
        else:
            r = result[name]
            if "mb_s" in r:
                cpu = r.get("server_cpu_us_per_chunk")
                print(
                    f"[files] {name}: {r['mb_s']:.1f} MB/s, peak server growth "
                    f"{r['peak_rss_growth'] / 2**20:.1f} MiB"
                    + (f", server CPU {cpu:.0f} µs per chunk" if cpu is not None else ""),
                    flush=True,
                )
    if "mb_s" in result.get("product", {}) and "mb_s" in result.get("relay", {}):
        ratio = result["product"]["mb_s"] / result["relay"]["mb_s"]
        print(f"[files] product / bare relay: {ratio:.2f}x", flush=True)
        # Under other load the throughputs measure the share of the cores each run got;
        # the servers' CPU per chunk does not depend on it as much.
        cpu = result["product"]["server_cpu_s"] / result["relay"]["server_cpu_s"]
        print(f"[files] server CPU, product / bare relay: {cpu:.2f}x", flush=True)
    return result


def _relay(ctx: Context, cfg: Config, timeout: float) -> dict[str, Any]:
    kind = KINDS["ws-relay"]
    server = kind.make(ctx)
    with procs.running([server]), LoadGen(2) as lg:
        target = kind.target(server)
        lg.submit(
            RECEIVER, "relay_receive", url=target.url, origin=target.origin, size=cfg.file_size
        )
        time.sleep(0.5)  # the receiver connects first (the relay pairs them in order)
        cpu_before = server.cpu_seconds()
        with procs.PeakRss(server) as peak:
            lg.submit(
                SENDER,
                "relay_send",
                url=target.url,
                origin=target.origin,
                size=cfg.file_size,
                chunk_size=cfg.chunk_size,
            )
            sent = lg.result(SENDER, timeout)
            received = lg.result(RECEIVER, timeout)
        server_cpu = server.cpu_seconds() - cpu_before
        server.check_alive()
    if received["sha256"] != sent["sha256"] or received["bytes"] != cfg.file_size:
        raise RuntimeError("the relayed bytes differ from the bytes sent")
    return {
        "label": kind.label,
        "seconds": sent["seconds"],
        "mb_s": cfg.file_size / sent["seconds"] / 1e6,
        "peak_rss_growth": peak.growth,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_chunk": server_cpu / _chunks(cfg) * 1e6,
        "sender_cpu_s": sent["cpu"]["cpu_s"],
    }


def _chunks(cfg: Config) -> int:
    return -(-cfg.file_size // cfg.chunk_size)


def _product(ctx: Context, cfg: Config, timeout: float) -> dict[str, Any]:
    if ctx.product is None:
        raise product.ProductUnavailable("the product server could not be prepared")
    kind = KINDS["product"]
    server = kind.make(ctx)
    with procs.running([server]), LoadGen(2) as lg:
        target = kind.target(server)
        for worker, user in ((RECEIVER, product.FILE_TO), (SENDER, product.FILE_FROM)):
            opened = lg.call(
                worker,
                "connect",
                timeout=120,
                target=target,
                accounts=[(user, product.PASSWORD)],
                count=1,
                role="files",
            )
            if not opened["opened"]:
                raise RuntimeError(f"{user} could not log in: {opened['errors']}")
        lg.call(RECEIVER, "file_receive_prepare", timeout=30)
        cpu_before = server.cpu_seconds()
        with procs.PeakRss(server) as peak:
            sent = lg.call(
                SENDER,
                "file_send",
                timeout=timeout + 30,
                to=product.FILE_TO,
                size=cfg.file_size,
                chunk_size=cfg.chunk_size,
                wait_s=timeout,
            )
        server_cpu = server.cpu_seconds() - cpu_before
        if sent.get("unavailable"):
            return unavailable(sent, "file transfer lands: the server")
        received = lg.call(RECEIVER, "file_receive_wait", timeout=90, wait_s=60)
        server.check_alive()
    check_completed(sent, received, "the transfer")
    return {
        "label": "our server (encrypted, end to end through the relay)",
        "seconds": sent["seconds"],
        "mb_s": cfg.file_size / sent["seconds"] / 1e6,
        "peak_rss_growth": peak.growth,
        "server_cpu_s": server_cpu,
        # The figure least moved by other work on the machine (bench/NOTES.md, issue 12).
        "server_cpu_us_per_chunk": server_cpu / _chunks(cfg) * 1e6,
        "sender_cpu_s": sent["cpu"]["cpu_s"],
    }
