"""The bench's resume support (issue 13): the requests it sends, the tokens it keeps, the
storm's variants and how the report names them. Unit level: no server is started."""

from __future__ import annotations

import pytest

from bench import config, report
from bench.loadgen import SessionError, login_request, remembered
from bench.scenarios.storm import run_key
from chatproto.messages import validate_request


def test_a_resume_sends_the_token_and_no_password():
    message = login_request("alice", "tok-123", resume=True)
    assert message == {"type": "resume", "username": "alice", "token": "tok-123"}


def test_a_login_asking_to_be_remembered_names_the_device():
    message = login_request("alice", "pw", remember="bench-churn")
    assert message == {
        "type": "login",
        "username": "alice",
        "password": "pw",
        "remember": "bench-churn",
    }
    assert "remember" not in login_request("alice", "pw")


def test_a_resume_cannot_ask_to_remember_another_device():
    with pytest.raises(ValueError):
        login_request("alice", "tok", resume=True, remember="x")


@pytest.mark.parametrize("resume", [False, True])
def test_what_the_bench_sends_is_a_valid_protocol_request(resume):
    token = "A" * 43  # base64url of 32 bytes
    message = login_request("alice", token, resume=resume, remember=None if resume else "pc")
    request = validate_request({**message, "id": "r1"})
    assert request.type == message["type"]


def test_the_token_is_taken_from_login_ok():
    answer = {"type": "login_ok", "ref": "r1", "device": "d1", "token": "t" * 43}
    assert remembered(answer) == ("d1", "t" * 43)


@pytest.mark.parametrize(
    "answer",
    [
        {"type": "login_ok", "ref": "r1"},  # a server without 3.4: no token
        {"type": "login_failed", "ref": "r1", "reason": "invalid_credentials"},
        {"type": "error", "ref": "r1", "code": "bad_request"},
    ],
)
def test_an_answer_without_a_token_is_an_error_that_names_the_protocol(answer):
    with pytest.raises(SessionError, match=r"3\.4"):
        remembered(answer)


def test_the_storm_runs_with_resumes_under_their_own_key_and_label():
    assert run_key(1, False) == "1"
    assert run_key(2, True) == "2-resume"
    assert report._storm_label("1") == "1 process"
    assert report._storm_label("2") == "2 processes on Redis"
    assert report._storm_label("1-resume") == "1 process, resumes"
    assert report._storm_label("2-resume") == "2 processes on Redis, resumes"


def test_the_resume_storm_is_on_by_default_and_can_be_chosen_or_dropped():
    assert config.Config().storm_resume_processes == (1,)
    cfg = config.from_args(config.parser().parse_args(["--storm-resume", "1,2"]))
    assert cfg.storm_resume_processes == (1, 2)
    cfg = config.from_args(config.parser().parse_args(["--storm-resume", ""]))
    assert cfg.storm_resume_processes == ()


def test_daphne_options_reach_the_config():
    cfg = config.from_args(config.parser().parse_args(["--daphne-args=--ping-interval 60"]))
    assert cfg.daphne_args == ("--ping-interval", "60")


def _handshake_result(resumes: dict) -> dict:
    phase = {
        "per_s": 4.0,
        "time": {"p50_ms": 400.0, "p99_ms": 700.0},
        "ping": {"p50_ms": 1.0, "p99_ms": 2.0},
        "failed": 0,
    }
    return {
        "raw": {"server_handshake": {"cpu_per_s": 300.0}},
        "config": {},
        "servers": {
            "product": {
                "label": "ours",
                "idle": {"ping": {"p50_ms": 1.0, "p99_ms": 2.0}},
                "handshakes": {**phase, "per_s": 100.0},
                "logins": phase,
                "resumes": resumes,
            }
        },
    }


def test_the_report_puts_resumes_per_second_beside_logins_per_second():
    resumes = {
        "per_s": 80.0,
        "time": {"p50_ms": 40.0, "p99_ms": 90.0},
        "ping": {"p50_ms": 1.5, "p99_ms": 3.0},
        "failed": 0,
    }
    text = "\n".join(report._handshake(_handshake_result(resumes), []))
    assert "| resumes | 80.0 |" in text
    assert "80.0 against 4.0 (20.0x)" in text


def test_the_report_says_when_resumes_were_not_measured():
    text = "\n".join(report._handshake(_handshake_result({"error": "no device token"}), []))
    assert "| resumes | error: no device token" in text
