"""Login and registration over the protocol (PROTOCOL.md 3.1), through the real consumer."""

from __future__ import annotations

import pytest

from accounts.models import User
from tests.protocol_client.inprocess import communicator, open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def test_login_ok_lists_the_rooms_the_user_sees_then_users(create_users):
    await create_users("alice", "bob")
    session = await open_session()
    answer = await session.request(
        {"type": "login", "id": "L", "username": "alice", "password": "pw"}
    )
    assert answer == {
        "type": "login_ok",
        "ref": "L",
        "user": {"username": "alice"},
        "rooms": [{"name": "lobby", "private": False, "owner": None, "members": ["alice", "bob"]}],
    }
    assert await session.recv() == {
        "type": "users",
        "online": ["alice"],
        "all": ["alice", "bob"],
        "presence_interval": 1,
    }
    await session.close()


@pytest.mark.parametrize("case", ["wrong password", "unknown user", "inactive account"])
async def test_every_login_failure_is_invalid_credentials(create_users, case):
    await create_users("alice")
    await create_users("sleeper", is_active=False)
    username, password = {
        "wrong password": ("alice", "nope"),
        "unknown user": ("nobody", "pw"),
        "inactive account": ("sleeper", "pw"),
    }[case]
    session = await open_session()
    answer = await session.request(
        {"type": "login", "id": "x", "username": username, "password": password}
    )
    assert answer == {"type": "login_failed", "ref": "x", "reason": "invalid_credentials"}
    await session.close()


async def test_login_compares_the_username_as_given(create_users):
    await create_users("Alice")
    session = await open_session()
    answer = await session.request({"type": "login", "username": "alice", "password": "pw"})
    assert answer["reason"] == "invalid_credentials"
    await session.close()


async def test_unknown_user_costs_a_password_hash_like_a_known_one(create_users, monkeypatch):
    from django.contrib.auth import hashers

    await create_users("alice")
    calls = []
    original = hashers.Argon2PasswordHasher.encode

    def counting(self, password, salt):
        calls.append(password)
        return original(self, password, salt)

    monkeypatch.setattr(hashers.Argon2PasswordHasher, "encode", counting)
    session = await open_session()
    await session.request({"type": "login", "username": "nobody", "password": "guess"})
    assert calls == ["guess"]
    await session.close()


async def test_fifth_failed_login_is_answered_then_closes_4001(create_users):
    await create_users("alice")
    session = await open_session()
    for _ in range(4):
        answer = await session.request({"type": "login", "username": "alice", "password": "bad"})
        assert answer["reason"] == "invalid_credentials"
    await session.send({"type": "login", "id": "5", "username": "alice", "password": "bad"})
    assert (await session.recv())["type"] == "login_failed"
    assert await session.expect_close() == 4001


async def test_failures_past_the_limit_are_rate_limited_whatever_the_password(
    chat_settings, create_users
):
    chat_settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (3, 600)
    await create_users("alice")
    for _ in range(3):
        session = await open_session()
        await session.request({"type": "login", "username": "alice", "password": "bad"})
        await session.close()
    session = await open_session()
    answer = await session.request({"type": "login", "username": "alice", "password": "pw"})
    assert answer["reason"] == "rate_limited"
    assert 1 <= answer["retry_after"] <= 600
    await session.close()
    # Another address may still log in as alice: no username is locked out everywhere.
    elsewhere = await open_session(client=("192.0.2.7", 1234))
    await elsewhere.login("alice")
    await elsewhere.close()


async def test_unknown_usernames_are_rate_limited_exactly_like_known_ones(
    chat_settings, create_users
):
    chat_settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (2, 600)
    await create_users("alice")
    answers = {}
    for name in ("alice", "ghost"):
        for _ in range(2):
            session = await open_session()
            await session.request({"type": "login", "username": name, "password": "bad"})
            await session.close()
        session = await open_session()
        answers[name] = await session.request({"type": "login", "username": name, "password": "x"})
        await session.close()
    assert answers["alice"]["reason"] == answers["ghost"]["reason"] == "rate_limited"
    assert answers["alice"].keys() == answers["ghost"].keys()


async def test_failures_per_address_are_limited_across_usernames(chat_settings, create_users):
    chat_settings.CHAT_LOGIN_THROTTLE_ADDRESS = (3, 600)
    await create_users("alice")
    session = await open_session(client=("198.51.100.1", 1))
    for name in ("a1", "a2", "a3"):
        await session.request({"type": "login", "username": name, "password": "bad"})
    answer = await session.request({"type": "login", "username": "alice", "password": "pw"})
    assert answer["reason"] == "rate_limited"
    await session.close()


async def test_requests_before_login_are_not_authenticated_except_ping(chat_settings):
    session = await open_session()
    assert await session.request({"type": "ping", "id": "p"}) == {"type": "pong", "ref": "p"}
    for request in (
        {"type": "send", "room": "lobby", "text": "hi"},
        {"type": "users"},
        {"type": "history", "room": "lobby"},
    ):
        answer = await session.request(request)
        assert answer["type"] == "error" and answer["code"] == "not_authenticated", answer
    answer = await session.request({"type": "bogus"})
    assert answer["code"] == "bad_request"
    await session.close()


async def test_second_login_after_login_ok_is_a_bad_request(create_users):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")
    for kind in ("login", "register"):
        answer = await session.request({"type": kind, "username": "alice", "password": "pw"})
        assert answer["code"] == "bad_request"
    await session.close()


# --- registration ------------------------------------------------------------------------------


async def test_register_creates_the_account_and_logs_in(chat_settings, run_sync):
    session = await open_session()
    answer = await session.request(
        {"type": "register", "id": "R", "username": "newbie", "password": "a long passphrase 42"}
    )
    assert answer["type"] == "login_ok" and answer["ref"] == "R"
    assert answer["user"] == {"username": "newbie"}
    assert [room["name"] for room in answer["rooms"]] == ["lobby"]
    assert (await session.recv())["type"] == "users"
    assert await run_sync(lambda: User.objects.get(username="newbie").has_usable_password())
    await session.close()


async def test_register_when_registration_is_closed(chat_settings):
    chat_settings.CHAT_OPEN_REGISTRATION = False
    session = await open_session()
    assert session.greeting["registration"] is False
    answer = await session.request(
        {"type": "register", "username": "x", "password": "a long passphrase 42"}
    )
    assert answer["type"] == "register_failed" and answer["reason"] == "closed"
    assert answer["message"]
    await session.close()


@pytest.mark.parametrize(
    ("username", "password", "reason", "advice"),
    [
        ("ALICE", "a long passphrase 42", "username_taken", "taken"),
        ("bad name", "a long passphrase 42", "invalid_username", "letters"),
        ("", "a long passphrase 42", "invalid_username", "letters"),
        ("x" * 151, "a long passphrase 42", "invalid_username", "150"),
        ("carol", "short", "invalid_password", "too short"),
        ("carol", "password123", "invalid_password", "too common"),
        ("carol", "12345678901", "invalid_password", "numeric"),
    ],
)
async def test_register_failures_say_what_to_fix(create_users, username, password, reason, advice):
    await create_users("alice")
    session = await open_session()
    answer = await session.request(
        {"type": "register", "id": "r", "username": username, "password": password}
    )
    assert answer["type"] == "register_failed"
    assert answer["ref"] == "r"
    assert answer["reason"] == reason
    assert advice in answer["message"]
    await session.close()


async def test_registrations_per_address_are_rate_limited(chat_settings):
    chat_settings.CHAT_REGISTER_THROTTLE_ADDRESS = (2, 3600)
    for name in ("user1", "user2"):
        session = await open_session()
        answer = await session.request(
            {"type": "register", "username": name, "password": "a long passphrase 42"}
        )
        assert answer["type"] == "login_ok"
        await session.close()
    session = await open_session()
    answer = await session.request(
        {"type": "register", "username": "user3", "password": "a long passphrase 42"}
    )
    assert answer["reason"] == "rate_limited"
    assert answer["retry_after"] >= 1
    await session.close()


async def test_client_address_comes_from_a_trusted_proxy_only(chat_settings, create_users):
    """Failures are counted against the forwarded address when the peer is a trusted proxy."""
    chat_settings.CHAT_TRUSTED_PROXIES = ["10.0.0.1"]
    chat_settings.CHAT_LOGIN_THROTTLE_ADDRESS = (1, 600)
    await create_users("alice")

    async def attempt(forwarded: bytes, peer: str) -> dict:
        comm = communicator(client=(peer, 1))
        comm.scope["headers"] = [*comm.scope["headers"], (b"x-forwarded-for", forwarded)]
        from tests.protocol_client.inprocess import InProcessClient

        session = InProcessClient(comm)
        await session.connect()
        await session.handshake()
        answer = await session.request({"type": "login", "username": "alice", "password": "bad"})
        await session.close()
        return answer

    assert (await attempt(b"203.0.113.5", "10.0.0.1"))["reason"] == "invalid_credentials"
    # Same real client behind the proxy: now limited.
    assert (await attempt(b"203.0.113.5", "10.0.0.1"))["reason"] == "rate_limited"
    # Another client behind the same proxy is not.
    assert (await attempt(b"203.0.113.6", "10.0.0.1"))["reason"] == "invalid_credentials"
    # An untrusted peer cannot pick its address with the header.
    assert (await attempt(b"203.0.113.9", "192.0.2.50"))["reason"] == "invalid_credentials"
    assert (await attempt(b"203.0.113.10", "192.0.2.50"))["reason"] == "rate_limited"
