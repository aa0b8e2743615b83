import json
import stat

import pytest

from chatproto.e2e import conversation_id
from tk_client.e2e.errors import DecryptionFailed, StoreError
from tk_client.e2e.keyfile import PICKLE_KEY_FILE, load_or_create_pickle_key
from tk_client.e2e.store import CryptoStore

from .helpers import make_user, olm_body, published, send, share_room_key

ROOM = conversation_id(room="plans")


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_the_pickle_key_file_is_made_once_with_mode_0600(tmp_path):
    key = load_or_create_pickle_key(tmp_path)

    assert len(key) == 32
    assert mode(tmp_path / PICKLE_KEY_FILE) == 0o600
    assert load_or_create_pickle_key(tmp_path) == key


def test_a_pickle_key_file_others_can_read_is_refused_with_what_to_do(tmp_path):
    load_or_create_pickle_key(tmp_path)
    (tmp_path / PICKLE_KEY_FILE).chmod(0o644)

    with pytest.raises(StoreError, match="chmod 600"):
        load_or_create_pickle_key(tmp_path)


def test_a_pickle_key_file_of_the_wrong_size_is_refused(tmp_path):
    path = tmp_path / PICKLE_KEY_FILE
    path.write_bytes(b"short")
    path.chmod(0o600)

    with pytest.raises(StoreError, match="does not hold an end-to-end pickle key"):
        load_or_create_pickle_key(tmp_path)


def test_a_store_reloaded_from_disk_keeps_every_session_and_contact(tmp_path):
    key = load_or_create_pickle_key(tmp_path)
    alice, bob = make_user("alice"), make_user("bob", now=5.0)
    group, _ = alice.groups.outbound_for(ROOM, 0.0, {"alice", "bob"}, {("bob", "DEV1")})
    share_room_key(alice, group, bob)
    bob.contacts.observe("alice", alice.identity.ed25519)
    bob.device_list_version = 7
    path = tmp_path / "bob.e2e.json"

    bob.save(path, key)
    reloaded = CryptoStore.load(path, key)

    assert mode(path) == 0o600
    assert reloaded.device.curve25519 == bob.device.curve25519
    assert reloaded.identity.ed25519 == bob.identity.ed25519
    assert (reloaded.created_at, reloaded.device_list_version) == (5.0, 7)
    assert reloaded.contacts.get("alice") == bob.contacts.get("alice")
    e2e = alice.groups.encrypt(group, "after reload", "alice", "DEV1", alice.device.curve25519)
    assert reloaded.groups.decrypt(ROOM, "alice", e2e, message_id="7").text == "after reload"
    again = CryptoStore.from_json(reloaded.to_json(key), key)
    with pytest.raises(DecryptionFailed):  # what was seen is remembered too
        again.groups.decrypt(ROOM, "alice", e2e, message_id="8")
    body = olm_body(alice, bob, {"type": "ping"})  # the Olm session survived too
    assert reloaded.olm.decrypt(published(alice), body).payload["type"] == "ping"


def test_an_outbound_session_reloaded_keeps_its_count_and_recipients(tmp_path):
    key = load_or_create_pickle_key(tmp_path)
    alice, bob = make_user("alice"), make_user("bob")
    group, _ = alice.groups.outbound_for(ROOM, 3.0, {"alice", "bob"}, set())
    share_room_key(alice, group, bob)
    alice.groups.encrypt(group, "one", "alice", "DEV1", alice.device.curve25519)
    alice.save(tmp_path / "alice.json", key)

    again = CryptoStore.load(tmp_path / "alice.json", key).groups.outbound[ROOM]

    assert (again.session_id, again.messages, again.created_at) == (group.session_id, 1, 3.0)
    assert again.shared_with == {("bob", "DEV1")}


def test_the_store_file_holds_no_key_or_plaintext(tmp_path):
    key = load_or_create_pickle_key(tmp_path)
    alice, bob = make_user("alice"), make_user("bob")
    send(alice, bob, {"type": "note", "text": "a very secret word"})
    alice.save(tmp_path / "alice.json", key)

    text = (tmp_path / "alice.json").read_text()

    assert "a very secret word" not in text
    assert alice.identity.share("t", alice.device.device_keys())["user_key"] not in text
    assert json.loads(text)["format"] == 1


def test_a_store_opened_with_another_pickle_key_gives_one_clear_error(tmp_path):
    alice = make_user("alice")
    alice.save(tmp_path / "alice.json", load_or_create_pickle_key(tmp_path))
    other_key = load_or_create_pickle_key(tmp_path / "another-client")

    with pytest.raises(StoreError) as failure:
        CryptoStore.load(tmp_path / "alice.json", other_key)
    assert "cannot be opened with the key in e2e_pickle.key" in str(failure.value)
    assert "restore the key file" in str(failure.value)


def test_a_missing_store_says_it_cannot_be_read(tmp_path):
    with pytest.raises(StoreError, match="cannot be read"):
        CryptoStore.load(tmp_path / "absent.json", b"k" * 32)


def test_the_device_lists_are_kept_and_their_signatures_checked_again_when_read(tmp_path):
    from tk_client.e2e.directory import UserKeys

    from .test_engine import keys_answer

    key = load_or_create_pickle_key(tmp_path)
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    for user in (bob, carol):
        entry = keys_answer("r", user)["users"][user.device.user]
        alice.directory.take(user.device.user, UserKeys.from_wire(user.device.user, entry))
    alice.directory.mark_changed(["carol"])
    alice.fallback_published_at = 1234.5
    state = json.loads(alice.to_json(key))
    (carols_device,) = state["directory"]["users"]["carol"]["devices"]
    carols_device["curve25519"] = bob.device.curve25519  # the file was edited: it no longer checks

    reloaded = CryptoStore.from_json(json.dumps(state), key)

    assert reloaded.directory.device("bob", "DEV1") == alice.directory.device("bob", "DEV1")
    assert reloaded.directory.user_key("bob") == bob.identity.ed25519
    assert reloaded.directory.device("carol", "DEV1") is None
    assert reloaded.directory.stale == {"carol"}  # still to be fetched again
    assert reloaded.fallback_published_at == 1234.5


def test_a_store_written_before_device_lists_were_kept_still_opens(tmp_path):
    key = load_or_create_pickle_key(tmp_path)
    alice = make_user("alice")
    state = json.loads(alice.to_json(key))
    del state["directory"], state["fallback_published_at"]
    assert state["format"] == 1

    reloaded = CryptoStore.from_json(json.dumps(state), key)

    assert reloaded.directory.users == {} and reloaded.fallback_published_at is None
    assert reloaded.device.ed25519 == alice.device.ed25519
