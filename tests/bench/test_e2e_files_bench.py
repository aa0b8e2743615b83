"""The bench's end-to-end files scenario (docs/protocol.md 4.12) at unit level: the offer
its sender makes is one its receiver reads, with real AES-GCM chunks both ways; what a
client must refuse, the bench refuses; the raw costs measure real work; the report puts
the targets in its table. No server is started."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable

import pytest

from bench import config, report
from bench.scenarios import e2e_files
from chatproto.e2e_files import PIECE_SIZE, ChunkRejected, encrypted_size
from chatproto.messages import validate_request

SIZE = 2 * PIECE_SIZE + 1000  # three pieces, the last one short


def _file(size: int = SIZE) -> bytes:
    return os.urandom(size)


def _offer(data: bytes, sender: str = "alice") -> tuple[dict, str, Callable]:
    """An offer as the receiver gets it (``from`` added), the session key that a
    ``room_key`` would have brought before it, and the sender's chunk sealer."""
    outbound = e2e_files.OutboundFiles(sender, "DEVICEA", "bob")
    session_key = outbound.session_key  # shared before the first message of the session
    transfer = os.urandom(16)
    fields, seal = outbound.offer(transfer, len(data), hashlib.sha256(data).hexdigest())
    offer = {"type": "file_offer", "transfer": transfer.hex(), "from": sender, **fields}
    return offer, session_key, seal


def _pieces(data: bytes) -> list[bytes]:
    return [data[i : i + PIECE_SIZE] for i in range(0, len(data), PIECE_SIZE)]


def test_the_scenario_is_registered_and_selectable():
    assert "e2e_files" in config.SCENARIOS
    args = config.parser().parse_args(["--quick", "--only", "e2e_files", "--file-rounds", "3"])
    cfg = config.from_args(args)
    assert cfg.scenarios == ("e2e_files",)
    assert cfg.e2e_file_rounds == 3
    assert cfg.file_size < config.Config().file_size


def test_the_offer_hides_the_name_and_hash_and_carries_a_valid_looking_e2e_object():
    data = _file()
    offer, _, _ = _offer(data)

    assert "name" not in offer and "sha256" not in offer
    assert offer["size"] == encrypted_size(len(data)) == len(data) + 3 * 16
    sealed = offer["e2e"]
    assert sealed["algorithm"] == "megolm.v1"
    assert sealed["device"] == "DEVICEA"
    for field in ("sender_key", "session_id"):
        assert len(base64.b64decode(sealed[field] + "=")) == 32
    assert base64.b64decode(sealed["ciphertext"] + "==")
    assert hashlib.sha256(data).hexdigest().encode() not in base64.b64decode(
        sealed["ciphertext"] + "=="
    )


def test_the_offer_is_a_valid_end_to_end_file_offer():
    offer, _, _ = _offer(_file())
    request = {k: v for k, v in offer.items() if k != "from"}

    assert validate_request({**request, "id": "r1", "to": "bob"}).type == "file_offer"


def test_the_receiver_reads_the_offer_and_decrypts_every_chunk_to_the_file():
    data = _file()
    offer, session_key, seal = _offer(data)
    incoming = e2e_files.InboundFiles("bob", session_key).accept(offer)

    chunks = [seal(i, piece) for i, piece in enumerate(_pieces(data))]
    assert all(len(c) == len(p) + 16 for c, p in zip(chunks, _pieces(data), strict=True))
    assert all(p not in c for c, p in zip(chunks, _pieces(data), strict=True))
    read = b"".join(incoming.read(i, chunk) for i, chunk in enumerate(chunks))
    assert read == data
    assert (incoming.size, incoming.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_an_altered_or_misplaced_chunk_is_refused():
    data = _file()
    offer, session_key, seal = _offer(data)
    incoming = e2e_files.InboundFiles("bob", session_key).accept(offer)
    first, second = seal(0, data[:PIECE_SIZE]), seal(1, data[PIECE_SIZE : 2 * PIECE_SIZE])
    altered = bytes([first[0] ^ 1]) + first[1:]

    for index, chunk in ((0, altered), (1, first), (0, second), (3, first)):
        with pytest.raises(ChunkRejected):
            incoming.read(index, chunk)


@pytest.mark.parametrize(
    "change",
    [
        {"from": "mallory"},  # another sender than the plaintext names
        {"transfer": os.urandom(16).hex()},  # another transfer's offer
        {"size": encrypted_size(SIZE) + 16},  # the size changed on the way
    ],
)
def test_an_offer_that_fails_a_check_is_refused(change):
    offer, session_key, _ = _offer(_file())
    reader = e2e_files.InboundFiles("bob", session_key)

    with pytest.raises(ValueError):
        reader.accept({**offer, **change})


def test_an_offer_under_another_session_is_refused():
    offer, _, _ = _offer(_file())
    stranger = e2e_files.OutboundFiles("alice", "DEVICEA", "bob")

    with pytest.raises(ValueError):
        e2e_files.InboundFiles("bob", stranger.session_key).accept(offer)


def test_the_raw_costs_measure_both_ciphers():
    costs = e2e_files.chunk_costs(65536, 8)

    assert costs["gcm"]["encrypt_mb_s"] > 0 and costs["gcm"]["decrypt_mb_s"] > 0
    assert costs["record"]["seal_mb_s"] > 0 and costs["record"]["chunks"] == 8
    assert costs["gcm_vs_record"] == pytest.approx(
        costs["gcm_ns_per_byte"] / costs["record_ns_per_byte"]
    )


def test_the_ratio_pairs_the_transfers_of_each_round():
    runs = {
        "plain": [{"mb_s": 100.0}, {"mb_s": 50.0}, {"mb_s": 80.0}],
        "e2e": [{"mb_s": 90.0}, {"mb_s": 45.0}, {"unavailable": "refused"}],
    }

    assert e2e_files.round_ratios(runs) == [0.9, 0.9]  # not 67.5 / 80, the medians' ratio


def _transfer(mb_s: float, growth_mib: float) -> dict:
    return {
        "transfers": 2,
        "mb_s": mb_s,
        "mb_s_each": [mb_s, mb_s],
        "peak_rss_growth": growth_mib * 2**20,
        "server_cpu_us_per_mib": 8000.0,
        "server_core_share": 0.9,
        "sender_cpu_us_per_mib": 4000.0,
        "receiver_cpu_us_per_mib": 3000.0,
        "seconds": 10.0,
    }


@pytest.mark.parametrize(
    ("e2e_mb_s", "growth", "statuses"),
    [
        (90.0, 3.0, ["met", "met"]),
        (60.0, 70.0, ["**not met**", "**not met**"]),
    ],
)
def test_the_report_lists_both_targets_with_their_status(e2e_mb_s, growth, statuses):
    result = {
        "size": 2**30,
        "rounds": 2,
        "runs": {},
        "plain": _transfer(100.0, 1.0),
        "e2e": _transfer(e2e_mb_s, growth),
        "ratios": [e2e_mb_s / 100.0] * 2,
        "ratio": e2e_mb_s / 100.0,
        "whole_peak_rss_growth": 2**20,
    }
    targets: list[list[str]] = []

    section = "\n".join(report._e2e_files(result, targets))

    assert [t[2] for t in targets] == statuses
    assert targets[0][1] == f"{e2e_mb_s / 100:.2f}x"
    assert "1 GiB end-to-end transfer" in targets[1][0]
    assert "## End-to-end files" in section and f"{e2e_mb_s:.1f}" in section


def test_a_server_without_e2e_offers_leaves_the_targets_unmeasured():
    result = {
        "size": 16 * 2**20,
        "rounds": 2,
        "runs": {},
        "plain": _transfer(100.0, 1.0),
        "e2e": {"unavailable": "not available until the server accepts e2e offers"},
        "ratio": None,
    }
    targets: list[list[str]] = []

    section = "\n".join(report._e2e_files(result, targets))

    assert [t[2] for t in targets] == ["not measured", "not measured"]
    assert "not available until the server accepts e2e offers" in section


@pytest.mark.slow
def test_the_scenario_measures_both_transfers_on_the_product(tmp_path):
    """The whole scenario, tiny, against the real server (daphne, SQLite): both kinds of
    transfer complete, through the load generator's processes, with their figures."""
    from bench import product as bench_product
    from bench.servers import Context
    from chatproto import crypto_utils

    key_file = tmp_path / "server_key.pem"
    crypto_utils.load_private_key(key_file)
    ctx = Context(tmp=tmp_path, key_file=key_file, redis_url="", log_dir=tmp_path)
    server = bench_product.Product(tmp_path, key_file, tmp_path, "sqlite")
    server.prepare(receivers=1)
    ctx.product = server
    cfg = config.Config(file_size=SIZE, e2e_file_rounds=2, crypto_chunks=8)

    result = e2e_files.run(ctx, cfg)

    assert "error" not in result, result.get("error")
    assert [len(result["runs"][kind]) for kind in ("plain", "e2e")] == [2, 2]
    assert len(result["ratios"]) == 2 and result["ratio"] > 0
    assert result["e2e"]["transfers"] == 2
    assert result["e2e"]["peak_rss_growth"] < 64 * 2**20
