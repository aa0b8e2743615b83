"""The consumer's transport duties: origin check, handshake, records, deadlines, limits."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

import chatproto.connection
from chatproto import crypto_utils
from chatproto.limits import MAX_RECORD_SIZE
from tests.protocol_client.inprocess import InProcessClient, communicator, open_session

pytestmark = pytest.mark.django_db(transaction=True)


async def test_connection_without_origin_is_refused(chat_settings):
    comm = communicator(origin=None)
    connected, _ = await comm.connect()
    assert not connected


async def test_connection_from_a_foreign_origin_is_refused(chat_settings):
    comm = communicator(origin=b"https://evil.example")
    connected, _ = await comm.connect()
    assert not connected


async def test_hello_carries_the_server_key_and_a_fresh_ephemeral_key(chat_settings):
    first = InProcessClient(communicator())
    second = InProcessClient(communicator())
    hellos = []
    for session in (first, second):
        await session.connect()
        hellos.append(json.loads(await session.comm.receive_from()))
        await session.comm.disconnect()
    key = crypto_utils.load_private_key(chat_settings.CHAT_SERVER_KEY)
    assert {h["type"] for h in hellos} == {"hello"}
    assert {h["version"] for h in hellos} == {1}
    assert hellos[0]["server_key"] == hellos[1]["server_key"]
    assert crypto_utils.fingerprint(base64.b64decode(hellos[0]["server_key"])) == (
        crypto_utils.fingerprint(key)
    )
    assert hellos[0]["eph"] != hellos[1]["eph"]


async def test_greeting_announces_server_registration_and_limits(chat_settings):
    chat_settings.CHAT_SERVER_NAME = "Acme chat"
    chat_settings.CHAT_MAX_FILE_SIZE = 12345
    session = await open_session()
    assert session.greeting == {
        "type": "greeting",
        "server": "Acme chat",
        "text": chat_settings.CHAT_GREETING,
        "registration": True,
        "limits": {"max_text": 4000, "max_file_size": 12345},
    }
    await session.close()


async def test_bad_key_message_closes_4000_without_a_word(chat_settings):
    session = InProcessClient(communicator())
    await session.connect()
    await session.comm.receive_from()
    await session.comm.send_to(
        text_data=json.dumps({"type": "key", "version": 1, "key": "AAAA", "eph": "AAAA"})
    )
    assert await session.expect_close() == 4000


async def test_binary_message_before_the_handshake_closes_4000(chat_settings):
    session = InProcessClient(communicator())
    await session.connect()
    await session.comm.receive_from()
    await session.comm.send_to(bytes_data=b"\x01" * 80)
    assert await session.expect_close() == 4000


async def test_text_message_after_the_handshake_closes_4002(chat_settings):
    session = await open_session()
    await session.comm.send_to(text_data='{"type": "ping"}')
    assert await session.expect_close() == 4002


async def test_tampered_record_closes_4002(chat_settings):
    session = await open_session()
    record = bytearray(session.protocol.seal({"type": "ping", "id": "p"}))
    record[20] ^= 0x01
    await session.send_bytes(bytes(record))
    assert await session.expect_close() == 4002


async def test_replayed_record_closes_4002(chat_settings):
    session = await open_session()
    record = await session.send({"type": "ping", "id": "p"})
    assert (await session.recv())["type"] == "pong"
    await session.send_bytes(record)
    assert await session.expect_close() == 4002


async def test_record_over_one_mebibyte_closes_1009(chat_settings):
    session = await open_session()
    await session.send_bytes(b"\x01" + bytes(MAX_RECORD_SIZE))
    assert await session.expect_close() == 1009


async def test_missing_the_key_deadline_closes_4000(chat_settings, monkeypatch):
    monkeypatch.setattr(chatproto.connection, "KEY_DEADLINE_SECONDS", 0.2)
    session = InProcessClient(communicator())
    await session.connect()
    await session.comm.receive_from()
    assert await session.expect_close() == 4000


async def test_deadlines_are_timers_not_tasks_until_they_pass(chat_settings):
    def deadline_tasks() -> list[str]:
        names = [t.get_coro().__qualname__ for t in asyncio.all_tasks()]
        return [name for name in names if name.startswith("ChatConsumer.") and "deadline" in name]

    waiting = InProcessClient(communicator())
    await waiting.connect()
    await waiting.comm.receive_from()  # the hello: the key deadline runs
    greeted = await open_session()  # the greeting: the login deadline runs
    assert deadline_tasks() == []
    for session in (waiting, greeted):
        await session.close()


async def test_missing_the_login_deadline_closes_4008(chat_settings, monkeypatch):
    monkeypatch.setattr(chatproto.connection, "LOGIN_DEADLINE_SECONDS", 0.3)
    session = await open_session()
    assert await session.expect_close() == 4008


async def test_logging_in_in_time_cancels_the_login_deadline(
    chat_settings, create_users, monkeypatch
):
    monkeypatch.setattr(chatproto.connection, "LOGIN_DEADLINE_SECONDS", 0.5)
    await create_users("alice")
    session = await open_session()
    await session.login("alice")
    assert await session.nothing(0.8)
    assert (await session.request({"type": "ping"}))["type"] == "pong"
    await session.close()


async def test_too_many_handshakes_from_one_address_close_4008(chat_settings):
    chat_settings.CHAT_HANDSHAKE_RATE = (2, 60)
    for _ in range(2):
        session = await open_session(client=("10.1.1.1", 5000))
        await session.close()
    refused = InProcessClient(communicator(client=("10.1.1.1", 5001)))
    await refused.connect()
    assert await refused.expect_close() == 4008
    other = await open_session(client=("10.1.1.2", 5000))  # another address is not affected
    await other.close()


async def test_tenth_bad_request_closes_4008(chat_settings):
    session = await open_session()
    for _ in range(9):
        answer = await session.request({"type": "no_such_type"})
        assert answer["code"] == "bad_request"
    await session.send({"type": "no_such_type", "id": "last"})
    assert (await session.recv())["code"] == "bad_request"
    assert await session.expect_close() == 4008


async def test_a_request_id_that_is_not_a_short_string_gets_bad_request_without_ref(chat_settings):
    session = await open_session()
    for bad_id in (7, "", "x" * 65):
        await session.send({"type": "ping", "id": bad_id})
        answer = await session.recv()
        assert answer["type"] == "error" and answer["code"] == "bad_request"
        assert "ref" not in answer
    await session.close()
