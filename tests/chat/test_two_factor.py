"""Two-factor login over the protocol (PROTOCOL.md 3.4): otp_setup, otp_confirm, login with
``otp``, backup codes, otp_disable, and the enrolment a server may require."""

from __future__ import annotations

import re

import pytest

from chatproto.codes import CloseCode
from chatproto.framing import FileChunk
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.inprocess import open_session, totp_code

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = {"type": "login", "username": "alice", "password": "pw"}


async def two_factor_alice() -> tuple[str, list[str]]:
    """alice's account with two-factor login on: the secret and the backup codes."""
    session = await open_session()
    await session.login("alice")
    secret, codes = await session.enable_two_factor()
    await session.close()
    return secret, codes


async def test_otp_setup_gives_a_secret_and_an_otpauth_uri(chat_settings, create_users):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")
    answer = await session.request({"type": "otp_setup", "id": "s"})
    assert answer["type"] == "otp_setup" and answer["ref"] == "s"
    assert re.fullmatch(r"[A-Z2-7]{32}", answer["secret"])
    assert answer["uri"].startswith("otpauth://totp/")
    assert f"secret={answer['secret']}" in answer["uri"]
    assert "issuer=" in answer["uri"] and "alice" in answer["uri"]
    await session.close()


async def test_otp_confirm_gives_ten_backup_codes(create_users):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")
    setup = await session.request({"type": "otp_setup"})
    enabled = await session.request({"type": "otp_confirm", "code": totp_code(setup["secret"])})
    assert enabled["type"] == "otp_enabled"
    assert len(set(enabled["backup_codes"])) == 10
    await session.close()


async def test_login_of_a_two_factor_account_needs_a_current_code(create_users):
    await create_users("alice")
    secret, _ = await two_factor_alice()
    session = await open_session()
    missing = await session.request({**LOGIN, "id": "m"})
    assert missing == {"type": "login_failed", "ref": "m", "reason": "otp_required"}
    wrong = await session.request({**LOGIN, "otp": "000000"})
    assert wrong["reason"] == "otp_required"
    answer = await session.login("alice", otp=totp_code(secret, ahead=1))
    assert answer["type"] == "login_ok"
    await session.close()


async def test_a_wrong_password_with_a_right_code_is_invalid_credentials(create_users):
    await create_users("alice")
    secret, _ = await two_factor_alice()
    session = await open_session()
    answer = await session.request({**LOGIN, "password": "nope", "otp": totp_code(secret, 1)})
    assert answer["reason"] == "invalid_credentials"
    await session.close()


async def test_a_totp_code_is_accepted_once(create_users):
    await create_users("alice")
    secret, _ = await two_factor_alice()
    code = totp_code(secret, ahead=1)
    first = await open_session()
    await first.login("alice", otp=code)
    second = await open_session()
    again = await second.request({**LOGIN, "otp": code})
    assert again["reason"] == "otp_required"
    await first.close()
    await second.close()


async def test_a_backup_code_works_once(create_users):
    await create_users("alice")
    _, codes = await two_factor_alice()
    first = await open_session()
    assert (await first.login("alice", otp=codes[0]))["type"] == "login_ok"
    second = await open_session()
    again = await second.request({**LOGIN, "otp": codes[0]})
    assert again["reason"] == "otp_required"
    assert (await second.login("alice", otp=codes[1]))["type"] == "login_ok"
    await first.close()
    await second.close()


async def test_a_wrong_otp_counts_toward_the_fifth_failure_close(create_users):
    await create_users("alice")
    await two_factor_alice()
    session = await open_session()
    for _ in range(4):
        assert (await session.request({**LOGIN, "otp": "000000"}))["reason"] == "otp_required"
    await session.send({**LOGIN, "otp": "000000"})
    assert await session.expect_close() == CloseCode.LOGIN_FAILURES


async def test_a_remembered_device_resumes_without_a_code(create_users):
    await create_users("alice")
    secret, _ = await two_factor_alice()
    first = await open_session()
    token = (await first.login("alice", otp=totp_code(secret, 1), remember="laptop"))["token"]
    await first.close()
    session = await open_session()
    assert (await session.resume("alice", token))["type"] == "login_ok"
    await session.close()


async def test_otp_setup_on_an_account_with_two_factor_login_is_bad_request(create_users):
    await create_users("alice")
    secret, _ = await two_factor_alice()
    session = await open_session()
    await session.login("alice", otp=totp_code(secret, 1))
    answer = await session.request({"type": "otp_setup", "id": "s"})
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", "bad_request", "s")
    await session.close()


async def test_otp_confirm_with_a_wrong_code_is_invalid_otp_and_changes_nothing(create_users):
    await create_users("alice")
    session = await open_session()
    await session.login("alice")
    await session.request({"type": "otp_setup"})
    answer = await session.request({"type": "otp_confirm", "id": "c", "code": "000000"})
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", "invalid_otp", "c")
    await session.close()
    again = await open_session()
    assert (await again.login("alice"))["type"] == "login_ok"  # still no code needed
    await again.close()


async def test_otp_disable_needs_the_password_and_a_current_code(create_users):
    await create_users("alice")
    secret, backup_codes = await two_factor_alice()
    session = await open_session()
    await session.login("alice", otp=backup_codes[0])
    code = totp_code(secret, 1)
    wrong_password = await session.request(
        {"type": "otp_disable", "password": "nope", "code": code}
    )
    assert (wrong_password["type"], wrong_password["code"]) == ("error", "invalid_credentials")
    wrong_code = await session.request({"type": "otp_disable", "password": "pw", "code": "000000"})
    assert (wrong_code["type"], wrong_code["code"]) == ("error", "invalid_otp")
    ok = await session.request({"type": "otp_disable", "id": "d", "password": "pw", "code": code})
    assert ok == {"type": "ok", "ref": "d"}
    await session.close()
    again = await open_session()
    assert (await again.login("alice"))["type"] == "login_ok"  # no code any more
    await again.close()


# --- a server that requires two-factor login -------------------------------------------------

FORBIDDEN_REQUESTS = [
    {"type": "send", "room": "lobby", "text": "hi"},
    {"type": "pm", "to": "bob", "e2e": e2e_body("d1")},
    {"type": "users"},
    {"type": "rooms"},
    {"type": "join", "room": "dev"},
    {"type": "history", "room": "lobby"},
    {"type": "devices"},
    {"type": "change_password", "password": "pw", "new_password": "a new passphrase 43"},
    {"type": "otp_disable", "password": "pw", "code": "123456"},
    {
        "type": "file_offer",
        "transfer": "0" * 32,
        "to": "bob",
        "name": "a.txt",
        "size": 3,
        "sha256": "e3" * 32,
    },
]


async def test_a_session_that_must_enrol_may_only_enrol(chat_settings, create_users):
    chat_settings.CHAT_REQUIRE_2FA = True
    await create_users("alice", "bob")
    session = await open_session()
    answer = await session.login("alice")
    assert answer["otp_enrolment_required"] is True
    assert answer["rooms"] == []
    assert await session.nothing()  # no users, no queued messages: not yet a full session
    for request in FORBIDDEN_REQUESTS:
        refused = await session.request({**request, "id": "f"})
        assert (refused["type"], refused["code"], refused["ref"]) == ("error", "forbidden", "f")
        assert "two-factor" in refused["message"]
    await session.send_chunk(FileChunk(bytes(16), 0, b"abc"))
    refused_chunk = await session.recv()
    assert (refused_chunk["type"], refused_chunk["code"]) == ("error", "forbidden")
    assert (await session.request({"type": "ping"}))["type"] == "pong"
    await session.close()


async def test_an_enrolled_session_is_then_served_in_full(chat_settings, create_users):
    chat_settings.CHAT_REQUIRE_2FA = True
    await create_users("alice", "bob")
    session = await open_session()
    await session.login("alice")
    await session.enable_two_factor()
    rooms = await session.recv()
    assert rooms["type"] == "rooms" and [r["name"] for r in rooms["rooms"]] == ["lobby"]
    assert (await session.find("users"))["online"] == ["alice"]
    ack = await session.request({"type": "send", "room": "lobby", "text": "enrolled"})
    assert ack["type"] == "ack"
    await session.close()


async def test_a_session_that_must_enrol_is_not_online_and_gets_no_pushes(
    chat_settings, create_users
):
    await create_users("alice", "bob")
    bob = await open_session()
    await bob.login("bob", remember="laptop")
    chat_settings.CHAT_REQUIRE_2FA = True  # from now on: bob logged in before
    alice = await open_session()
    await alice.login("alice")
    await bob.request({"type": "send", "room": "lobby", "text": "for the room"})
    sealed = e2e_body(bob.device, "for alice")
    await bob.request({"type": "pm", "to": "alice", "e2e": sealed})
    assert (await bob.request({"type": "users"}))["online"] == ["bob"]
    assert await alice.nothing()
    await alice.enable_two_factor()
    queued = await alice.find("private")  # the private message waited for the enrolment
    assert queued["e2e"] == sealed
    await alice.close()
    await bob.close()


async def test_register_and_resume_carry_the_enrolment_requirement(chat_settings, create_users):
    chat_settings.CHAT_REQUIRE_2FA = True
    session = await open_session()
    answer = await session.request(
        {
            "type": "register",
            "username": "newcomer",
            "password": "a long passphrase 42",
            "remember": "phone",
        }
    )
    assert answer["otp_enrolment_required"] is True
    await session.close()
    again = await open_session()
    resumed = await again.resume("newcomer", answer["token"])
    assert resumed["otp_enrolment_required"] is True
    await again.close()


async def test_an_account_with_two_factor_login_is_not_asked_to_enrol(chat_settings, create_users):
    await create_users("alice")
    secret, _ = await two_factor_alice()
    chat_settings.CHAT_REQUIRE_2FA = True
    session = await open_session()
    answer = await session.login("alice", otp=totp_code(secret, 1))
    assert "otp_enrolment_required" not in answer
    refused = await session.request({"type": "otp_disable", "password": "pw", "code": "000000"})
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    await session.close()
