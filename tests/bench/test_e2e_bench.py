"""The bench's end-to-end scenario (issue 14) at a tiny size: the sender's costs and the
rotation run real engines in process and measure real work; the fan-out's messages are
valid ``e2e`` objects that carry their stamp; the report renders the section. No server
is started (the fan-out part then says why it was not measured)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bench import config, report
from bench.scenarios import e2e
from bench.servers import Context
from chatproto.messages import validate_request
from tk_client.e2e.engine import Shown

DEVICE = "ABCDEFGHIJ"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-e2e") / "server_key.pem"


@pytest.fixture(scope="module")
def private_key(key_file: Path):
    from chatproto import crypto_utils

    return crypto_utils.load_private_key(key_file)


def test_the_scenario_is_registered_and_selectable():
    assert "e2e" in config.SCENARIOS
    cfg = config.from_args(config.parser().parse_args(["--quick", "--only", "e2e"]))
    assert cfg.scenarios == ("e2e",)
    assert max(cfg.e2e_n) < max(config.Config().e2e_n)


def test_the_scenario_runs_at_a_tiny_size_without_a_server(key_file: Path, tmp_path: Path):
    cfg = config.Config(crypto_seconds=0.01, e2e_devices=(2,), e2e_rotation_members=4)
    ctx = Context(tmp=tmp_path, key_file=key_file, redis_url="", log_dir=tmp_path)

    result = e2e.run(ctx, cfg)

    assert set(result["sender"]["steady"]) == {"1", "2"}
    assert result["sender"]["steady"]["2"]["ratio"] > 1
    assert result["sender"]["first"]["2"]["to_device_messages"] == 2
    assert result["rotation"]["to_device_messages"] == 2
    assert "product server" in result["fanout"]["error"]


def test_the_first_message_claims_keys_and_sends_a_room_key_to_every_device(private_key):
    first = e2e.first_message(private_key, 3)

    assert first["requests"] == ["keys_query", "keys_claim", "to_device", "send"]
    assert first["to_device_messages"] == first["pre_key_messages"] == 3
    assert first["to_device_record_bytes"] > first["to_device_body_bytes"] > 0


def test_a_steady_state_message_is_one_send_costing_more_than_megolm_alone(private_key):
    steady = e2e.steady_state(private_key, 0.01, 1)

    assert steady["messages"] >= e2e.STEADY_BATCH
    assert steady["us"] >= steady["encrypt_for_us"] > steady["megolm_us"] > 0
    assert steady["record_bytes"] > e2e.plain_send(private_key, 0.01)["record_bytes"]


def test_after_a_member_leaves_the_others_get_a_new_room_key(private_key):
    figures, messages = e2e.rotation(private_key, 4)

    assert figures["requests"] == ["to_device", "send"]
    assert figures["to_device_messages"] == len(messages) == 2
    assert sorted(m["user"] for m in messages) == ["rot-m1", "rot-m2"]


def test_the_room_key_and_message_the_bench_makes_are_read_by_the_recipient():
    sender = e2e.Member("rot-sender")
    member = e2e.Member("rot-m1")
    member.stock_one_time_keys(1)
    directory = e2e.KeyDirectory([sender, member])
    engine = e2e.engine_of(sender)
    out = engine.encrypt_for("room:readable", ["rot-m1"], "hello", e2e.NOW)
    to_send, _, _ = e2e.complete(engine, directory, out)
    reader = e2e.engine_of(member)
    pushes = [
        {
            "type": "to_device",
            "seq": 1,
            "from": "rot-sender",
            "from_device": sender.store.device.device,
            "body": to_send[0]["messages"][0]["body"],
        },
        {
            "type": "message",
            "msg_id": 1,
            "room": "readable",
            "from": "rot-sender",
            "e2e": to_send[1]["e2e"],
            "ts": "2026-01-01T00:00:00.000Z",
        },
    ]
    shown = []
    for push in pushes:
        pending = [push]
        while pending:
            out = reader.receive(pending.pop(0), e2e.NOW)
            shown += [e.text for e in out.events if isinstance(e, Shown)]
            pending += [a for r in out.requests if (a := directory.answer(r)) is not None]
    assert shown == ["hello"]


def test_the_fanout_message_is_a_valid_e2e_send_that_carries_its_stamp():
    template = e2e.sample_e2e(DEVICE)
    sealed = e2e.stamped(template, run=7, seq=42)

    request = validate_request({"type": "send", "id": "r1", "room": "bench-e2e", "e2e": sealed})
    assert request.type == "send"
    assert len(sealed["ciphertext"]) == len(template["ciphertext"])
    base64.b64decode(sealed["ciphertext"] + "=" * (-len(sealed["ciphertext"]) % 4))
    assert e2e.stamp_of({"e2e": sealed}).startswith("7:42 ")


def test_receivers_count_e2e_and_text_messages_of_the_run_alike():
    counter = e2e._Counter(run=7, t_start=0.0, t_end=float("inf"))
    sealed = e2e.stamped(e2e.sample_e2e(DEVICE), run=7, seq=0)
    counter.on_message({"type": "message", "e2e": sealed})
    counter.on_message({"type": "message", "text": "7:1 0.0 xxx"})
    counter.on_message({"type": "message", "e2e": e2e.stamped(sealed, run=6, seq=0)})

    assert (counter.of_run, counter.in_window, counter.other) == (2, 2, 1)


def test_the_report_has_an_end_to_end_section(key_file: Path, tmp_path: Path):
    cfg = config.Config(crypto_seconds=0.01, e2e_devices=(2,), e2e_rotation_members=3)
    ctx = Context(tmp=tmp_path, key_file=key_file, redis_url="", log_dir=tmp_path)
    result = e2e.run(ctx, cfg)
    result["fanout"] = {
        "config": {"runs": 1},
        "sizes": {"text_chars": 100, "e2e_bytes": 590},
        "points": {
            "10": {
                room: {"deliveries_per_s": rate, "server_us_per_delivery": 50.0}
                for room, rate in (("public", 1000.0), ("e2e", 900.0))
            }
        },
    }
    result["rotation"]["server"] = {
        "messages": 1,
        "target_devices": 1,
        "repeats": 5,
        "ms": 3.0,
        "server_cpu_ms": 2.0,
    }

    text = "\n".join(report._e2e(result))

    assert text.startswith("## End-to-end encryption")
    assert "| 10 | 1,000; 50.0 µs | 900; 50.0 µs | 0.90x | 1.00x |" in text
    assert "after one of 3 members left (rotation)" in text
    assert "accepted, stored and queued in 3.0 ms" in text
