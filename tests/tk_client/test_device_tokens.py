"""Device tokens on disk: one 0600 file in the client's folder, per server key and username."""

from __future__ import annotations

import json
import os
import stat

from tk_client.address import parse_address
from tk_client.config import config_dir
from tk_client.device_tokens import DEVICE_TOKENS_FILE, DeviceTokens, StoredDevice
from tk_client.known_servers import KnownServers
from tk_client.session import ChatSession

SERVER_A = "SHA256:" + "A" * 43
SERVER_B = "SHA256:" + "B" * 43


def test_a_token_is_kept_in_a_file_only_its_owner_can_read(tmp_path):
    tokens = DeviceTokens(tmp_path / "chat")
    tokens.put(SERVER_A, "alice", "dev1", "secret-token")

    assert stat.S_IMODE(os.stat(tokens.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tokens.path.parent).st_mode) == 0o700
    assert tokens.path.name == DEVICE_TOKENS_FILE


def test_tokens_are_kept_per_server_key_and_username(tmp_path):
    tokens = DeviceTokens(tmp_path)
    tokens.put(SERVER_A, "alice", "dev1", "token-a-alice")
    tokens.put(SERVER_A, "bob", "dev2", "token-a-bob")
    tokens.put(SERVER_B, "alice", "dev3", "token-b-alice")

    assert tokens.get(SERVER_A, "alice") == StoredDevice("dev1", "token-a-alice")
    assert tokens.get(SERVER_A, "bob") == StoredDevice("dev2", "token-a-bob")
    assert tokens.get(SERVER_B, "alice") == StoredDevice("dev3", "token-b-alice")
    assert tokens.get(SERVER_B, "bob") is None
    servers = json.loads(tokens.path.read_text())["servers"]
    assert sorted(servers) == [SERVER_A, SERVER_B]
    assert servers[SERVER_A]["alice"]["token"] == "token-a-alice"


def test_a_new_token_replaces_the_old_one(tmp_path):
    tokens = DeviceTokens(tmp_path)
    tokens.put(SERVER_A, "alice", "dev1", "old")
    tokens.put(SERVER_A, "alice", "dev4", "new")

    assert tokens.get(SERVER_A, "alice") == StoredDevice("dev4", "new")


def test_forget_removes_only_that_users_token(tmp_path):
    tokens = DeviceTokens(tmp_path)
    tokens.put(SERVER_A, "alice", "dev1", "t1")
    tokens.put(SERVER_A, "bob", "dev2", "t2")

    assert tokens.forget(SERVER_A, "alice")
    assert not tokens.forget(SERVER_A, "alice")
    assert tokens.get(SERVER_A, "alice") is None
    assert tokens.get(SERVER_A, "bob") is not None
    assert "t1" not in tokens.path.read_text()


def test_last_username_is_the_one_that_stored_a_token_last(tmp_path, monkeypatch):
    clock = iter([100.0, 200.0, 300.0])
    monkeypatch.setattr("tk_client.device_tokens.time.time", lambda: next(clock))
    tokens = DeviceTokens(tmp_path)
    assert tokens.last_username(SERVER_A) is None
    tokens.put(SERVER_A, "alice", "dev1", "t1")
    tokens.put(SERVER_A, "bob", "dev2", "t2")
    tokens.put(SERVER_B, "carol", "dev3", "t3")

    assert tokens.last_username(SERVER_A) == "bob"
    tokens.forget(SERVER_A, "bob")
    assert tokens.last_username(SERVER_A) == "alice"
    assert tokens.last_username(SERVER_B) == "carol"


def test_a_damaged_file_reads_as_no_tokens_and_is_replaced_on_the_next_put(tmp_path):
    tokens = DeviceTokens(tmp_path)
    tokens.path.write_text("{not json")

    assert tokens.get(SERVER_A, "alice") is None
    tokens.put(SERVER_A, "alice", "dev1", "t1")
    assert tokens.get(SERVER_A, "alice") == StoredDevice("dev1", "t1")


def test_the_token_never_shows_in_a_repr(tmp_path):
    stored = StoredDevice("dev1", "secret-token")

    assert "secret-token" not in repr(stored)
    assert "secret-token" not in repr(DeviceTokens(tmp_path))


def test_the_default_folder_is_the_clients_folder(config_home):
    assert DeviceTokens().path == config_dir() / DEVICE_TOKENS_FILE


def test_a_session_keeps_tokens_beside_its_pinned_keys(tmp_path):
    known = KnownServers(tmp_path / "somewhere" / "known_servers")
    session = ChatSession(parse_address("ws://127.0.0.1:1"), known)

    assert session.device_tokens.path == tmp_path / "somewhere" / DEVICE_TOKENS_FILE
