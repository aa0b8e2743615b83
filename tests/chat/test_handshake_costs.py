"""The per-connection work of the handshake path that runs on the event loop: the
handshake-rate check without a thread hop on the local-memory cache, a session's limits
without a deque until a refusal."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from chat import limits, workers


def _no_thread(*args, **kwargs):
    raise AssertionError("the local-memory cache must be checked without a thread hop")


def test_the_handshake_check_on_the_local_cache_runs_on_the_loop(chat_settings, monkeypatch):
    chat_settings.CHAT_HANDSHAKE_RATE = (2, 10**7)
    monkeypatch.setattr(limits, "sync_to_async", _no_thread)

    async def three() -> list[bool]:
        return [await limits.admit_handshake("192.0.2.7") for _ in range(3)]

    assert asyncio.run(three()) == [True, True, False]  # the third is past the limit
    assert asyncio.run(limits.admit_handshake("192.0.2.8")) is True  # per address


def test_the_handshake_check_on_a_shared_cache_goes_to_a_thread(
    chat_settings, monkeypatch, tmp_path
):
    hops: list[object] = []

    def counted(func):
        hops.append(func)

        async def run(*args):
            return func(*args)

        return run

    # A cache that other processes share (files here, Redis in production): I/O behind each call.
    chat_settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "shared-cache"),
        }
    }
    monkeypatch.setattr(limits, "sync_to_async", counted)
    assert asyncio.run(limits.admit_handshake("192.0.2.9")) is True
    assert hops == [limits.handshake_allowed]


def test_session_limits_keep_no_deque_until_a_refusal(chat_settings):
    chat_settings.CHAT_RATE_LIMITED_CLOSE = (3, 60)
    session = limits.SessionLimits(limits.LimitCounters())
    assert not session.keeps_refusals
    assert [session.refused(now) for now in (0.0, 1.0)] == [False, False]
    assert session.keeps_refusals
    assert session.refused(2.0) is True  # the 3rd in 60 s closes
    assert (
        limits.SessionLimits(limits.LimitCounters()).refused(100.0) is False
    )  # sessions count apart


def test_old_refusals_still_expire(chat_settings):
    chat_settings.CHAT_RATE_LIMITED_CLOSE = (2, 60)
    session = limits.SessionLimits(limits.LimitCounters())
    assert session.refused(0.0) is False
    assert session.refused(61.0) is False  # the first is out of the window
    assert session.refused(62.0) is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread niceness is Linux's")
def test_rsa_work_runs_below_the_loops_priority(runtime):
    def niceness(_: object) -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    loop_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    in_thread = asyncio.run(runtime.workers.handshakes(niceness)(None))
    if loop_niceness < workers.HANDSHAKE_NICENESS:
        assert in_thread == workers.HANDSHAKE_NICENESS
    else:  # a process already this nice: lowering a thread's niceness needs privileges
        assert in_thread >= workers.HANDSHAKE_NICENESS
