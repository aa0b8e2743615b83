"""Two (or more) engines talking through a fake relay: a dict-backed stand-in for the
server's section 4 (key directory, one-time keys, to-device queues, message fan-out)."""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import replace
from typing import Any

import pytest
import vodozemac

from chatproto.e2e import conversation_id
from tk_client.e2e import room_keys
from tk_client.e2e.directory import DeviceDirectory
from tk_client.e2e.engine import STALE_IDENTITY_NOTICE, E2EEngine, Notice, NotShown, Shown
from tk_client.e2e.errors import SendingBlocked
from tk_client.e2e.identity import UserIdentity
from tk_client.e2e.keys import DeviceKeys
from tk_client.e2e.megolm import OutboundGroup, Undecryptable
from tk_client.e2e.verification import (
    CodesReady,
    VerificationCancelled,
    VerificationRequested,
    VerificationStarted,
    Verified,
)

from .helpers import add_device, make_user, olm_body, published

ROOM = conversation_id(room="plans")
LATER_TS = "2030-01-01T00:00:00.000Z"  # after every test device was made (at time 0)


class Relay:
    """What the server would do with each request, delivered at once and in order."""

    def __init__(self) -> None:
        self.engines: dict[tuple[str, str], E2EEngine] = {}
        self.device_keys: dict[tuple[str, str], dict[str, Any]] = {}
        self.user_keys: dict[str, dict[str, Any]] = {}
        self.one_time_keys: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.fallback: dict[tuple[str, str], dict[str, Any]] = {}
        self.rooms: dict[str, list[str]] = {}
        self.seq: dict[tuple[str, str], int] = {}
        self.events: dict[tuple[str, str], list[Any]] = {}
        self.sent: list[tuple[tuple[str, str], dict[str, Any]]] = []  # every request seen
        self.refused: list[tuple[tuple[str, str], dict[str, Any], str]] = []  # and its error
        self.version = 0
        self.refuse: list[str] = []  # request types to answer with an error, once each
        self._pushes: deque[tuple[tuple[str, str], dict[str, Any]]] = deque()
        self._ids = itertools.count(1)
        self._msg_ids = itertools.count(1)

    def connect(self, store, publish_user_key: bool = False) -> E2EEngine:
        peer = (store.device.user, store.device.device)
        engine = E2EEngine(store, new_id=lambda: f"r{next(self._ids)}")
        self.engines[peer] = engine
        self.events[peer] = []
        if publish_user_key:
            self.user_keys[peer[0]] = store.identity.published_by(store.device).to_wire()
        self.run(peer, engine.login().requests)
        return engine

    def users_devices(self, user: str) -> list[tuple[str, str]]:
        return sorted(peer for peer in self.device_keys if peer[0] == user)

    def run(self, peer: tuple[str, str], requests: list[dict[str, Any]]) -> None:
        for request in requests:
            self.sent.append((peer, request))
            self._handle(peer, request)
        while self._pushes:
            target, message = self._pushes.popleft()
            engine = self.engines[target]
            engine.set_rooms(r for r, members in self.rooms.items() if target[0] in members)
            out = engine.receive(message, now=1.0)
            self.events[target].extend(out.events)
            for request in out.requests:
                self.sent.append((target, request))
                self._handle(target, request)

    def push(self, target: tuple[str, str], message: dict[str, Any]) -> None:
        if target in self.engines:
            self._pushes.append((target, message))

    def _handle(self, peer: tuple[str, str], request: dict[str, Any]) -> None:
        kind, ref = request["type"], request.get("id")
        user, device = peer
        if kind in self.refuse:
            self.refuse.remove(kind)
            self.push(peer, {"type": "error", "ref": ref, "code": "rate_limited"})
            return
        if kind == "keys_upload":
            refusal = self._refusal(peer, request)
            if refusal is not None:
                self.refused.append((peer, request, refusal))
                self.push(peer, {"type": "error", "ref": ref, "code": refusal})
                return
            if "device_keys" in request:
                self.device_keys[peer] = request["device_keys"]
            stored = self.one_time_keys.setdefault(peer, [])
            ids = {key["key_id"] for key in stored}
            stored.extend(k for k in request.get("one_time_keys", []) if k["key_id"] not in ids)
            if "fallback_key" in request:
                self.fallback[peer] = request["fallback_key"]
            left = len(self.one_time_keys[peer])
            self.push(peer, {"type": "keys_uploaded", "ref": ref, "one_time_keys": left})
        elif kind == "keys_query":
            users = {
                name: {
                    "user_key": self.user_keys.get(name),
                    "devices": [self.device_keys[p] for p in self.users_devices(name)],
                    "version": self.version,
                }
                for name in request["users"]
                if self.users_devices(name) or name in self.user_keys
            }
            self.push(peer, {"type": "keys", "ref": ref, "users": users})
        elif kind == "keys_claim":
            keys = []
            for asked in request["devices"]:
                target = (asked["user"], asked["device"])
                if self.one_time_keys.get(target):
                    keys.append({**asked, **self.one_time_keys[target].pop(0), "fallback": False})
                elif target in self.fallback:
                    keys.append({**asked, **self.fallback[target], "fallback": True})
            self.push(peer, {"type": "keys_claimed", "ref": ref, "keys": keys})
        elif kind == "to_device":
            for message in request["messages"]:
                target = (message["user"], message["device"])
                self.seq[target] = self.seq.get(target, 0) + 1
                push = {"seq": self.seq[target], "from": user, "from_device": device}
                self.push(target, {"type": "to_device", **push, "body": message["body"]})
            self.push(peer, {"type": "ok", "ref": ref})
        elif kind in ("send", "pm"):
            msg_id = next(self._msg_ids)
            if kind == "send":
                members = self.rooms[request["room"]]
                out = {"type": "message", "room": request["room"]}
            else:
                members = [user, request["to"]]
                out = {"type": "private", "to": request["to"]}
            out.update(msg_id=msg_id, ts=LATER_TS, e2e=request["e2e"])
            out["from"] = user
            for member in members:
                for target in self.users_devices(member):
                    self.push(target, dict(out))
        elif kind == "device_list_changes":
            self.push(peer, {"type": kind, "ref": ref, "version": self.version, "users": []})

    def _refusal(self, peer: tuple[str, str], request: dict[str, Any]) -> str | None:
        """The server's checks of ``keys_upload`` that these tests lean on (section 4.3)."""
        keys = request.get("device_keys")
        published_key = self.user_keys.get(peer[0])
        if keys is not None and "user" in keys["signatures"]:
            current = published_key["ed25519"] if published_key else None
            if not DeviceKeys.from_wire(keys).signed_by_user_key(current):
                return "bad_request"  # signatures.user not valid for the current user key
        stored = {key["key_id"] for key in self.one_time_keys.get(peer, [])}
        new = {key["key_id"] for key in request.get("one_time_keys", [])} - stored
        if len(stored) + len(new) > 100:
            return "bad_request"  # more than 100 unclaimed one-time keys
        return None

    def announce(self, user: str) -> None:
        """A change of ``user``'s keys: ``devices_changed`` to everyone connected."""
        self.version += 1
        for peer in list(self.engines):
            self.push(peer, {"type": "devices_changed", "users": [user], "version": self.version})
        self.run(("-", "-"), [])


def shown(relay: Relay, peer: tuple[str, str]) -> list[str]:
    return [event.text for event in relay.events[peer] if isinstance(event, Shown)]


def room_messages(relay: Relay) -> list[dict[str, Any]]:
    return [request for _, request in relay.sent if request["type"] == "send"]


def to_device_targets(relay: Relay, sender: tuple[str, str]) -> set[tuple[str, str]]:
    return {
        (message["user"], message["device"])
        for peer, request in relay.sent
        if peer == sender and request["type"] == "to_device"
        for message in request["messages"]
    }


@pytest.fixture
def relay() -> Relay:
    return Relay()


def connect_pair(relay: Relay):
    alice, bob = make_user("alice"), make_user("bob")
    alice_engine = relay.connect(alice, publish_user_key=True)
    bob_engine = relay.connect(bob, publish_user_key=True)
    relay.rooms["plans"] = ["alice", "bob"]
    return alice, bob, alice_engine, bob_engine


def test_login_publishes_signed_device_keys_and_one_time_keys(relay):
    alice = make_user("alice")
    relay.connect(alice, publish_user_key=True)

    uploaded = relay.device_keys[("alice", "DEV1")]
    assert set(uploaded["signatures"]) == {"device", "user"}
    assert len(relay.one_time_keys[("alice", "DEV1")]) == 50
    assert ("alice", "DEV1") in relay.fallback


def test_a_room_message_reaches_the_other_member_and_the_relay_sees_no_text(relay):
    _, _, alice_engine, _ = connect_pair(relay)

    relay.run(
        ("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "meet at noon", 1.0).requests
    )

    assert shown(relay, ("bob", "DEV1")) == ["meet at noon"]
    assert shown(relay, ("alice", "DEV1")) == ["meet at noon"]  # the sender reads its own
    assert "meet at noon" not in json.dumps([request for _, request in relay.sent])
    assert [r["e2e"]["algorithm"] for r in room_messages(relay)] == ["megolm.v1"]


def test_a_private_message_goes_both_ways(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    pm = conversation_id(pm=("alice", "bob"))

    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(pm, ["bob"], "hello bob", 1.0).requests)
    relay.run(("bob", "DEV1"), bob_engine.encrypt_for(pm, ["alice"], "hello alice", 1.0).requests)

    assert shown(relay, ("bob", "DEV1")) == ["hello bob", "hello alice"]
    assert shown(relay, ("alice", "DEV1")) == ["hello bob", "hello alice"]


def test_the_second_message_needs_no_new_room_key(relay):
    _, _, alice_engine, _ = connect_pair(relay)
    first = alice_engine.encrypt_for(ROOM, ["bob"], "one", 1.0).requests
    relay.run(("alice", "DEV1"), first)

    second = alice_engine.encrypt_for(ROOM, ["bob"], "two", 2.0).requests

    assert [r["type"] for r in second] == ["send"]
    relay.run(("alice", "DEV1"), second)
    assert shown(relay, ("bob", "DEV1")) == ["one", "two"]


def test_a_device_its_user_did_not_sign_gets_no_room_key(relay):
    _, bob, alice_engine, _ = connect_pair(relay)
    planted = add_device(bob, "PLANTED", approved=False)
    relay.connect(planted)
    relay.announce("bob")

    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "secret", 1.0).requests)

    assert ("bob", "PLANTED") not in to_device_targets(relay, ("alice", "DEV1"))
    assert shown(relay, ("bob", "PLANTED")) == []
    reasons = [e.reason for e in relay.events[("bob", "PLANTED")] if isinstance(e, NotShown)]
    assert reasons == [Undecryptable.KEY_NOT_RECEIVED]
    assert shown(relay, ("bob", "DEV1")) == ["secret"]


def test_a_removed_member_gets_no_key_of_what_follows(relay):
    _, _, alice_engine, _ = connect_pair(relay)
    carol = make_user("carol")
    relay.connect(carol, publish_user_key=True)
    relay.rooms["plans"] = ["alice", "bob", "carol"]
    relay.run(
        ("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob", "carol"], "all", 1.0).requests
    )
    relay.rooms["plans"] = ["alice", "bob"]
    before = len(relay.sent)

    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "no carol", 2.0).requests)

    first, second = (r["e2e"]["session_id"] for r in room_messages(relay))
    assert first != second  # rotated
    later = [
        r for p, r in relay.sent[before:] if p == ("alice", "DEV1") and r["type"] == "to_device"
    ]
    assert {(m["user"], m["device"]) for r in later for m in r["messages"]} == {("bob", "DEV1")}
    assert shown(relay, ("bob", "DEV1")) == ["all", "no carol"]


def test_a_new_device_asks_its_own_devices_for_a_missing_key(relay):
    _, bob, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "early", 1.0).requests)
    early = room_messages(relay)[0]
    bob2 = add_device(bob, "DEV2", approved=True)
    relay.connect(bob2)
    relay.announce("bob")

    # the history reaches the new device, which never got the key
    message = {"type": "message", "room": "plans", "from": "alice", "msg_id": 1, "ts": LATER_TS}
    relay.push(("bob", "DEV2"), {**message, "e2e": early["e2e"]})
    relay.run(("bob", "DEV2"), [])

    events = relay.events[("bob", "DEV2")]
    assert [e.reason for e in events if isinstance(e, NotShown)] == [Undecryptable.KEY_NOT_RECEIVED]
    assert shown(relay, ("bob", "DEV2")) == ["early"]
    assert ("bob", "DEV1") in to_device_targets(relay, ("bob", "DEV2"))


def test_nobody_forwards_a_key_to_another_users_device(relay):
    _, _, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "early", 1.0).requests)
    mallory = make_user("mallory")
    relay.connect(mallory, publish_user_key=True)
    early = room_messages(relay)[0]

    message = {"type": "message", "room": "plans", "from": "alice", "msg_id": 1, "ts": LATER_TS}
    relay.push(("mallory", "DEV1"), {**message, "e2e": early["e2e"]})
    relay.run(("mallory", "DEV1"), [])

    assert shown(relay, ("mallory", "DEV1")) == []
    assert to_device_targets(relay, ("mallory", "DEV1")) == set()  # asks only its own devices


def test_a_verified_contacts_new_identity_is_a_notice_and_blocks_sending(relay):
    alice, bob, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "hi", 1.0).requests)
    alice.contacts.verify("bob", bob.identity.ed25519)

    bob.identity = UserIdentity.generate("bob", version=2)  # bob resets his identity
    relay.user_keys["bob"] = bob.identity.published_by(bob.device).to_wire()
    relay.announce("bob")

    notices = [e.text for e in relay.events[("alice", "DEV1")] if isinstance(e, Notice)]
    assert len(notices) == 1 and notices[0].startswith("bob's identity changed")
    with pytest.raises(SendingBlocked):
        alice_engine.encrypt_for(ROOM, ["bob"], "are you there?", 2.0)


def test_a_to_device_message_seen_twice_is_read_once(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "hi", 1.0).requests)
    key_push = next(
        (p, r) for p, r in relay.sent if p == ("alice", "DEV1") and r["type"] == "to_device"
    )[1]
    replay = {"type": "to_device", "seq": 1, "from": "alice", "from_device": "DEV1"}

    out = bob_engine.receive({**replay, "body": key_push["messages"][0]["body"]}, now=2.0)

    assert out.requests == [] and out.events == []


def test_a_key_from_a_device_signed_later_is_kept_aside_then_used(relay):
    alice, _, _, bob_engine = connect_pair(relay)
    relay.run(("bob", "DEV1"), bob_engine.encrypt_for(ROOM, ["alice"], "hi", 1.0).requests)
    alice2 = add_device(alice, "DEV2", approved=False)
    alice2_engine = relay.connect(alice2)
    relay.announce("alice")

    sent = alice2_engine.encrypt_for(ROOM, ["bob"], "from my laptop", 1.0).requests
    relay.run(("alice", "DEV2"), sent)

    bob_sees = relay.events[("bob", "DEV1")]
    reasons = [e.reason for e in bob_sees if isinstance(e, NotShown)]
    assert reasons == [Undecryptable.SENDER_NOT_VERIFIED]
    assert shown(relay, ("bob", "DEV1")) == ["hi"]

    signed = alice.identity.sign_device(alice2.device.device_keys())  # approved on DEV1
    relay.device_keys[("alice", "DEV2")] = signed.to_wire()
    relay.announce("alice")

    assert shown(relay, ("bob", "DEV1")) == ["hi", "from my laptop"]


def test_a_refused_query_does_not_stall_the_message_queue(relay):
    alice = make_user("alice")
    engine = relay.connect(alice, publish_user_key=True)

    first = engine.encrypt_for(ROOM, ["ghost"], "anyone?", 1.0).requests
    assert [r["type"] for r in first] == ["keys_query"]
    out = engine.receive({"type": "error", "ref": first[0]["id"], "code": "bad_request"}, 1.0)

    assert [r["type"] for r in out.requests] == ["send"]


def events_of(relay: Relay, peer: tuple[str, str], kind: type) -> list[Any]:
    return [event for event in relay.events[peer] if isinstance(event, kind)]


def test_a_new_device_is_approved_by_comparing_codes_and_gets_the_user_key(relay):
    alice = make_user("alice")
    first = relay.connect(alice, publish_user_key=True)
    alice2 = add_device(alice, "DEV2", approved=False)
    second = relay.connect(alice2)
    relay.announce("alice")
    old, new = ("alice", "DEV1"), ("alice", "DEV2")

    relay.run(old, first.start_verification("alice", "DEV2", "device", 1.0).requests)
    (asked,) = events_of(relay, new, VerificationRequested)
    relay.run(new, second.accept_verification(asked.txn, 2.0).requests)
    (codes_old,), (codes_new,) = (
        events_of(relay, old, CodesReady),
        events_of(relay, new, CodesReady),
    )
    assert codes_old.emoji == codes_new.emoji and codes_old.decimals == codes_new.decimals
    relay.run(old, first.confirm_verification(asked.txn, 3.0).requests)
    relay.run(new, second.confirm_verification(asked.txn, 4.0).requests)

    assert [e.kind for e in events_of(relay, old, Verified)] == ["device"]
    assert [e.approved_here for e in events_of(relay, new, Verified)] == [True]
    assert alice2.identity is not None and alice2.identity.ed25519 == alice.identity.ed25519
    uploaded = relay.device_keys[new]
    assert "user" in uploaded["signatures"]
    assert DeviceKeys.from_wire(uploaded).signed_by_user_key(alice.identity.ed25519)


def test_two_contacts_verify_each_other_with_emoji(relay):
    alice, bob, alice_engine, bob_engine = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "hi", 1.0).requests)
    relay.run(("bob", "DEV1"), bob_engine.encrypt_for(ROOM, ["alice"], "hi", 1.0).requests)

    started = alice_engine.start_verification("bob", "DEV1", "contact", 2.0)
    relay.run(("alice", "DEV1"), started.requests)
    (asked,) = events_of(relay, ("bob", "DEV1"), VerificationRequested)
    assert started.events == [VerificationStarted(asked.txn, "bob", "DEV1", "contact")]
    relay.run(("bob", "DEV1"), bob_engine.accept_verification(asked.txn, 3.0).requests)
    relay.run(("bob", "DEV1"), bob_engine.confirm_verification(asked.txn, 4.0).requests)
    relay.run(("alice", "DEV1"), alice_engine.confirm_verification(asked.txn, 5.0).requests)

    assert alice.contacts.get("bob").state == "verified"
    assert bob.contacts.get("alice").state == "verified"


def test_a_verification_idle_for_ten_minutes_is_cancelled_on_both_sides(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    relay.run(("bob", "DEV1"), bob_engine.encrypt_for(ROOM, ["alice"], "hi", 1.0).requests)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "hi", 1.0).requests)
    relay.run(
        ("alice", "DEV1"), alice_engine.start_verification("bob", "DEV1", "contact", 2.0).requests
    )

    assert alice_engine.tick(2.0 + 599).requests == []
    relay.run(("alice", "DEV1"), alice_engine.tick(2.0 + 600).requests)

    assert [e.reason for e in events_of(relay, ("bob", "DEV1"), VerificationCancelled)] == [
        "timeout"
    ]


def test_a_message_waiting_for_keys_is_not_advanced_again_by_the_next_one():
    """Found against the real server: a second encrypt_for re-ran the first message's
    step while its answers were awaited, asking again and later sending it twice."""
    alice = E2EEngine(make_user("alice"), new_id=iter(f"r{i}" for i in range(100)).__next__)
    pm = conversation_id(pm=("alice", "bob"))
    first = alice.encrypt_for(pm, ["bob"], "one", now=1.0)
    second = alice.encrypt_for(ROOM, ["bob"], "two", now=1.0)
    assert [r["type"] for r in first.requests] == ["keys_query"]
    assert second.requests == []  # queued behind the first, which is still waiting


def test_logging_in_again_and_again_keeps_about_fifty_one_time_keys_on_the_server(relay):
    alice = make_user("alice")
    for _ in range(4):
        relay.connect(alice, publish_user_key=True)

    assert relay.refused == []
    assert len(relay.one_time_keys[("alice", "DEV1")]) == 50
    uploads = [r for p, r in relay.sent if r["type"] == "keys_upload"]
    assert all("one_time_keys" not in r for r in uploads if "device_keys" in r)


def test_the_first_login_of_a_device_ends_with_one_time_keys_on_the_server(relay):
    bob = make_user("bob")
    relay.connect(bob, publish_user_key=True)
    alice = relay.connect(make_user("alice"), publish_user_key=True)
    relay.rooms["plans"] = ["alice", "bob"]

    assert len(relay.one_time_keys[("bob", "DEV1")]) == 50
    relay.run(("alice", "DEV1"), alice.encrypt_for(ROOM, ["bob"], "hi", 1.0).requests)
    assert len(relay.one_time_keys[("bob", "DEV1")]) == 49  # a real one-time key was claimed


def substitute_own_user_key(relay: Relay, victim) -> Any:
    """The server swaps ``victim``'s published user key for one of its own (same version)
    and adds a device it signed with it; the planted device's store."""
    user = victim.device.user
    planted = make_user(user, "PLANTED")
    planted.identity = UserIdentity.generate(user, version=victim.identity.version)
    relay.user_keys[user] = planted.identity.published_by(planted.device).to_wire()
    relay.connect(planted)
    relay.announce(user)
    return planted


def test_a_device_shares_room_keys_only_with_own_devices_its_own_user_key_signed(relay):
    alice, _, alice_engine, _ = connect_pair(relay)
    alice2 = add_device(alice, "DEV2", approved=True)
    relay.connect(alice2)
    substitute_own_user_key(relay, alice)

    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "secret", 1.0).requests)

    targets = to_device_targets(relay, ("alice", "DEV1"))
    assert ("alice", "PLANTED") not in targets
    assert {("bob", "DEV1"), ("alice", "DEV2")} <= targets


def test_a_key_request_from_a_device_signed_by_a_substituted_user_key_is_not_answered(relay):
    alice, _, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "secret", 1.0).requests)
    planted = substitute_own_user_key(relay, alice)
    sealed = room_messages(relay)[0]["e2e"]
    request = room_keys.room_key_request(ROOM, sealed, "PLANTED")
    body = olm_body(planted, alice, request)
    asked = {"type": "to_device", "id": "x", "messages": [{"user": "alice", "device": "DEV1"}]}
    asked["messages"][0]["body"] = body

    relay.run(("alice", "PLANTED"), [asked])

    assert ("alice", "PLANTED") not in to_device_targets(relay, ("alice", "DEV1"))
    assert not [e for e in relay.events[("alice", "PLANTED")] if isinstance(e, Shown)]


def test_a_refused_query_keeps_the_devices_known_and_the_message_goes_to_them(relay):
    _, _, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "one", 1.0).requests)
    relay.announce("bob")  # bob's list is stale now
    relay.refuse.append("keys_query")

    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "two", 2.0).requests)

    assert alice_engine.directory.device("bob", "DEV1") is not None
    assert shown(relay, ("bob", "DEV1")) == ["one", "two"]


def test_a_member_whose_first_query_was_refused_is_asked_again_at_the_next_message(relay):
    _, _, alice_engine, _ = connect_pair(relay)
    relay.refuse.append("keys_query")

    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "one", 1.0).requests)
    assert [r["type"] for r in room_messages(relay)] == ["send"]  # not held up for ever
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "two", 2.0).requests)

    assert ("bob", "DEV1") in to_device_targets(relay, ("alice", "DEV1"))
    assert shown(relay, ("bob", "DEV1"))[-1:] == ["two"]


# --- to-device pushes from a device not known yet ------------------------------------------


def room_key_push(sender, recipient, seq: int) -> dict[str, Any]:
    """A ``to_device`` push carrying a fresh room key from ``sender`` to ``recipient``."""
    group = OutboundGroup(ROOM, vodozemac.GroupSession(), 0.0)
    recipient_key = recipient.identity.ed25519
    payload = room_keys.room_key(group, sender.device, published(recipient), recipient_key)
    push = {"type": "to_device", "seq": seq, "from": sender.device.user}
    return {
        **push,
        "from_device": sender.device.device,
        "body": olm_body(sender, recipient, payload),
    }


def keys_answer(ref: str, *stores) -> dict[str, Any]:
    """A ``keys`` answer listing ``stores`` (devices of one user, the first holding the key)."""
    user = stores[0].device.user
    user_key = stores[0].identity.published_by(stores[0].device).to_wire()
    devices = [published(store).to_wire() for store in stores]
    entry = {"user_key": user_key, "devices": devices, "version": 1}
    return {"type": "keys", "ref": ref, "users": {user: entry}}


def acks(out) -> list[int]:
    return [r["upto"] for r in out.requests if r["type"] == "to_device_ack"]


def test_a_push_from_an_unknown_device_waits_for_the_answer_about_its_sender():
    alice, bob = make_user("alice"), make_user("bob")
    alice_laptop = add_device(alice, "DEV2", approved=True)
    bob_engine = E2EEngine(bob, new_id=iter(f"r{i}" for i in range(100)).__next__)

    asked = bob_engine.receive(room_key_push(alice_laptop, bob, seq=1), 1.0).requests
    (query,) = [r for r in asked if r["type"] == "keys_query"]
    assert query["users"] == ["alice"]
    unrelated = bob_engine.receive({"type": "keys", "ref": "someone-else", "users": {}}, 1.0)
    assert acks(unrelated) == []  # still held
    answered = bob_engine.receive(keys_answer(query["id"], alice, alice_laptop), 1.0)

    assert acks(answered) == [1]
    assert len(bob.groups.inbound) == 1  # read, not dropped


def test_a_push_whose_sender_stays_unknown_is_dropped_once_its_query_is_answered():
    alice, bob = make_user("alice"), make_user("bob")
    alice_laptop = add_device(alice, "DEV2", approved=True)
    bob_engine = E2EEngine(bob, new_id=iter(f"r{i}" for i in range(100)).__next__)

    (query,) = bob_engine.receive(room_key_push(alice_laptop, bob, seq=1), 1.0).requests
    answered = bob_engine.receive(keys_answer(query["id"], alice), 1.0)  # no DEV2 listed

    assert acks(answered) == [1]
    assert bob.groups.inbound == {}


def test_a_push_whose_senders_query_is_refused_is_dropped_and_the_next_one_read():
    alice, bob = make_user("alice"), make_user("bob")
    alice_laptop = add_device(alice, "DEV2", approved=True)
    bob_engine = E2EEngine(bob, new_id=iter(f"r{i}" for i in range(100)).__next__)

    (query,) = bob_engine.receive(room_key_push(alice_laptop, bob, seq=1), 1.0).requests
    refused = bob_engine.receive({"type": "error", "ref": query["id"], "code": "x"}, 1.0)
    assert acks(refused) == [1]
    (again,) = bob_engine.receive(room_key_push(alice_laptop, bob, seq=2), 1.0).requests
    read = bob_engine.receive(keys_answer(again["id"], alice, alice_laptop), 1.0)

    assert acks(read) == [2]


# --- a message shows only while its session's device is signed (4.5) ----------------------


def bob_with_a_phone(relay: Relay):
    """alice and bob in the room, bob with a second signed device that has said "hi"."""
    alice, bob, _, _ = connect_pair(relay)
    phone = add_device(bob, "DEV2", approved=True)
    phone_engine = relay.connect(phone)
    relay.announce("bob")
    relay.run(("bob", "DEV2"), phone_engine.encrypt_for(ROOM, ["alice"], "hi", 1.0).requests)
    assert shown(relay, ("alice", "DEV1")) == ["hi"]
    relay.events[("alice", "DEV1")] = [e for e in relay.events[("alice", "DEV1")] if e.text == "hi"]
    return alice, bob, phone


def show_again(relay: Relay, peer: tuple[str, str], number: int) -> None:
    """The room's message ``number`` (from 1) reaches ``peer`` again, as history does."""
    request = room_messages(relay)[number - 1]
    sender = next(p for p, r in relay.sent if r is request)[0]
    message = {"type": "message", "room": request["room"], "from": sender, "msg_id": number}
    relay.push(peer, {**message, "ts": LATER_TS, "e2e": request["e2e"]})
    relay.run(peer, [])


def reasons(relay: Relay, peer: tuple[str, str]) -> list[Undecryptable]:
    return [e.reason for e in relay.events[peer] if isinstance(e, NotShown)]


def test_a_message_from_a_device_revoked_since_is_not_shown(relay):
    bob_with_a_phone(relay)
    del relay.device_keys[("bob", "DEV2")]  # revoked
    relay.announce("bob")

    show_again(relay, ("alice", "DEV1"), 1)

    assert shown(relay, ("alice", "DEV1")) == ["hi"]  # only the first time
    assert reasons(relay, ("alice", "DEV1")) == [Undecryptable.SENDER_NOT_VERIFIED]


def test_a_message_from_a_device_unsigned_by_an_identity_reset_shows_once_signed_again(relay):
    _, bob, phone = bob_with_a_phone(relay)
    bob.identity = UserIdentity.generate("bob", version=2)  # reset on bob's DEV1
    relay.user_keys["bob"] = bob.identity.published_by(bob.device).to_wire()
    relay.device_keys[("bob", "DEV1")] = bob.identity.sign_device(
        bob.device.device_keys()
    ).to_wire()
    relay.device_keys[("bob", "DEV2")] = phone.device.device_keys().to_wire()  # unsigned now
    relay.announce("bob")

    show_again(relay, ("alice", "DEV1"), 1)
    assert reasons(relay, ("alice", "DEV1")) == [Undecryptable.SENDER_NOT_VERIFIED]

    resigned = bob.identity.sign_device(phone.device.device_keys())  # approved again
    relay.device_keys[("bob", "DEV2")] = resigned.to_wire()
    relay.announce("bob")
    assert shown(relay, ("alice", "DEV1")) == ["hi", "hi"]


def test_a_message_whose_senders_devices_were_never_fetched_waits_for_them(relay):
    alice, bob, phone = bob_with_a_phone(relay)
    alice.directory = DeviceDirectory()  # a store from before device lists were kept
    restarted = E2EEngine(alice, new_id=lambda: "q1")
    sealed = room_messages(relay)[0]["e2e"]
    message = {"type": "message", "room": "plans", "from": "bob", "msg_id": 1, "ts": LATER_TS}

    asked = restarted.receive({**message, "e2e": sealed}, 1.0)
    assert asked.events == [] and [r["users"] for r in asked.requests] == [["bob"]]
    answered = restarted.receive(keys_answer("q1", bob, phone), 1.0)

    assert [e.text for e in answered.events if isinstance(e, Shown)] == ["hi"]


# --- an identity reset from another device -------------------------------------------------


def reset_from(relay: Relay, store) -> None:
    """``store``'s device resets the identity: a new user key, published; the server drops
    every other device's user signature; the resetting device signs itself again."""
    user = store.device.user
    store.identity = UserIdentity.generate(user, version=store.identity.version + 1)
    relay.user_keys[user] = store.identity.published_by(store.device).to_wire()
    for peer in relay.users_devices(user):
        keys = DeviceKeys.from_wire(relay.device_keys[peer])
        relay.device_keys[peer] = replace(keys, user_signature=None).to_wire()
    own = store.identity.sign_device(store.device.device_keys())
    relay.device_keys[(user, store.device.device)] = own.to_wire()


def test_a_device_whose_identity_was_reset_elsewhere_stops_using_the_old_user_key(relay):
    alice, _, _, _ = connect_pair(relay)
    laptop = add_device(alice, "DEV2", approved=True)
    relay.connect(laptop)
    reset_from(relay, laptop)

    relay.announce("alice")

    assert alice.identity is None
    assert "user" not in relay.device_keys[("alice", "DEV1")]["signatures"]
    notices = [e.text for e in relay.events[("alice", "DEV1")] if isinstance(e, Notice)]
    assert notices == [STALE_IDENTITY_NOTICE]
    assert relay.refused == []


def test_a_device_offline_during_a_reset_finds_out_at_login_and_is_refused_no_more(relay):
    alice = make_user("alice")
    relay.connect(alice, publish_user_key=True)
    laptop = add_device(alice, "DEV2", approved=True)
    relay.connect(laptop)
    reset_from(relay, laptop)  # DEV1 hears nothing of it

    relay.connect(alice)
    assert alice.identity is None
    assert "user" not in relay.device_keys[("alice", "DEV1")]["signatures"]
    assert STALE_IDENTITY_NOTICE in [e.text for e in relay.events[("alice", "DEV1")]]
    refused_at_first = len(relay.refused)
    relay.connect(alice)

    assert len(relay.refused) == refused_at_first  # the next login uploads what is valid


def test_a_published_user_key_of_the_same_version_does_not_replace_ours(relay):
    alice, _, _, _ = connect_pair(relay)
    held = alice.identity
    substitute_own_user_key(relay, alice)

    assert alice.identity is held
