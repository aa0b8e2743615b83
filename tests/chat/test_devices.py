"""Remembered devices over the protocol (PROTOCOL.md 3.4): remember, resume, devices,
revoke, logout, through the real consumer."""

from __future__ import annotations

import datetime
import re

import pytest

from chatproto.codes import CloseCode
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


async def remembered(username: str, name: str = "laptop"):
    """A logged-in session of ``username`` that remembered a device: (session, device, token)."""
    session = await open_session()
    answer = await session.login(username, remember=name)
    return session, answer["device"], answer["token"]


async def test_login_with_remember_gives_a_device_and_its_token(create_users):
    await create_users("alice")
    session = await open_session()
    answer = await session.login("alice", remember="laptop")
    assert 1 <= len(answer["device"]) <= 64
    assert TOKEN.match(answer["token"])
    assert answer["user"] == {"username": "alice"}
    await session.close()


async def test_login_without_remember_gives_no_device(create_users):
    await create_users("alice")
    session = await open_session()
    answer = await session.login("alice")
    assert "device" not in answer and "token" not in answer
    await session.close()


async def test_register_with_remember_gives_a_device_and_its_token(chat_settings):
    session = await open_session()
    answer = await session.request(
        {
            "type": "register",
            "username": "newcomer",
            "password": "a long passphrase 42",
            "remember": "phone",
        }
    )
    assert answer["type"] == "login_ok"
    assert answer["device"] and TOKEN.match(answer["token"])
    await session.close()


async def test_resume_logs_in_as_the_device_without_a_new_token(create_users):
    await create_users("alice")
    first, device, token = await remembered("alice")
    await first.close()
    session = await open_session()
    answer = await session.resume("alice", token)
    assert answer["device"] == device
    assert "token" not in answer
    assert session.after_login[-1]["type"] == "users"
    listing = await session.request({"type": "devices"})
    assert [(d["device"], d["current"]) for d in listing["devices"]] == [(device, True)]
    await session.close()


def _resume_failure(case: str, tokens: dict[str, str]) -> tuple[str, str]:
    """(username, token) of a resume that must fail, for ``case``."""
    return {
        "unknown user": ("nobody", tokens["alice"]),
        "wrong token": ("alice", "A" * 43),
        "revoked token": ("alice", tokens["revoked"]),
        "token of another user": ("alice", tokens["bob"]),
        "inactive account": ("sleeper", tokens["sleeper"]),
        "device unused too long": ("alice", tokens["stale"]),
    }[case]


@pytest.mark.parametrize(
    "case",
    [
        "unknown user",
        "wrong token",
        "revoked token",
        "token of another user",
        "inactive account",
        "device unused too long",
    ],
)
async def test_every_resume_failure_is_the_same_invalid_credentials(
    chat_settings, create_users, run_sync, case
):
    from accounts.models import Device, User

    await create_users("alice", "bob", "sleeper")
    tokens = {}
    devices = {}
    for key, username in [
        ("alice", "alice"),
        ("bob", "bob"),
        ("sleeper", "sleeper"),
        ("revoked", "alice"),
        ("stale", "alice"),
    ]:
        session, devices[key], tokens[key] = await remembered(username, key)
        if key == "revoked":
            assert (await session.request({"type": "revoke", "device": devices[key]}))[
                "type"
            ] == "ok"
        await session.close()
    await run_sync(lambda: User.objects.filter(username="sleeper").update(is_active=False))
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
        days=chat_settings.CHAT_DEVICE_LIFETIME_DAYS + 1
    )
    await run_sync(lambda: Device.objects.filter(pk=devices["stale"]).update(last_seen=old))
    username, token = _resume_failure(case, tokens)
    session = await open_session()
    answer = await session.request(
        {"type": "resume", "id": "x", "username": username, "token": token}
    )
    assert answer == {"type": "login_failed", "ref": "x", "reason": "invalid_credentials"}
    await session.close()


async def test_resume_failures_are_throttled_like_failed_logins(chat_settings, create_users):
    chat_settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (3, 600)
    await create_users("alice")
    first, _, token = await remembered("alice")
    await first.close()
    session = await open_session()
    for _ in range(3):
        wrong = await session.request({"type": "resume", "username": "alice", "token": "B" * 43})
        assert wrong["reason"] == "invalid_credentials"
    answer = await session.request({"type": "resume", "username": "alice", "token": token})
    assert answer["type"] == "login_failed"
    assert answer["reason"] == "rate_limited"
    assert 1 <= answer["retry_after"] <= 600
    await session.close()


async def test_fifth_failed_resume_closes_4001(create_users):
    await create_users("alice")
    session = await open_session()
    for _ in range(4):
        answer = await session.request({"type": "resume", "username": "alice", "token": "C" * 43})
        assert answer["reason"] == "invalid_credentials"
    await session.send({"type": "resume", "username": "alice", "token": "C" * 43})
    assert await session.expect_close() == CloseCode.LOGIN_FAILURES


async def test_a_revoked_devices_session_ends_revoked_and_its_token_stops_working(create_users):
    await create_users("alice")
    laptop, device, token = await remembered("alice")
    other = await open_session()
    await other.login("alice")
    assert (await other.request({"type": "revoke", "device": device}))["type"] == "ok"
    assert await laptop.find("session_ended") == {"type": "session_ended", "reason": "revoked"}
    assert await laptop.expect_close() == CloseCode.SESSION_ENDED
    assert (await other.request({"type": "ping"}))["type"] == "pong"  # the other session stays
    again = await open_session()
    answer = await again.request({"type": "resume", "username": "alice", "token": token})
    assert answer["reason"] == "invalid_credentials"
    await again.close()
    await other.close()


async def test_revoking_its_own_device_ends_the_session_too(create_users):
    await create_users("alice")
    session, device, _ = await remembered("alice")
    answer = await session.request({"type": "revoke", "device": device})
    assert answer["type"] == "ok"
    assert await session.find("session_ended") == {"type": "session_ended", "reason": "revoked"}
    assert await session.expect_close() == CloseCode.SESSION_ENDED


async def test_revoking_another_users_device_is_unknown_device(create_users):
    await create_users("alice", "bob")
    alice, device, _ = await remembered("alice")
    bob = await open_session()
    await bob.login("bob")
    answer = await bob.request({"type": "revoke", "id": "r", "device": device})
    assert answer["type"] == "error"
    assert (answer["ref"], answer["code"]) == ("r", "unknown_device")
    assert answer["message"]
    assert (await alice.request({"type": "ping"}))["type"] == "pong"
    await alice.close()
    await bob.close()


async def test_devices_lists_each_device_newest_first_with_current_and_online(create_users):
    await create_users("alice", "bob")
    laptop, laptop_id, _ = await remembered("alice", "laptop")
    phone, phone_id, _ = await remembered("alice", "phone")
    await phone.close()
    desk, desk_id, _ = await remembered("alice", "desk")
    bobs, _, _ = await remembered("bob", "bob's")
    listing = await desk.request({"type": "devices", "id": "d"})
    assert listing["type"] == "devices" and listing["ref"] == "d"
    devices = listing["devices"]
    assert [d["device"] for d in devices] == [desk_id, phone_id, laptop_id]
    for device in devices:
        assert set(device) == {"device", "name", "created", "last_seen", "current", "online"}
        assert TS.match(device["created"]) and TS.match(device["last_seen"])
    assert [d["name"] for d in devices] == ["desk", "phone", "laptop"]
    assert [d["current"] for d in devices] == [True, False, False]
    assert [d["online"] for d in devices] == [True, False, True]
    assert devices[0]["last_seen"] >= devices[1]["last_seen"] >= devices[2]["last_seen"]
    for session in (laptop, desk, bobs):
        await session.close()


async def test_a_device_is_online_while_a_session_on_any_process_has_it(chat_settings):
    from chat import presence

    presence.device_session_started("alice", "here.1", "dev-a")
    presence.device_session_started("alice", "there.1", "dev-b", process_id="other-process")
    presence.device_session_started("alice", "there.2", "dev-c", process_id="other-process")
    presence.device_session_ended("alice", "there.2")
    assert presence.online_devices("alice") == {"dev-a", "dev-b"}
    presence.device_session_ended("alice", "here.1")
    assert presence.online_devices("alice") == {"dev-b"}
    # The other process dies: its heartbeat expires, and its sessions stop counting.
    from django.core.cache import cache

    cache.delete(presence.process_key("other-process"))
    assert presence.online_devices("alice") == set()


async def test_logout_answers_ok_then_ends_the_session_and_revokes_its_device(create_users):
    await create_users("alice")
    session, _, token = await remembered("alice")
    twin = await open_session()
    await twin.resume("alice", token)  # another session of the same device
    answer = await session.request({"type": "logout", "id": "o"})
    assert answer == {"type": "ok", "ref": "o"}
    assert await session.recv() == {"type": "session_ended", "reason": "logged_out"}
    assert await session.expect_close() == CloseCode.SESSION_ENDED
    assert await twin.find("session_ended") == {"type": "session_ended", "reason": "revoked"}
    assert await twin.expect_close() == CloseCode.SESSION_ENDED
    again = await open_session()
    failed = await again.request({"type": "resume", "username": "alice", "token": token})
    assert failed["reason"] == "invalid_credentials"
    await again.close()


async def test_logout_of_a_session_without_a_device_ends_only_it(create_users):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")
    laptop, _, _ = await remembered("alice")
    assert (await session.request({"type": "logout"}))["type"] == "ok"
    assert await session.recv() == {"type": "session_ended", "reason": "logged_out"}
    assert await session.expect_close() == CloseCode.SESSION_ENDED
    assert (await laptop.request({"type": "ping"}))["type"] == "pong"
    await laptop.close()
