"""End-to-end files (docs/protocol.md 4.12) beside today's transfer (3.3), in the same run.

The same file (1 GiB in the full run) goes from one client to another through one
server, between the same two sessions (each logged in with ``remember``: an E2E device),
alternately as a 3.3 transfer (name and hash in the offer, the file's bytes in the
chunks) and as a 4.12 transfer (the offer's ``e2e`` a Megolm body holding the name, hash
and file key; every chunk a piece of 65,520 bytes under AES-256-GCM). Rounds alternate
the order (plain then e2e, e2e then plain, ...), so that a machine busy with other work
slows both alike. Each transfer is measured as :mod:`bench.scenarios.files` measures
one: file bytes per second from the first chunk to ``file_done``, the server's peak RSS
growth (sampled every 20 ms) over it, the server's and the clients' CPU.

The clients pay what users pay: the sender encrypts every piece with
:class:`~chatproto.e2e_files.ChunkCipher` as it streams; the receiver decrypts the
offer's Megolm body (its inbound session handed over by the bench, as a ``room_key``
would bring it), checks it (:func:`~chatproto.e2e_files.parse_file_plaintext`, the
conversation, sender and device), then decrypts every chunk before hashing it, and
answers ``file_done`` only if the size and the SHA-256 of the plaintext match. The
server does not decrypt anything either way.

Beside it, in this process on one core: ChunkCipher's encrypt and decrypt of 65,520-byte
pieces against the record layer's seal and open of 64 KiB chunk records (what every
chunk costs each client already), per byte.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import traceback
from typing import Any

import vodozemac

from chatproto.e2e import ALGORITHM_MEGOLM, canonical_json, conversation_id
from chatproto.e2e_files import (
    PIECE_SIZE,
    ChunkCipher,
    encrypted_size,
    file_plaintext,
    new_file_key,
    parse_file_plaintext,
)

from .. import procs, product
from ..config import Config
from ..loadgen import Incoming, LoadGen, SessionError, Target, Worker, open_session
from ..servers import KINDS, Context
from . import crypto, files

RECEIVER, SENDER = 0, 1
KINDS_OF_TRANSFER = ("plain", "e2e")
DEVICE_NAME = "bench-files"
FILE_NAME = "bench.bin"
RATIO_TARGET = 0.80  # e2e throughput / plain throughput (4.12's bench target)
GROWTH_TARGET = 64 * 2**20  # the server's peak RSS growth over one transfer, as today


# --- the clients' end-to-end side, without a network --------------------------------------


class OutboundFiles:
    """The sender's 4.12 side: its outbound Megolm session of ``pm:<user>:<peer>``, which
    seals each offer; a fresh file key and :class:`ChunkCipher` for each file."""

    def __init__(self, user: str, device: str, peer: str) -> None:
        self.user, self.device = user, device
        self.conversation = conversation_id(pm=(user, peer))
        self.group = vodozemac.GroupSession()
        # The device's curve25519 (a throwaway account: the server checks only its shape).
        self.sender_key = vodozemac.Account().curve25519_key.to_base64()

    @property
    def session_key(self) -> str:
        """What a ``room_key`` would carry to the peer's devices (4.6)."""
        return str(self.group.session_key.to_base64())

    def offer(self, transfer: bytes, size: int, sha256: str) -> tuple[dict[str, Any], Any]:
        """The offer's ``size`` and ``e2e`` (4.12), and the cipher's ``encrypt``."""
        key = new_file_key()
        plaintext = file_plaintext(
            conversation=self.conversation,
            sender=self.user,
            sender_device=self.device,
            transfer=transfer.hex(),
            name=FILE_NAME,
            size=size,
            sha256=sha256,
            key=key,
        )
        sealed = {
            "algorithm": ALGORITHM_MEGOLM,
            "sender_key": self.sender_key,
            "device": self.device,
            "session_id": self.group.session_id,
            "ciphertext": self.group.encrypt(canonical_json(plaintext)).to_base64(),
        }
        cipher = ChunkCipher(key, transfer.hex(), size)
        return {"size": encrypted_size(size), "e2e": sealed}, cipher.encrypt


class InboundFiles:
    """The receiver's 4.12 side: the sender's session (as its ``room_key`` brought it);
    reads an offer into what the file must be and how its chunks decrypt."""

    def __init__(self, user: str, session_key: str) -> None:
        self.user = user
        self.session = vodozemac.InboundGroupSession(vodozemac.SessionKey(session_key))

    def accept(self, offer: dict[str, Any]) -> Incoming:
        """Raises (any exception: the bench refuses with ``not_verified``) unless the offer
        decrypts and its plaintext is this conversation's file from the offering device."""
        sealed = offer["e2e"]
        if sealed["session_id"] != self.session.session_id:
            raise ValueError("no session for this offer")
        message = vodozemac.MegolmMessage.from_base64(sealed["ciphertext"])
        payload = json.loads(self.session.decrypt(message).plaintext)
        facts = parse_file_plaintext(
            payload, transfer=offer["transfer"], offered_size=offer["size"]
        )
        expected = (conversation_id(pm=(self.user, offer["from"])), offer["from"], sealed["device"])
        if (payload["conversation"], payload["sender"], payload["sender_device"]) != expected:
            raise ValueError("the offer is not this conversation's, from this device")
        cipher = ChunkCipher(facts.key, offer["transfer"], facts.size)
        return Incoming(size=facts.size, sha256=facts.sha256, read=cipher.decrypt)


class E2EFilesWorker(Worker):
    """The load generator's worker with 4.12's sender and receiver."""

    _outbound: OutboundFiles
    _inbound: InboundFiles

    async def cmd_files_login(self, target: Target, user: str, password: str) -> dict[str, Any]:
        """Log in with ``remember`` (an E2E device, 4.2): the session of both transfers."""
        session = await open_session(target, user, password, remember=DEVICE_NAME)
        self.sessions.append(session)
        return {"device": session.device}

    async def cmd_e2e_file_session(self, peer: str) -> dict[str, Any]:
        """Make the sender's Megolm session of its conversation with ``peer``."""
        session = self._session()
        self._outbound = OutboundFiles(session.username, session.device, peer)
        return {"session_key": self._outbound.session_key}

    async def cmd_e2e_file_inbound(self, session_key: str) -> dict[str, Any]:
        """Take the sender's session key, as a ``room_key`` would bring it."""
        self._inbound = InboundFiles(self._session().username, session_key)
        return {"session_id": self._inbound.session.session_id}

    async def cmd_e2e_file_receive_prepare(self) -> dict[str, Any]:
        return self.receive_file(self._inbound.accept)

    async def cmd_e2e_file_send(self, to: str, size: int, wait_s: float) -> dict[str, Any]:
        return await self.send_file(to, size, PIECE_SIZE, wait_s, self._outbound.offer)

    def _session(self) -> Any:
        if not self.sessions:
            raise SessionError("no session: run files_login first")
        return self.sessions[0]


# --- the raw costs -----------------------------------------------------------------------


def chunk_costs(chunk_size: int, chunks: int) -> dict[str, Any]:
    """ChunkCipher encrypt and decrypt of ``chunks`` pieces beside the record layer's seal
    and open of as many chunk records (:func:`crypto.record_costs`), in this process: MB/s
    of file bytes and µs per chunk, and what the AES-GCM layer adds per byte."""
    transfer = os.urandom(16).hex()
    cipher = ChunkCipher(new_file_key(), transfer, chunks * PIECE_SIZE)
    piece = os.urandom(PIECE_SIZE)
    batch = min(chunks, 64)
    began = time.perf_counter()
    sealed = [cipher.encrypt(i, piece) for i in range(batch)]
    for i in range(batch, chunks):
        cipher.encrypt(i, piece)
    encrypt_s = time.perf_counter() - began
    began = time.perf_counter()
    for i in range(chunks):
        cipher.decrypt(i % batch, sealed[i % batch])
    decrypt_s = time.perf_counter() - began
    total = PIECE_SIZE * chunks
    gcm = {
        "chunks": chunks,
        "piece_size": PIECE_SIZE,
        **crypto.rates(total, chunks, encrypt=encrypt_s, decrypt=decrypt_s),
    }
    record = crypto.record_costs(chunk_size, chunks)
    gcm_ns = (encrypt_s + decrypt_s) / total * 1e9
    record_ns = (
        (record["seal_us_per_chunk"] + record["open_us_per_chunk"]) / record["chunk_size"] * 1e3
    )
    return {
        "gcm": gcm,
        "record": record,
        "gcm_ns_per_byte": gcm_ns,
        "record_ns_per_byte": record_ns,
        "gcm_vs_record": gcm_ns / record_ns if record_ns else None,
    }


# --- the scenario ------------------------------------------------------------------------


def run(ctx: Context, cfg: Config) -> dict[str, Any]:
    result: dict[str, Any] = {"size": cfg.file_size, "rounds": cfg.e2e_file_rounds}
    print("[e2e_files] ChunkCipher beside the record layer", flush=True)
    result["raw"] = chunk_costs(cfg.chunk_size, cfg.crypto_chunks)
    raw = result["raw"]
    print(
        f"[e2e_files] AES-GCM encrypt {raw['gcm']['encrypt_mb_s']:.0f} MB/s, decrypt "
        f"{raw['gcm']['decrypt_mb_s']:.0f} MB/s; {raw['gcm_vs_record']:.2f}x the record "
        "layer's seal+open per byte",
        flush=True,
    )
    try:
        result.update(transfers(ctx, cfg))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:600]
        print(f"[e2e_files] {result['error']}", flush=True)
        if not isinstance(exc, (procs.ServerError, product.ProductUnavailable)):
            traceback.print_exc()
    return result


def transfers(ctx: Context, cfg: Config) -> dict[str, Any]:
    """``cfg.e2e_file_rounds`` rounds of one plain and one e2e transfer, alternating which
    goes first, on one product server between the same two sessions."""
    if ctx.product is None:
        raise product.ProductUnavailable("the product server could not be prepared")
    timeout = 120 + cfg.file_size / 5e6  # even at 5 MB/s the transfer ends in time
    kind = KINDS["product"]
    server = kind.make(ctx)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in KINDS_OF_TRANSFER}
    with procs.running([server]), LoadGen(2, worker=E2EFilesWorker) as lg:
        target = kind.target(server)
        for worker, user in ((RECEIVER, product.FILE_TO), (SENDER, product.FILE_FROM)):
            lg.call(
                worker,
                "files_login",
                timeout=120,
                target=target,
                user=user,
                password=product.PASSWORD,
            )
        key = lg.call(SENDER, "e2e_file_session", timeout=30, peer=product.FILE_TO)
        lg.call(RECEIVER, "e2e_file_inbound", timeout=30, session_key=key["session_key"])
        with procs.PeakRss(server) as whole:
            for round_ in range(cfg.e2e_file_rounds):
                order = KINDS_OF_TRANSFER if round_ % 2 == 0 else KINDS_OF_TRANSFER[::-1]
                for name in order:
                    entry = _transfer(server, lg, cfg, name, timeout)
                    runs[name].append(entry)
                    print(f"[e2e_files] round {round_ + 1}, {name}: {_line(entry)}", flush=True)
                    if "unavailable" in entry:
                        break
                if any("unavailable" in entry for entry in runs["e2e"]):
                    break
        server.check_alive()
    out: dict[str, Any] = {"runs": runs, "whole_peak_rss_growth": whole.growth}
    out.update({name: summary(entries) for name, entries in runs.items()})
    out["ratios"] = round_ratios(runs)
    out["ratio"] = statistics.median(out["ratios"]) if out["ratios"] else None
    out["cpu_ratio"] = _divide(
        out["e2e"].get("server_cpu_us_per_mib"), out["plain"].get("server_cpu_us_per_mib")
    )
    if out["ratio"] is not None:
        print(
            f"[e2e_files] e2e / plain throughput: {out['ratio']:.2f} (target ≥ {RATIO_TARGET}); "
            f"server peak growth over an e2e transfer "
            f"{out['e2e']['peak_rss_growth'] / 2**20:.1f} MiB",
            flush=True,
        )
    return out


def _transfer(
    server: procs.ServerProcess, lg: LoadGen, cfg: Config, name: str, timeout: float
) -> dict[str, Any]:
    """One transfer of ``cfg.file_size`` bytes, 3.3 (``plain``) or 4.12 (``e2e``)."""
    e2e = name == "e2e"
    lg.call(RECEIVER, "e2e_file_receive_prepare" if e2e else "file_receive_prepare", timeout=30)
    to = product.FILE_TO
    cpu_before = server.cpu_seconds()
    # The plain transfer chooses its chunk size; the e2e one's pieces are fixed (4.12).
    how = {} if e2e else {"chunk_size": cfg.chunk_size}
    with procs.PeakRss(server) as peak:
        sent = lg.call(
            SENDER,
            "e2e_file_send" if e2e else "file_send",
            timeout=timeout + 30,
            to=to,
            size=cfg.file_size,
            wait_s=timeout,
            **how,
        )
    server_cpu = server.cpu_seconds() - cpu_before
    if sent.get("unavailable"):
        return files.unavailable(sent, f"the server accepts {name} offers: it")
    received = lg.call(RECEIVER, "file_receive_wait", timeout=90, wait_s=60)
    server.check_alive()
    files.check_completed(sent, received, f"the {name} transfer", size=cfg.file_size)
    mib = cfg.file_size / 2**20
    return {
        "seconds": sent["seconds"],
        "mb_s": cfg.file_size / sent["seconds"] / 1e6,
        "chunks": sent["chunks"],
        "peak_rss_growth": peak.growth,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_mib": server_cpu / mib * 1e6,
        "sender_cpu_s": sent["cpu"]["cpu_s"],
        "sender_cpu_us_per_mib": sent["cpu"]["cpu_s"] / mib * 1e6,
        "receiver_cpu_s": received.get("cpu_s", 0.0),
        "receiver_cpu_us_per_mib": received.get("cpu_s", 0.0) / mib * 1e6,
    }


def round_ratios(runs: dict[str, list[dict[str, Any]]]) -> list[float]:
    """e2e / plain throughput of each round that measured both. A round's two transfers
    ran back to back, under the same load: their median moves less with drifts in the
    machine's load than a ratio of the medians would."""
    return [
        e["mb_s"] / p["mb_s"]
        for p, e in zip(runs["plain"], runs["e2e"], strict=False)
        if "mb_s" in p and "mb_s" in e
    ]


def summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds (throughput, CPU), the worst memory growth; or why none."""
    done = [e for e in entries if "mb_s" in e]
    if not done:
        why = next((e["unavailable"] for e in entries if "unavailable" in e), "no transfer ran")
        return {"unavailable": why}
    seconds = statistics.median(e["seconds"] for e in done)
    return {
        "transfers": len(done),
        "mb_s": statistics.median(e["mb_s"] for e in done),
        "mb_s_each": [e["mb_s"] for e in done],
        "peak_rss_growth": max(e["peak_rss_growth"] for e in done),
        "server_cpu_us_per_mib": statistics.median(e["server_cpu_us_per_mib"] for e in done),
        "server_core_share": statistics.median(e["server_cpu_s"] / e["seconds"] for e in done),
        "sender_cpu_us_per_mib": statistics.median(e["sender_cpu_us_per_mib"] for e in done),
        "receiver_cpu_us_per_mib": statistics.median(e["receiver_cpu_us_per_mib"] for e in done),
        "seconds": seconds,
    }


def _divide(a: Any, b: Any) -> float | None:
    return a / b if a and b else None


def _line(entry: dict[str, Any]) -> str:
    if "mb_s" not in entry:
        return str(entry.get("unavailable"))
    return (
        f"{entry['mb_s']:.1f} MB/s, peak server growth {entry['peak_rss_growth'] / 2**20:.1f} "
        f"MiB; CPU µs per MiB: server {entry['server_cpu_us_per_mib']:.0f}, sender "
        f"{entry['sender_cpu_us_per_mib']:.0f}, receiver {entry['receiver_cpu_us_per_mib']:.0f}"
    )
