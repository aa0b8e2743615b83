"""tests/services.py: a missing Redis or PostgreSQL skips on a laptop and fails in CI."""

from __future__ import annotations

import pytest

from tests import live_server, services


@pytest.fixture
def nothing_listens(monkeypatch):
    port = live_server.free_port()
    monkeypatch.setattr(services, "REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setattr(services, "POSTGRES_URL", f"postgres://postgres@127.0.0.1:{port}/test")


@pytest.mark.parametrize("helper", [services.redis_url, services.postgres_url])
def test_a_missing_service_skips_with_advice(nothing_listens, monkeypatch, helper):
    monkeypatch.delenv("CHAT_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="CHAT_REQUIRE_SERVICES=1"):
        helper()


@pytest.mark.parametrize("helper", [services.redis_url, services.postgres_url])
def test_a_missing_service_fails_when_services_are_required(nothing_listens, monkeypatch, helper):
    monkeypatch.setenv("CHAT_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="start"):
        helper()
