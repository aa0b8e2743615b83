"""``change_password`` over the protocol (PROTOCOL.md 3.4): the asking session and its device
stay, every other session ends ``password_changed`` and every other device is revoked."""

from __future__ import annotations

import pytest

from chatproto.codes import CloseCode
from tests.protocol_client.inprocess import open_session

pytestmark = pytest.mark.django_db(transaction=True)

NEW = "a new passphrase 43"


def change(password: str = "pw", new: str = NEW) -> dict:  # noqa: S107  # the tests' password
    return {"type": "change_password", "id": "c", "password": password, "new_password": new}


async def test_change_password_ends_the_other_sessions_and_revokes_the_other_devices(
    create_users,
):
    await create_users("alice", "bob")
    asking = await open_session()
    asking_login = await asking.login("alice", remember="laptop")
    other_device = await open_session()
    other_token = (await other_device.login("alice", remember="phone"))["token"]
    plain = await open_session()
    await plain.login("alice")
    bob = await open_session()
    await bob.login("bob")

    assert await asking.request(change()) == {"type": "ok", "ref": "c"}

    for ended in (other_device, plain):
        assert await ended.find("session_ended") == {
            "type": "session_ended",
            "reason": "password_changed",
        }
        assert await ended.expect_close() == CloseCode.SESSION_ENDED
    assert (await asking.request({"type": "ping"}))["type"] == "pong"  # this session stays
    assert (await bob.request({"type": "ping"}))["type"] == "pong"  # others' sessions too
    listing = await asking.request({"type": "devices"})
    assert [d["device"] for d in listing["devices"]] == [asking_login["device"]]

    gone = await open_session()
    refused = await gone.request({"type": "resume", "username": "alice", "token": other_token})
    assert refused["reason"] == "invalid_credentials"
    still = await gone.resume("alice", asking_login["token"])  # the asking device stays
    assert still["device"] == asking_login["device"]
    old = await open_session()
    assert (await old.request({"type": "login", "username": "alice", "password": "pw"}))[
        "reason"
    ] == "invalid_credentials"
    assert (await old.login("alice", NEW))["type"] == "login_ok"
    for session in (asking, gone, old, bob):
        await session.close()


async def test_a_wrong_current_password_is_invalid_credentials_and_ends_nothing(create_users):
    await create_users("alice")
    asking = await open_session()
    await asking.login("alice")
    other = await open_session()
    await other.login("alice")
    answer = await asking.request(change(password="nope"))
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", "invalid_credentials", "c")
    assert answer["message"]
    assert await other.nothing()
    fresh = await open_session()
    assert (await fresh.login("alice", "pw"))["type"] == "login_ok"  # unchanged
    for session in (asking, other, fresh):
        await session.close()


async def test_a_new_password_the_rules_refuse_is_invalid_password_with_the_rules(create_users):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")
    answer = await session.request(change(new="short"))
    assert (answer["type"], answer["code"]) == ("error", "invalid_password")
    assert "characters" in answer["message"]  # the rule, in words
    await session.close()


async def test_wrong_current_passwords_are_throttled_then_rate_limited(chat_settings, create_users):
    chat_settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (2, 600)
    await create_users("alice")
    session = await open_session()
    await session.login("alice")
    for _ in range(2):
        assert (await session.request(change(password="nope")))["code"] == "invalid_credentials"
    answer = await session.request(change())
    assert (answer["type"], answer["code"]) == ("error", "rate_limited")
    assert 1 <= answer["retry_after"] <= 600
    await session.close()
