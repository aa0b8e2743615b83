"""Service functions and helpers that the consumer relies on."""

from __future__ import annotations

import datetime
import io
import os
import stat

import pytest
from django.core.management import call_command

from chat import services, storage
from chatproto import crypto_utils
from chatproto.errors import CryptoError
from chatproto.framing import encoded_size


def test_timestamps_are_utc_with_milliseconds():
    when = datetime.datetime(
        2025, 3, 4, 5, 6, 7, 891234, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    assert services.format_ts(when) == "2025-03-04T03:06:07.891Z"


def _history(count: int, size: int) -> dict:
    messages = [
        {
            "msg_id": i,
            "room": "lobby",
            "from": "a",
            "text": "x" * size,
            "ts": "2025-01-01T00:00:00.000Z",
        }
        for i in range(1, count + 1)
    ]
    return {"type": "history", "ref": "r", "room": "lobby", "messages": messages, "has_more": False}


def test_history_that_fits_is_left_alone():
    answer = _history(3, 10)
    assert services.fit_history(answer, budget=10_000) == answer


@pytest.mark.parametrize("budget", [300, 500, 777, 1000])
def test_history_is_cut_from_the_oldest_end_to_fit_exactly(budget):
    answer = services.fit_history(_history(20, 40), budget=budget)
    assert encoded_size(answer) <= budget
    assert answer["has_more"] is True
    ids = [m["msg_id"] for m in answer["messages"]]
    assert ids == list(range(21 - len(ids), 21))
    # One more message would not have fitted.
    bigger = dict(answer, messages=_history(20, 40)["messages"][-(len(ids) + 1) :])
    assert encoded_size(bigger) > budget


def test_message_bodies_round_trip_and_are_opaque(settings, tmp_path):
    settings.CHAT_STORAGE_KEY = tmp_path / "storage.key"
    storage.storage_key(create=True)  # as the server's start does
    token = storage.BodyCipher().encrypt("hello \u00e9")
    assert "hello" not in token
    assert storage.BodyCipher().decrypt(token) == "hello \u00e9"
    assert stat.S_IMODE(os.stat(tmp_path / "storage.key").st_mode) == 0o600
    assert len((tmp_path / "storage.key").read_bytes()) == 64
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    with pytest.raises(CryptoError):
        storage.BodyCipher().decrypt(tampered)


def test_a_storage_key_readable_by_others_is_refused(settings, tmp_path):
    path = tmp_path / "storage.key"
    path.write_bytes(os.urandom(64))
    path.chmod(0o644)
    settings.CHAT_STORAGE_KEY = path
    with pytest.raises(storage.StorageKeyError, match="chmod 600"):
        storage.BodyCipher().encrypt("x")


def test_a_storage_key_gone_at_run_time_is_an_error_not_replaced(settings, tmp_path):
    """A new key could not read what the old one stored: only the server's start makes one."""
    settings.CHAT_STORAGE_KEY = tmp_path / "storage.key"
    storage.storage_key(create=True)
    token = storage.BodyCipher().encrypt("kept")
    (tmp_path / "storage.key").unlink()
    with pytest.raises(storage.StorageKeyError, match="restore it from your backup"):
        storage.BodyCipher().encrypt("lost")
    assert not (tmp_path / "storage.key").exists()
    with pytest.raises(storage.StorageKeyError):
        storage.BodyCipher().decrypt(token)


def test_server_key_command_prints_path_and_fingerprint(settings, tmp_path):
    settings.CHAT_SERVER_KEY = tmp_path / "server_key.pem"
    out = io.StringIO()
    call_command("server_key", stdout=out)
    key = crypto_utils.load_private_key(tmp_path / "server_key.pem")
    assert f"server key: {tmp_path / 'server_key.pem'}" in out.getvalue()
    assert f"fingerprint: {crypto_utils.fingerprint(key)}" in out.getvalue()


def test_server_key_rotation_keeps_the_old_key_beside_the_new(settings, tmp_path):
    path = tmp_path / "server_key.pem"
    settings.CHAT_SERVER_KEY = path
    old = crypto_utils.fingerprint(crypto_utils.load_private_key(path))
    out = io.StringIO()
    call_command("server_key", "--rotate", stdout=out)
    new = crypto_utils.fingerprint(crypto_utils.load_private_key(path))
    assert new != old and f"fingerprint: {new}" in out.getvalue()
    (kept,) = tmp_path.glob("server_key.pem.old-*")
    assert crypto_utils.fingerprint(crypto_utils.load_private_key(kept)) == old
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
