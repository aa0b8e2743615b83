"""The key backup and the recovery key (section 4.13), engine to engine through a relay
that also keeps a backup as the server does (the real server: test_e2e_backup_live.py)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import vodozemac

from chatproto import backup as wire
from chatproto import unpadded_b64
from chatproto.e2e import canonical_json
from tk_client.e2e.backup import (
    BACKUP_KEY_SHARE,
    BACKUP_UNREADABLE,
    KEY_MISMATCH,
    NO_BACKUP,
    NOT_CONNECTED,
    NOT_SIGNED,
    NOT_THE_KEY_SHOWN,
    OLD_IDENTITY,
    RESET_NEEDS_CREDENTIALS,
    UNCERTAIN,
    BackupChanged,
    BackupEnabled,
    BackupProblem,
    BackupRecovered,
    BackupRestored,
    BackupStatus,
    BackupStatusChanged,
    KeyBackup,
    RecoveryKeyTypo,
    session_id_before,
)
from tk_client.e2e.engine import E2EEngine, NotShown
from tk_client.e2e.errors import E2EError
from tk_client.e2e.keyfile import load_or_create_pickle_key
from tk_client.e2e.keys import DeviceKeys
from tk_client.e2e.link import E2ELink
from tk_client.e2e.megolm import Undecryptable
from tk_client.e2e.store import CryptoStore
from tk_client.e2e.verification import CodesReady, VerificationRequested
from tk_client.events import NotConnected, RequestState, RequestStatus

from .helpers import add_device, make_user, olm_body
from .test_engine import ROOM, Relay, events_of, reset_from, room_messages, shown
from .test_link import SERVER, FakeSession, answer

PASSWORD = "alice-pw"  # the fake server's password for every user
LATE = 2.0e9  # a device made after every test message (2030): "sent before this device"
ALICE1, ALICE2, BOB = ("alice", "DEV1"), ("alice", "DEV2"), ("bob", "DEV1")


class BackupRelay(Relay):
    """:class:`Relay` with section 4.13's requests, as the server answers them."""

    def __init__(self) -> None:
        super().__init__()
        self.backups: dict[str, dict[str, Any]] = {}  # user -> the current backup object
        self.blobs: dict[str, dict[str, dict[str, Any]]] = {}  # user -> session id -> entry
        self.published_from: dict[str, str] = {}
        self.refusal = "conflict"  # the code a refused backup request gets (see refuse)

    def _handle(self, peer: tuple[str, str], request: dict[str, Any]) -> None:
        kind, ref = request["type"], request.get("id")
        user, _device = peer
        if not kind.startswith("backup_"):
            super()._handle(peer, request)
        elif kind in self.refuse:
            self.refuse.remove(kind)
            self.push(peer, {"type": "error", "ref": ref, "code": self.refusal})
        elif kind == "backup_get":
            current = self.backups.get(user)
            answer: dict[str, Any] = {"backup": current, "created": None, "device": None}
            if current is not None:
                answer.update(created="2030-01-01T00:00:00.000Z", device=self.published_from[user])
            self.push(peer, {"type": "backup", "ref": ref, **answer})
        elif kind == "backup_publish":
            self.push(peer, self._publish(peer, request))
        elif kind == "backup_put":
            current = self.backups.get(user)
            if current is None or request["version"] != current["version"]:
                self.push(peer, {"type": "error", "ref": ref, "code": "conflict"})
                return
            assert 1 <= len(request["sessions"]) <= wire.MAX_SESSIONS_PER_PUT
            kept = self.blobs.setdefault(user, {})
            for item in request["sessions"]:
                known = kept.get(item["session_id"])
                if known is None or item["first_index"] < known["first_index"]:
                    kept[item["session_id"]] = item
            self.push(peer, {"type": "backup_stored", "ref": ref, "stored": 0, "count": len(kept)})
        elif kind == "backup_fetch":
            current = self.backups.get(user)
            if current is None or request["version"] != current["version"]:
                self.push(peer, {"type": "error", "ref": ref, "code": "conflict"})
                return
            ordered = sorted(self.blobs.get(user, {}).items())
            after = request.get("after")
            rest = [item for sid, item in ordered if after is None or sid > after]
            page = rest[: request.get("limit", 500)]
            more = len(rest) > len(page)
            page_answer: dict[str, Any] = {"version": current["version"], "sessions": page}
            page_answer["next"] = page[-1]["session_id"] if more else None
            self.push(peer, {"type": "backup_sessions", "ref": ref, **page_answer})

    def _publish(self, peer: tuple[str, str], request: dict[str, Any]) -> dict[str, Any]:
        user, device = peer
        ref = request["id"]
        backup = request["backup"]
        current = self.backups.get(user)
        user_key = self.user_keys[user]["ed25519"]
        if not wire.backup_signature_valid(backup, user_key):
            return {"type": "error", "ref": ref, "code": "bad_request"}
        if current is not None and backup["version"] == current["version"]:
            if backup["public_key"] != current["public_key"]:
                return {"type": "error", "ref": ref, "code": "conflict"}
            self.backups[user] = backup  # an update: kept, not announced
            return {"type": "ok", "ref": ref}
        if backup["version"] != (current["version"] + 1 if current else 1):
            return {"type": "error", "ref": ref, "code": "conflict"}
        if current is not None and request.get("password") != PASSWORD:
            return {"type": "error", "ref": ref, "code": "invalid_credentials"}
        self.backups[user], self.blobs[user] = backup, {}
        self.published_from[user] = device
        for other in self.users_devices(user):
            if other != peer:
                changed = {"version": backup["version"], "device": device, "name": "laptop"}
                self.push(other, {"type": "backup_changed", **changed})
        return {"type": "ok", "ref": ref}


@pytest.fixture
def relay() -> BackupRelay:
    return BackupRelay()


def turn_on_backup(relay: BackupRelay, engine: E2EEngine, peer=ALICE1, password=None) -> str:
    """The user sets the backup up on ``engine``'s device; the recovery key shown."""
    shown_key = engine.begin_backup_setup()
    typed = shown_key.replace(" ", "").lower()  # as someone types it back
    relay.run(peer, engine.finish_backup_setup(typed, password).requests)
    return shown_key


def alice_and_bob_talked(relay: BackupRelay, messages: int = 2):
    """alice (one device) and bob; ``messages`` room messages from each of them."""
    alice, bob = make_user("alice"), make_user("bob")
    alice_engine = relay.connect(alice, publish_user_key=True)
    bob_engine = relay.connect(bob, publish_user_key=True)
    relay.rooms["plans"] = ["alice", "bob"]
    for n in range(messages):
        relay.run(BOB, bob_engine.encrypt_for(ROOM, ["alice"], f"bob {n}", 1.0).requests)
        relay.run(ALICE1, alice_engine.encrypt_for(ROOM, ["bob"], f"alice {n}", 1.0).requests)
    return alice, bob, alice_engine, bob_engine


def new_alice_device(
    relay: BackupRelay, alice: CryptoStore, kept: wire.BackupKey | None = None
) -> tuple[CryptoStore, E2EEngine]:
    """alice's new device, unsigned, made after the messages; it sees the history. With
    ``kept``, it holds that backup key (version 1) from the start."""
    store = CryptoStore.create("alice", "DEV2", LATE)
    if kept is not None:
        store.backup.keep(kept, 1)
    engine = relay.connect(store)
    relay.announce("alice")
    for number in range(1, len(room_messages(relay)) + 1):
        request = room_messages(relay)[number - 1]
        sender = next(p for p, r in relay.sent if r is request)[0]
        item = {"type": "message", "room": "plans", "from": sender, "msg_id": number}
        relay.push(ALICE2, {**item, "ts": "2030-01-01T00:00:00.000Z", "e2e": request["e2e"]})
    relay.run(ALICE2, [])
    return store, engine


def puts(relay: BackupRelay) -> list[dict[str, Any]]:
    return [r for _, r in relay.sent if r["type"] == "backup_put"]


# --- set-up and upload ---------------------------------------------------------------------


def test_set_up_publishes_a_backup_signed_by_the_user_key_and_uploads_every_session(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    assert alice_engine.backup.status is BackupStatus.NONE

    shown_key = turn_on_backup(relay, alice_engine)

    backup = relay.backups["alice"]
    assert backup["version"] == 1
    assert wire.backup_signature_valid(backup, alice.identity.ed25519)
    assert (
        backup["public_key"]
        == wire.BackupKey.from_recovery_key(wire.parse_recovery_key(shown_key)).public_key
    )
    assert BackupEnabled(1) in relay.events[ALICE1]
    assert alice_engine.backup.status is BackupStatus.ON
    held = {session_id for (_, _, session_id) in alice.groups.inbound}
    assert set(relay.blobs["alice"]) == held and len(held) == 2  # bob's and alice's own
    assert set(alice.backup.uploaded) == held
    assert shown_key.replace(" ", "") not in json.dumps([r for _, r in relay.sent])


def test_sessions_go_up_in_batches_of_at_most_a_hundred(relay):
    alice = make_user("alice")
    engine = relay.connect(alice, publish_user_key=True)
    for _ in range(230):
        session = vodozemac.InboundGroupSession(
            vodozemac.SessionKey(vodozemac.GroupSession().session_key.to_base64())
        )
        alice.groups.add_inbound(ROOM, "c" * 43, session, "bob", "DEV1", "e" * 43)

    turn_on_backup(relay, engine)

    assert [len(r["sessions"]) for r in puts(relay)] == [100, 100, 30]
    assert len(relay.blobs["alice"]) == 230


def test_a_key_accepted_later_is_uploaded_in_the_same_call(relay):
    alice, bob, alice_engine, bob_engine = alice_and_bob_talked(relay, messages=0)
    turn_on_backup(relay, alice_engine)
    assert puts(relay) == []

    out = bob_engine.encrypt_for(ROOM, ["alice"], "new session", 1.0)
    relay.run(BOB, out.requests)

    (put,) = puts(relay)
    (bobs,) = [sid for (_, key, sid) in alice.groups.inbound if key == bob.device.curve25519]
    assert [s["session_id"] for s in put["sessions"]] == [bobs]


def test_the_key_typed_back_must_be_the_one_shown(relay):
    alice = make_user("alice")
    engine = relay.connect(alice, publish_user_key=True)
    engine.begin_backup_setup()

    with pytest.raises(ValueError, match="not the recovery key shown"):
        engine.finish_backup_setup(wire.format_recovery_key(bytes(32)), None)
    assert NOT_THE_KEY_SHOWN.startswith("That is not")
    assert "alice" not in relay.backups


def test_the_key_typed_back_is_read_as_a_recovery_key_is(relay, monkeypatch):
    monkeypatch.setattr(wire, "new_recovery_key", lambda: bytes([7]) * 32)
    alice = make_user("alice")
    engine = relay.connect(alice, publish_user_key=True)
    shown_key = engine.begin_backup_setup()
    assert all(letter in shown_key for letter in "OIB")
    typed = shown_key.replace("O", "0").replace("I", "1").replace("B", "8").replace(" ", "-")

    relay.run(ALICE1, engine.finish_backup_setup(typed, None).requests)

    assert relay.backups["alice"]["version"] == 1


def test_a_cancelled_set_up_forgets_the_recovery_key_and_publishes_nothing(relay):
    _alice, _, alice_engine, _ = alice_and_bob_talked(relay, messages=0)
    shown_key = alice_engine.begin_backup_setup()

    alice_engine.cancel_backup_setup()

    assert alice_engine.backup._secret is None
    with pytest.raises(ValueError, match="start the key backup set-up again"):
        alice_engine.finish_backup_setup(shown_key, None)
    assert "alice" not in relay.backups


def test_a_set_up_cancelled_while_it_waits_for_the_backups_state_publishes_nothing():
    store = make_user("alice")
    ids = (f"r{n}" for n in itertools.count())
    backup = KeyBackup(store, lambda: next(ids))
    (get,) = backup.login().requests  # not answered yet: the status is unknown
    shown_key = backup.begin_setup()
    backup.finish_setup(shown_key, PASSWORD)  # waits for backup_get

    backup.cancel_setup()
    step = backup.receive({"type": "backup", "ref": get["id"], "backup": None})

    assert step.requests == [] and backup._setup_password is None


@pytest.mark.parametrize("refusal", ["conflict", "invalid_credentials", None])
def test_the_recovery_key_is_forgotten_once_the_set_up_ends_either_way(relay, refusal):
    _alice, _, alice_engine, _ = alice_and_bob_talked(relay, messages=0)
    if refusal is not None:
        relay.refuse.append("backup_publish")
        relay.refusal = refusal

    shown_key = turn_on_backup(relay, alice_engine)

    assert alice_engine.backup._secret is None
    assert ("alice" in relay.backups) is (refusal is None)
    with pytest.raises(ValueError, match="start the key backup set-up again"):
        alice_engine.finish_backup_setup(shown_key, None)  # the same key is not taken again


def test_an_unapproved_device_cannot_set_up_a_backup(relay):
    store = CryptoStore.create("alice", "DEV2", 0.0)
    engine = relay.connect(store)

    with pytest.raises(E2EError) as refused:
        engine.begin_backup_setup()
    assert str(refused.value) == NOT_SIGNED


def test_a_reset_needs_the_password_and_tells_the_other_devices(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    phone = add_device(alice, "DEV2", approved=True)
    relay.connect(phone)
    relay.announce("alice")
    turn_on_backup(relay, alice_engine)
    phone_engine = relay.engines[ALICE2]
    assert phone.backup.version == 1  # shared with backup_key_share

    with pytest.raises(ValueError) as missing:
        phone_engine.finish_backup_setup(phone_engine.begin_backup_setup(), None)
    assert str(missing.value) == RESET_NEEDS_CREDENTIALS
    shown_key = phone_engine.begin_backup_setup()
    relay.run(ALICE2, phone_engine.finish_backup_setup(shown_key, "wrong").requests)
    assert [e.text for e in events_of(relay, ALICE2, BackupProblem)] == [
        "The password is wrong: the key backup was not changed."
    ]
    shown_key = phone_engine.begin_backup_setup()  # a refused publish ends the set-up: again
    relay.run(ALICE2, phone_engine.finish_backup_setup(shown_key, PASSWORD).requests)

    assert relay.backups["alice"]["version"] == 2
    (changed,) = events_of(relay, ALICE1, BackupChanged)
    assert changed.text == (
        "Your key backup was reset from laptop (DEV2). Your old recovery key no longer works."
    )
    assert alice.backup.version == 2  # the new key came from the phone
    assert alice_engine.backup.status is BackupStatus.ON
    (first,) = [e for e in relay.events[ALICE2] if isinstance(e, BackupChanged)][:1]
    assert first.text == "Key backup was turned on from laptop (DEV1)."  # not a reset


def test_backup_changed_drops_the_old_key_until_the_new_one_comes(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    elsewhere = wire.BackupKey.from_recovery_key(bytes(32))
    relay.backups["alice"] = signed_backup(alice, 2, elsewhere)  # a reset on another device

    push = {"type": "backup_changed", "version": 2, "device": "DEV9", "name": "tablet"}
    relay.push(ALICE1, push)
    relay.run(ALICE1, [])

    assert alice.backup.key is None and alice.backup.uploaded == {}
    assert alice_engine.backup.status is BackupStatus.NEEDS_KEY
    assert events_of(relay, ALICE1, BackupChanged) == [BackupChanged(2, "DEV9", "tablet", False)]


def test_the_servers_word_alone_does_not_make_a_device_forget_its_backup_key(relay):
    alice, _, alice_engine, bob_engine = alice_and_bob_talked(relay, messages=0)
    turn_on_backup(relay, alice_engine)
    key, real = alice.backup.key, relay.backups["alice"]
    forged = {"type": "backup_changed", "version": 9, "device": "DEV9", "name": "tablet"}
    relay.push(ALICE1, forged)  # the backup on the server is still version 1
    relay.run(ALICE1, [])
    assert alice.backup.key == key and alice_engine.backup.status is BackupStatus.ON

    unsigned = {**real, "version": 2, "public_key": "x" * 43}  # made by no holder of the user key
    for said in (unsigned, None):
        relay.backups["alice"] = said
        relay.run(ALICE1, alice_engine.backup.login().requests)
        assert alice.backup.key == key and alice_engine.backup.status is not BackupStatus.ON

    relay.backups["alice"] = real
    relay.run(ALICE1, alice_engine.backup.login().requests)
    assert alice_engine.backup.status is BackupStatus.ON
    relay.run(BOB, bob_engine.encrypt_for(ROOM, ["alice"], "still backed up", 1.0).requests)
    assert len(puts(relay)) == 1


def test_a_refused_upload_for_a_reset_backup_fetches_it_again(relay):
    _alice, _bob, alice_engine, bob_engine = alice_and_bob_talked(relay, messages=0)
    turn_on_backup(relay, alice_engine)
    gets = sum(r["type"] == "backup_get" for _, r in relay.sent)
    relay.refuse.append("backup_put")

    relay.run(BOB, bob_engine.encrypt_for(ROOM, ["alice"], "one", 1.0).requests)

    assert sum(r["type"] == "backup_get" for _, r in relay.sent) == gets + 1
    assert "alice" in relay.backups and relay.blobs["alice"] == {}


def test_an_upload_the_server_refuses_is_not_sent_again_at_once(relay):
    _alice, _bob, alice_engine, bob_engine = alice_and_bob_talked(relay, messages=0)
    turn_on_backup(relay, alice_engine)
    relay.refusal = "too_large"  # the backup holds all it may: every put is refused
    relay.refuse.extend(["backup_put"] * 20)

    relay.run(BOB, bob_engine.encrypt_for(ROOM, ["alice"], "one", 1.0).requests)

    assert len(puts(relay)) == 1  # not again and again: with the next session, or login
    relay.run(ALICE1, alice_engine.encrypt_for(ROOM, ["bob"], "two", 1.0).requests)
    assert len(puts(relay)) == 2


# --- the backup key with an approval, and restoring ----------------------------------------


def approve(relay: BackupRelay, old: E2EEngine, new: E2EEngine) -> None:
    relay.run(ALICE1, old.start_verification("alice", "DEV2", "device", 1.0).requests)
    (asked,) = events_of(relay, ALICE2, VerificationRequested)
    relay.run(ALICE2, new.accept_verification(asked.txn, 2.0).requests)
    assert events_of(relay, ALICE1, CodesReady) and events_of(relay, ALICE2, CodesReady)
    relay.run(ALICE1, old.confirm_verification(asked.txn, 3.0).requests)
    relay.run(ALICE2, new.confirm_verification(asked.txn, 4.0).requests)


def test_an_approval_shares_the_backup_key_and_the_new_device_reads_the_history(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)
    before = Undecryptable.BEFORE_THIS_DEVICE_NO_BACKUP_KEY
    assert {e.reason for e in events_of(relay, ALICE2, NotShown)} == {before}

    approve(relay, alice_engine, phone_engine)

    assert phone.backup.key == alice.backup.key and phone.backup.version == 1
    assert phone_engine.backup.status is BackupStatus.ON
    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(2, 0)]
    assert sorted(shown(relay, ALICE2)) == ["alice 0", "alice 1", "bob 0", "bob 1"]


def test_a_blob_altered_on_the_server_is_skipped_and_counted_and_the_rest_restored(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    blobs = relay.blobs["alice"]
    first, second = sorted(blobs)
    other = blobs[second]["blob"]
    blobs[first] = {**blobs[first], "blob": other}  # moved from another slot
    phone, phone_engine = new_alice_device(relay, alice)

    approve(relay, alice_engine, phone_engine)

    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(1, 1)]
    assert "could not be verified and were skipped" in BackupRestored(1, 1).text
    assert [sid for (_, _, sid) in phone.groups.inbound] == [second]
    assert len(shown(relay, ALICE2)) == 2


def test_a_restore_reads_every_page(relay, monkeypatch):
    monkeypatch.setattr("tk_client.e2e.backup.FETCH_LIMIT", 1)
    alice, _, alice_engine, _ = alice_and_bob_talked(relay, messages=2)
    turn_on_backup(relay, alice_engine)
    _phone, phone_engine = new_alice_device(relay, alice)

    approve(relay, alice_engine, phone_engine)

    fetches = [r for p, r in relay.sent if p == ALICE2 and r["type"] == "backup_fetch"]
    assert [r.get("after") for r in fetches] == [None, min(relay.blobs["alice"])]
    assert all(r["limit"] == 1 for r in fetches)
    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(2, 0)]


def test_a_restored_session_claiming_this_device_with_another_curve25519_is_not_trusted(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay, messages=0)
    turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)
    forged = vodozemac.GroupSession()  # made by someone who holds the backup key
    other_curve = vodozemac.Account().curve25519_key.to_base64()
    exported = vodozemac.InboundGroupSession(forged.session_key).export_at(0)
    assert exported is not None
    plaintext = wire.session_plaintext(
        conversation=ROOM,
        session_id=forged.session_id,
        session_key=exported.to_base64(),
        sender="alice",
        sender_device="DEV2",  # the phone itself
        sender_key=other_curve,
        sender_ed25519=phone.device.ed25519,
    )
    slot = wire.session_slot(forged.session_id)
    blob = wire.seal_blob(alice.backup.key, "alice", 1, slot, plaintext)
    relay.blobs["alice"][forged.session_id] = {
        "session_id": forged.session_id,
        "first_index": 0,
        "blob": blob,
    }
    approve(relay, alice_engine, phone_engine)
    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(1, 0)]

    inner = {"type": "text", "text": "forged", "conversation": ROOM}
    inner |= {"sender": "alice", "sender_device": "DEV2"}
    e2e = {"algorithm": "megolm.v1", "sender_key": other_curve, "device": "DEV2"}
    e2e |= {"session_id": forged.session_id}
    e2e["ciphertext"] = forged.encrypt(canonical_json(inner)).to_base64()
    item = {"type": "message", "room": "plans", "from": "alice", "msg_id": 99}
    relay.push(ALICE2, {**item, "ts": "2030-01-01T00:00:00.000Z", "e2e": e2e})
    relay.run(ALICE2, [])

    assert "forged" not in shown(relay, ALICE2)
    assert [e.reason for e in events_of(relay, ALICE2, NotShown)] == [Undecryptable.NOT_VERIFIED]


def test_a_blob_whose_plaintext_names_another_session_than_its_slot_is_skipped(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay, messages=0)
    turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)
    slot_session, other = vodozemac.GroupSession(), vodozemac.GroupSession()
    names = {"conversation": ROOM, "sender": "bob", "sender_device": "DEV1"}
    names |= {"sender_key": "c" * 43, "sender_ed25519": "e" * 43}

    def sealed(session_id: str, session: vodozemac.GroupSession) -> dict[str, Any]:
        exported = vodozemac.InboundGroupSession(session.session_key).export_at(0)
        assert exported is not None
        plaintext = wire.session_plaintext(
            session_id=session_id, session_key=exported.to_base64(), **names
        )
        slot = wire.session_slot(slot_session.session_id)
        blob = wire.seal_blob(alice.backup.key, "alice", 1, slot, plaintext)
        return {"session_id": slot_session.session_id, "first_index": 0, "blob": blob}

    approve(relay, alice_engine, phone_engine)
    assert phone.backup.key is not None
    for item in (sealed(other.session_id, slot_session), sealed(slot_session.session_id, other)):
        relay.blobs["alice"] = {slot_session.session_id: item}
        phone.backup.restored = False
        relay.run(ALICE2, phone_engine.login().requests)
        assert events_of(relay, ALICE2, BackupRestored)[-1:] == [BackupRestored(0, 1)]
        assert phone.groups.inbound == {}


def share_body(relay, sender: CryptoStore, recipient: CryptoStore, version: int, key) -> dict:
    payload = {"type": BACKUP_KEY_SHARE, **key.share(version)}
    return olm_body(sender, recipient, payload)


def deliver(relay: BackupRelay, sender: CryptoStore, target, body) -> None:
    relay.seq[target] = relay.seq.get(target, 0) + 1
    push = {"seq": relay.seq[target], "from": sender.device.user}
    relay.push(
        target, {"type": "to_device", **push, "from_device": sender.device.device, "body": body}
    )
    relay.run(target, [])


def test_a_backup_key_is_taken_only_from_our_own_signed_devices_and_if_it_is_current(relay):
    alice, bob, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    key = alice.backup.key
    phone = add_device(alice, "DEV2", approved=True)
    relay.connect(phone)
    unsigned = add_device(alice, "DEV3", approved=False)
    relay.connect(unsigned)
    relay.announce("alice")
    phone.backup.drop()
    phone_engine = relay.engines[ALICE2]
    phone_engine.backup.status = BackupStatus.NEEDS_KEY

    deliver(relay, bob, ALICE2, share_body(relay, bob, phone, 1, key))  # another user
    deliver(relay, unsigned, ALICE2, share_body(relay, unsigned, phone, 1, key))  # unsigned
    stranger = wire.BackupKey.from_recovery_key(bytes(32))
    deliver(relay, alice, ALICE2, share_body(relay, alice, phone, 1, stranger))  # not current
    assert phone.backup.key is None

    deliver(relay, alice, ALICE2, share_body(relay, alice, phone, 1, key))
    assert phone.backup.key == key and phone_engine.backup.status is BackupStatus.ON


def test_a_backup_signed_by_another_key_is_not_used(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    forged = dict(relay.backups["alice"])
    forged["signatures"] = {"user": relay.backups["alice"]["signatures"]["user"][::-1]}
    relay.backups["alice"] = forged
    phone, phone_engine = new_alice_device(relay, alice)

    approve(relay, alice_engine, phone_engine)

    assert phone.backup.key is None
    assert events_of(relay, ALICE2, BackupRestored) == []


# --- recovery with the recovery key --------------------------------------------------------


def test_the_recovery_key_restores_the_identity_and_the_history_on_a_lone_device(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    recovery_key = turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)

    relay.run(ALICE2, phone_engine.restore_with_recovery_key(recovery_key.lower()).requests)

    assert phone.identity is not None and phone.identity.ed25519 == alice.identity.ed25519
    uploaded = DeviceKeys.from_wire(relay.device_keys[ALICE2])
    assert uploaded.signed_by_user_key(alice.identity.ed25519)
    assert events_of(relay, ALICE2, BackupRecovered)
    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(2, 0)]
    assert sorted(shown(relay, ALICE2)) == ["alice 0", "alice 1", "bob 0", "bob 1"]
    assert phone_engine.backup.status is BackupStatus.ON


def test_a_recovery_typed_before_a_reconnect_goes_on_with_the_logins_answer(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    recovery_key = turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)
    held = phone_engine.restore_with_recovery_key(recovery_key).requests  # in the outbox

    again = phone_engine.login().requests
    relay.run(ALICE2, held + again)  # the outbox sends what it held, then the login's

    assert phone.identity is not None and events_of(relay, ALICE2, BackupRecovered)
    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(2, 0)]


def test_a_wrong_recovery_key_is_refused_and_changes_nothing(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)
    sent = len(relay.sent)

    other = wire.format_recovery_key(wire.new_recovery_key())
    relay.run(ALICE2, phone_engine.restore_with_recovery_key(other).requests)

    assert [e.text for e in events_of(relay, ALICE2, BackupProblem)] == [KEY_MISMATCH]
    assert phone.identity is None and phone.backup.key is None and phone.groups.inbound == {}
    assert {r["type"] for _, r in relay.sent[sent:]} == {"backup_get", "keys_query"}
    assert "user" not in relay.device_keys[ALICE2]["signatures"]


def test_a_recovery_key_whose_backup_holds_a_replaced_identity_changes_nothing(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    recovery_key = turn_on_backup(relay, alice_engine)
    tablet = add_device(alice, "DEV3", approved=True)
    relay.connect(tablet)
    reset_from(relay, tablet)  # a new user key, made where the backup key is not
    backup = dict(relay.backups["alice"])
    phone, phone_engine = new_alice_device(relay, alice)

    relay.run(ALICE2, phone_engine.restore_with_recovery_key(recovery_key).requests)

    assert [e.text for e in events_of(relay, ALICE2, BackupProblem)] == [OLD_IDENTITY]
    assert phone.identity is None and phone.backup.key is None and phone.groups.inbound == {}
    assert "user" not in relay.device_keys[ALICE2]["signatures"]
    assert relay.backups["alice"] == backup


def test_a_recovery_key_with_an_identity_blob_moved_from_another_slot_changes_nothing(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    recovery_key = turn_on_backup(relay, alice_engine)
    moved = next(iter(relay.blobs["alice"].values()))["blob"]
    relay.backups["alice"] = {**relay.backups["alice"], "identity": moved}
    phone, phone_engine = new_alice_device(relay, alice)

    relay.run(ALICE2, phone_engine.restore_with_recovery_key(recovery_key).requests)

    assert [e.text for e in events_of(relay, ALICE2, BackupProblem)] == [BACKUP_UNREADABLE]
    assert phone.identity is None and phone.backup.key is None and phone.groups.inbound == {}
    assert "user" not in relay.device_keys[ALICE2]["signatures"]


def test_a_typo_is_refused_at_once_before_anything_is_fetched(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    recovery_key = turn_on_backup(relay, alice_engine)
    _phone, phone_engine = new_alice_device(relay, alice)
    typo = ("B" if recovery_key[0] != "B" else "C") + recovery_key[1:]

    with pytest.raises(RecoveryKeyTypo):
        phone_engine.restore_with_recovery_key(typo)
    assert phone_engine.backup.keys_query is None


def test_no_backup_on_the_server_is_said_in_words(relay):
    alice, _, _, _ = alice_and_bob_talked(relay)
    phone, phone_engine = new_alice_device(relay, alice)

    any_key = wire.format_recovery_key(wire.new_recovery_key())
    relay.run(ALICE2, phone_engine.restore_with_recovery_key(any_key).requests)

    assert [e.text for e in events_of(relay, ALICE2, BackupProblem)] == [NO_BACKUP]
    assert phone.identity is None


# --- at rest, and the words of 4.9 ---------------------------------------------------------


def test_the_backup_key_is_kept_only_sealed_and_comes_back_from_the_store(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    pickle_key = bytes(range(32))

    text = alice.to_json(pickle_key)
    again = CryptoStore.from_json(text, pickle_key)

    key = alice.backup.key
    for secret in (key.private_key, key.mac_key):
        assert unpadded_b64.encode(secret) not in text and secret.hex() not in text
    assert again.backup.key == key and again.backup.version == 1
    assert again.backup.uploaded == alice.backup.uploaded


def test_an_old_message_says_how_to_read_it_while_the_device_has_no_backup_key(relay):
    alice, _, _alice_engine, _ = alice_and_bob_talked(relay, messages=1)
    _phone, _ = new_alice_device(relay, alice)

    lines = {e.text for e in events_of(relay, ALICE2, NotShown)}

    assert lines == {
        "Sent before this device was set up: its key was never shared with this device. "
        "Approve this device from another one, or enter your recovery key, to read it."
    }


def test_the_hint_follows_whether_the_backup_key_held_is_in_use_not_whether_it_is_held(relay):
    alice, _, _alice_engine, _ = alice_and_bob_talked(relay, messages=1)
    key = wire.BackupKey.from_recovery_key(bytes(32))
    _phone, phone_engine = new_alice_device(relay, alice, kept=key)  # no backup on the server
    assert phone_engine.backup.status is BackupStatus.NONE
    hint = Undecryptable.BEFORE_THIS_DEVICE_NO_BACKUP_KEY
    assert {e.reason for e in events_of(relay, ALICE2, NotShown)} == {hint}

    relay.backups["alice"] = signed_backup(alice, 1, key)  # the backup of the key it holds
    relay.published_from["alice"] = "DEV1"
    relay.run(ALICE2, phone_engine.login().requests)

    assert phone_engine.backup.status is BackupStatus.ON
    reasons = [e.reason for e in events_of(relay, ALICE2, NotShown)]
    assert reasons[-2:] == [Undecryptable.BEFORE_THIS_DEVICE] * 2  # said again, without it


def test_an_identity_reset_on_a_device_that_holds_the_key_updates_the_backup(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)

    reset_from(relay, alice)
    relay.run(ALICE1, alice_engine.login().requests)

    backup = relay.backups["alice"]
    assert backup["version"] == 1 and backup["public_key"] == alice.backup.key.public_key
    assert wire.backup_signature_valid(backup, alice.identity.ed25519)
    opened = wire.open_blob(alice.backup.key, "alice", 1, "identity", backup["identity"])
    assert opened["version"] == 2
    assert alice_engine.backup.status is BackupStatus.ON


# --- the link's API (what the desktop and terminal clients call) --------------------------


def test_the_link_says_the_status_once_the_server_answered_and_checks_the_typed_key(tmp_path):
    session = FakeSession()
    link = E2ELink.open(session, tmp_path, SERVER, "alice", "DEV1", clock=lambda: 1000.0)
    link.logged_in()
    assert link.backup_status is BackupStatus.UNKNOWN and link.backup_info is None
    with pytest.raises(E2EError):
        link.begin_backup_setup()  # not approved yet
    link.store.identity = make_user("alice").identity

    said = answer(link, session.of("backup_get")[-1], {"type": "backup", "backup": None})
    shown_key = link.begin_backup_setup()

    assert said == [BackupStatusChanged(BackupStatus.NONE)]  # for a view to redraw

    assert link.backup_status is BackupStatus.NONE
    assert len(shown_key.split(" ")) == 14
    with pytest.raises(ValueError, match="not the recovery key shown"):
        link.finish_backup_setup(shown_key[:-1] + ("A" if shown_key[-1] != "A" else "B"), None)
    assert session.of("backup_publish") == []
    link.finish_backup_setup(shown_key.lower().replace(" ", "-"), None)
    (publish,) = session.of("backup_publish")
    assert "password" not in publish.message
    events = answer(link, publish, {"type": "ok"})
    assert BackupEnabled(1) in events and link.backup_status is BackupStatus.ON
    assert link.backup_info == (1, None, "DEV1")
    with pytest.raises(RecoveryKeyTypo):
        link.restore_with_recovery_key("ABCD EFGH")
    reopened = CryptoStore.load(link.path, load_or_create_pickle_key(tmp_path))
    assert reopened.backup.key == link.store.backup.key  # saved, sealed


def test_the_link_passes_backup_changed_on_in_words(tmp_path):
    link = E2ELink.open(FakeSession(), tmp_path, SERVER, "alice", "DEV1", clock=lambda: 1.0)

    events = link.pushed({"type": "backup_changed", "version": 3, "device": "D2", "name": "tab"})

    assert [e.text for e in events if isinstance(e, BackupChanged)] == [
        "Your key backup was reset from tab (D2). Your old recovery key no longer works."
    ]
    assert BackupStatusChanged(BackupStatus.NEEDS_KEY) in events


def test_a_restore_cut_short_by_a_restart_starts_again_at_the_next_login(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)
    relay.refuse.append("backup_fetch")  # the connection drops during the first page
    relay.refusal = "not_sent"
    approve(relay, alice_engine, phone_engine)
    assert phone.backup.key is not None and not phone.backup.restored
    assert events_of(relay, ALICE2, BackupRestored) == []

    restarted = relay.connect(CryptoStore.from_json(phone.to_json(bytes(32)), bytes(32)))

    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(2, 0)]
    assert restarted.store.backup.restored
    relay.connect(restarted.store)  # (the relay keeps the events of this connection only)
    assert events_of(relay, ALICE2, BackupRestored) == []  # restored once only


def test_a_restore_refused_with_conflict_starts_again_and_uploads_resume(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)
    relay.refuse.append("backup_fetch")  # the backup changed while the first page was asked

    approve(relay, alice_engine, phone_engine)

    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(2, 0)]
    assert phone.backup.restored
    relay.run(ALICE2, phone_engine.encrypt_for(ROOM, ["bob"], "from the phone", 1.0).requests)
    assert [p for p, r in relay.sent if r["type"] == "backup_put"].count(ALICE2) == 1


def signed_backup(store: CryptoStore, version: int, key: wire.BackupKey) -> dict[str, Any]:
    identity = wire.seal_blob(key, "alice", version, "identity", {"type": "identity"})
    backup = wire.backup_object(user="alice", version=version, key=key, identity_blob=identity)
    return wire.sign_backup(backup, unpadded_b64.decode(store.identity.private_b64()))


def test_a_reset_while_the_last_page_is_on_its_way_restores_the_new_backup_after_it():
    phone = make_user("alice", "DEV2")
    laptop = add_device(phone, "DEV1", approved=True)
    first, second = (wire.BackupKey.from_recovery_key(bytes([n]) * 32) for n in (1, 2))
    phone.backup.keep(first, 1)
    ids = (str(n) for n in itertools.count())
    backup = KeyBackup(phone, lambda: next(ids))

    def answered(step, kind: str, **fields) -> list[dict[str, Any]]:
        (request,) = step.requests
        return backup.receive({"type": kind, "ref": request["id"], **fields}).requests

    (fetch,) = answered(backup.login(), "backup", backup=signed_backup(phone, 1, first))
    assert fetch["type"] == "backup_fetch" and fetch["version"] == 1  # restoring version 1
    changed = {"type": "backup_changed", "version": 2, "device": "DEV1", "name": "laptop"}
    answered(backup.receive(changed), "backup", backup=signed_backup(phone, 2, second))
    assert backup.status is BackupStatus.NEEDS_KEY
    sender = DeviceKeys.from_wire(phone.identity.sign_device(laptop.device.device_keys()).to_wire())
    offered = backup.offer_share(sender, second.share(2), phone.identity.ed25519)
    answered(offered, "backup", backup=signed_backup(phone, 2, second))
    assert backup.status is BackupStatus.ON and phone.backup.version == 2

    session = vodozemac.GroupSession()  # in version 1 only: version 2 does not hold it
    exported = vodozemac.InboundGroupSession(session.session_key).export_at(0)
    assert exported is not None
    plaintext = wire.session_plaintext(
        conversation=ROOM,
        session_id=session.session_id,
        session_key=exported.to_base64(),
        sender="alice",
        sender_device="DEV1",
        sender_key=laptop.device.curve25519,
        sender_ed25519=laptop.device.ed25519,
    )
    blob = wire.seal_blob(first, "alice", 1, wire.session_slot(session.session_id), plaintext)
    item = {"session_id": session.session_id, "first_index": 0, "blob": blob}
    last_page = {"type": "backup_sessions", "ref": fetch["id"], "version": 1}
    step = backup.receive({**last_page, "sessions": [item], "next": None})

    assert [(r["type"], r["version"]) for r in step.requests] == [("backup_fetch", 2)]
    assert phone.groups.has_key(ROOM, {"sender_key": laptop.device.curve25519, **item})
    assert session.session_id not in phone.backup.uploaded  # to go up to version 2


def test_a_message_whose_key_came_into_the_backup_later_is_looked_up_there(relay):
    alice, bob, alice_engine, _ = alice_and_bob_talked(relay, messages=1)
    turn_on_backup(relay, alice_engine)
    (bobs,) = [sid for (_, key, sid) in alice.groups.inbound if key == bob.device.curve25519]
    late = relay.blobs["alice"].pop(bobs)  # not in the backup yet when the phone restores
    _, phone_engine = new_alice_device(relay, alice)
    approve(relay, alice_engine, phone_engine)
    assert shown(relay, ALICE2) == ["alice 0"]
    relay.blobs["alice"][bobs] = late

    request = room_messages(relay)[0]  # bob's message, as history brings it again
    item = {"type": "message", "room": "plans", "from": "bob", "msg_id": 1}
    relay.push(ALICE2, {**item, "ts": "2030-01-01T00:00:00.000Z", "e2e": request["e2e"]})
    relay.run(ALICE2, [])

    (lookup,) = [r for p, r in relay.sent if p == ALICE2 and r.get("limit") == 1]
    assert lookup["after"] < bobs and not any(lookup["after"] < s < bobs for s in relay.blobs)
    assert "bob 0" in shown(relay, ALICE2)


def test_requests_a_lost_connection_left_unanswered_are_forgotten_at_the_next_login():
    store = make_user("alice")
    ids = (f"r{n}" for n in itertools.count())
    backup = KeyBackup(store, lambda: next(ids))
    stale = [backup.login().requests[0]["id"] for _ in range(5)]  # five reconnects, no answer

    (get,) = backup.login().requests

    assert len(backup._requests) == 1  # not one more per reconnect
    assert not any(backup.owns({"type": "backup", "ref": ref}) for ref in stale)
    backup.receive({"type": "backup", "ref": stale[0], "backup": None})  # late: not matched
    assert backup.status is BackupStatus.UNKNOWN
    backup.receive({"type": "backup", "ref": get["id"], "backup": None})
    assert backup.status is BackupStatus.NONE


def test_a_restore_page_asked_before_a_reconnect_is_not_taken_into_the_next_restore():
    phone = make_user("alice", "DEV2")
    key = wire.BackupKey.from_recovery_key(bytes([1]) * 32)
    phone.backup.keep(key, 1)
    ids = (str(n) for n in itertools.count())
    backup = KeyBackup(phone, lambda: next(ids))
    current = signed_backup(phone, 1, key)

    def answered(step, kind: str, **fields) -> list[dict[str, Any]]:
        (request,) = step.requests
        return backup.receive({"type": kind, "ref": request["id"], **fields}).requests

    (old_fetch,) = answered(backup.login(), "backup", backup=current)
    (new_fetch,) = answered(backup.login(), "backup", backup=current)  # after a reconnect
    sid = vodozemac.GroupSession().session_id
    late = {"type": "backup_sessions", "ref": old_fetch["id"], "version": 1}
    step = backup.receive({**late, "sessions": [], "next": sid})

    assert step.requests == [] and step.events == [] and not phone.backup.restored
    page = {"type": "backup_sessions", "ref": new_fetch["id"], "version": 1}
    assert backup.receive({**page, "sessions": [], "next": None}).events[-1] == BackupRestored(0, 0)


def test_the_session_id_before_another_is_the_greatest_below_it():
    ids = sorted(vodozemac.GroupSession().session_id for _ in range(500))
    for lower, higher in itertools.pairwise(ids):
        assert lower <= session_id_before(higher) < higher
    assert session_id_before("+" * 42 + "0") is None  # the smallest: fetch from the start
    assert session_id_before("A" * 43) == "A" * 42 + "8"
    with pytest.raises(ValueError):
        session_id_before("A" * 42 + "B")  # its last character would carry bits past 32 bytes


def test_a_reset_with_the_password_is_not_left_waiting_in_the_outbox_while_offline(tmp_path):
    class Offline(FakeSession):
        def request(self, type_, *, durable=True, **fields):
            if not durable:
                raise NotConnected("offline")
            return super().request(type_, durable=durable, **fields)

    session = Offline()
    link = E2ELink.open(session, tmp_path, SERVER, "alice", "DEV1", clock=lambda: 1000.0)
    link.store.identity = make_user("alice").identity
    link.logged_in()
    existing = {"type": "backup", "backup": {"version": 1, "public_key": "x"}}
    answer(link, session.of("backup_get")[-1], existing)
    shown_key = link.begin_backup_setup()

    events = link.finish_backup_setup(shown_key, PASSWORD)

    assert session.of("backup_publish") == []
    assert [e.text for e in events if isinstance(e, BackupProblem)] == [NOT_CONNECTED]


def test_a_reset_lost_with_the_connection_after_it_left_says_it_may_have_happened(tmp_path):
    session = FakeSession()
    link = E2ELink.open(session, tmp_path, SERVER, "alice", "DEV1", clock=lambda: 1000.0)
    link.store.identity = make_user("alice").identity
    link.logged_in()
    existing = {"type": "backup", "backup": {"version": 1, "public_key": "x"}}
    answer(link, session.of("backup_get")[-1], existing)
    link.finish_backup_setup(link.begin_backup_setup(), PASSWORD)
    sent = session.of("backup_publish")[-1]

    lost = RequestStatus(sent.id, sent.message, RequestState.FAILED, "lost", uncertain=True)
    events = link.answered(lost, None)

    assert [e.text for e in events if isinstance(e, BackupProblem)] == [UNCERTAIN]
    assert "may or may not" in UNCERTAIN and "not changed" not in UNCERTAIN


def test_a_server_that_pages_in_circles_is_not_followed(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    _, phone_engine = new_alice_device(relay, alice)
    first = min(relay.blobs["alice"])
    relay.blobs["alice"] = {first: relay.blobs["alice"][first]}
    fetch = relay._handle

    def in_circles(peer, request):
        if request["type"] == "backup_fetch":
            page = {"version": 1, "sessions": [relay.blobs["alice"][first]], "next": first}
            relay.push(peer, {"type": "backup_sessions", "ref": request["id"], **page})
        else:
            fetch(peer, request)

    relay._handle = in_circles
    approve(relay, alice_engine, phone_engine)

    assert sum(r["type"] == "backup_fetch" for p, r in relay.sent if p == ALICE2) == 2
    assert len(events_of(relay, ALICE2, BackupRestored)) == 1  # over, not fetching forever


def test_a_page_of_another_version_than_the_restore_asked_for_imports_nothing(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    turn_on_backup(relay, alice_engine)
    phone, phone_engine = new_alice_device(relay, alice)
    fetch = relay._handle

    def other_version(peer, request):
        if request["type"] == "backup_fetch":  # version 1's blobs, said to be version 2's
            page = {"version": 2, "sessions": list(relay.blobs["alice"].values()), "next": None}
            relay.push(peer, {"type": "backup_sessions", "ref": request["id"], **page})
        else:
            fetch(peer, request)

    relay._handle = other_version
    approve(relay, alice_engine, phone_engine)

    assert phone.backup.key is not None and phone.groups.inbound == {}
    assert events_of(relay, ALICE2, BackupRestored) == [] and not phone.backup.restored
    relay._handle = fetch
    relay.run(ALICE2, phone_engine.login().requests)  # the next login restores
    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(2, 0)]


def test_after_a_reset_made_without_the_backup_key_the_recovery_key_brings_it_up_to_date(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    recovery_key = turn_on_backup(relay, alice_engine)
    phone = add_device(alice, "DEV2", approved=True)
    phone_engine = relay.connect(phone)
    relay.announce("alice")
    phone.backup.drop()  # (as if it never got the key)
    reset_from(relay, phone)  # a new user key, made where the backup key is not
    relay.run(ALICE2, phone_engine.login().requests)
    assert phone_engine.backup.status is BackupStatus.NEEDS_KEY
    assert not wire.backup_signature_valid(relay.backups["alice"], phone.identity.ed25519)

    relay.run(ALICE2, phone_engine.restore_with_recovery_key(recovery_key).requests)

    backup = relay.backups["alice"]
    assert backup["version"] == 1 and wire.backup_signature_valid(backup, phone.identity.ed25519)
    opened = wire.open_blob(phone.backup.key, "alice", 1, "identity", backup["identity"])
    assert opened["version"] == 2 and phone_engine.backup.status is BackupStatus.ON
    assert events_of(relay, ALICE2, BackupRestored) == [BackupRestored(2, 0)]


def test_a_store_from_before_the_key_backup_opens_without_a_backup_key():
    store = make_user("alice")
    state = json.loads(store.to_json(bytes(32)))
    del state["backup"]

    again = CryptoStore.from_json(json.dumps(state), bytes(32))

    assert again.backup.key is None and again.backup.uploaded == {}


# --- rules of 4.13 that the tests above leave out ----------------------------------------


def test_a_room_key_kept_aside_is_not_backed_up_until_its_device_is_signed(relay):
    """ "It shares no more than it could read": a key from an unsigned device (kept aside,
    4.6) goes up only once the device is signed and the key is accepted."""
    alice, _bob, _alice_engine, bob_engine = alice_and_bob_talked(relay, messages=0)
    turn_on_backup(relay, bob_engine, peer=BOB)
    alice2 = add_device(alice, "DEV2", approved=False)
    alice2_engine = relay.connect(alice2)
    relay.announce("alice")

    relay.run(ALICE2, alice2_engine.encrypt_for(ROOM, ["bob"], "from my laptop", 1.0).requests)

    uploaded = [s["session_id"] for r in puts(relay) for s in r["sessions"]]
    aside = alice2.groups.outbound[ROOM].session_id
    assert aside not in uploaded and aside not in relay.blobs["bob"]
    signed = alice.identity.sign_device(alice2.device.device_keys())  # approved on DEV1
    relay.device_keys[ALICE2] = signed.to_wire()
    relay.announce("alice")
    assert aside in relay.blobs["bob"]


def test_after_a_reset_the_old_recovery_key_opens_nothing(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    old_key = turn_on_backup(relay, alice_engine)
    relay.run(
        ALICE1,
        alice_engine.finish_backup_setup(alice_engine.begin_backup_setup(), PASSWORD).requests,
    )  # the reset: a new recovery key
    assert relay.backups["alice"]["version"] == 2
    phone, phone_engine = new_alice_device(relay, alice)

    relay.run(ALICE2, phone_engine.restore_with_recovery_key(old_key).requests)

    assert [e.text for e in events_of(relay, ALICE2, BackupProblem)] == [KEY_MISMATCH]
    assert phone.identity is None and phone.backup.key is None and phone.groups.inbound == {}


def test_a_backup_whose_identity_was_reset_since_is_not_used_to_recover(relay):
    """Recovery checks that the identity's public half is the user's current user key
    (version included): a backup left behind by an identity reset recovers nothing."""
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    recovery_key = turn_on_backup(relay, alice_engine)
    laptop2 = add_device(alice, "DEV3", approved=True)
    relay.connect(laptop2)
    laptop2.backup.drop()
    reset_from(relay, laptop2)  # a new user key, made where the backup key is not
    phone, phone_engine = new_alice_device(relay, alice)

    relay.run(ALICE2, phone_engine.restore_with_recovery_key(recovery_key).requests)

    assert [e.text for e in events_of(relay, ALICE2, BackupProblem)] == [OLD_IDENTITY]
    assert phone.identity is None and phone.groups.inbound == {}
    assert "user" not in relay.device_keys[ALICE2]["signatures"]


def test_the_recovery_key_is_never_stored(relay):
    alice, _, alice_engine, _ = alice_and_bob_talked(relay)
    shown_key = turn_on_backup(relay, alice_engine)
    secret = wire.parse_recovery_key(shown_key)

    text = alice.to_json(bytes(range(32)))

    squashed = shown_key.replace(" ", "")
    for spelling in (squashed, squashed.lower(), secret.hex(), unpadded_b64.encode(secret)):
        assert spelling not in text
