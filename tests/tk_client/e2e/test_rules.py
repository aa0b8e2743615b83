"""Client rules of docs/protocol.md section 4 that the other tests here did not check yet,
one test each (see docs/e2e-rule-tests.md for the whole mapping)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import vodozemac

from chatproto.e2e import (
    MAX_SAS_TRANSACTION_LENGTH,
    MAX_TO_DEVICE_MESSAGES,
    MEGOLM_TEXT,
    canonical_json,
    conversation_id,
)
from tk_client.e2e import room_keys
from tk_client.e2e.engine import E2EEngine
from tk_client.e2e.errors import DecryptionFailed
from tk_client.e2e.link import E2ELink
from tk_client.e2e.sas import SasParty, SasVerification
from tk_client.e2e.store import CryptoStore
from tk_client.e2e.verification import VerificationRequested, Verifications
from tk_client.model import pm_key

from .helpers import DAY, add_device, make_user, olm_body, published, user_key
from .test_engine import LATER_TS, ROOM, Relay, connect_pair, room_messages
from .test_link import SERVER, answer
from .test_link import FakeSession as LinkSession
from .test_verification import codes_shown


@pytest.fixture
def relay() -> Relay:
    return Relay()


def to_device_messages_to(relay: Relay, sender, target, since: int = 0) -> int:
    """How many to-device messages ``sender`` addressed to ``target`` after ``since``."""
    return sum(
        1
        for peer, request in relay.sent[since:]
        if peer == sender and request["type"] == "to_device"
        for message in request["messages"]
        if (message["user"], message["device"]) == target
    )


# --- 4.3: tracking device lists ----------------------------------------------------------


def test_on_connecting_a_client_asks_what_changed_since_the_version_it_saw_last():
    alice = make_user("alice")
    alice.device_list_version = 7
    engine = E2EEngine(alice, new_id=iter(f"r{i}" for i in range(100)).__next__)

    asked = [r for r in engine.login().requests if r["type"] == "device_list_changes"]
    engine.receive({"type": "devices_changed", "users": ["nobody"], "version": 9}, 1.0)

    assert [r["since"] for r in asked] == [7]
    assert alice.device_list_version == 9  # what the next connection asks from


def test_a_change_named_for_a_tracked_user_makes_the_client_query_them(relay):
    _, _, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "hi", 1.0).requests)

    out = alice_engine.receive(
        {"type": "device_list_changes", "ref": "x", "version": 5, "users": ["bob"]}, 2.0
    )

    assert [(r["type"], r["users"]) for r in out.requests] == [("keys_query", ["bob"])]


def test_a_restarted_client_still_has_the_device_lists_it_fetched(relay, tmp_path):
    from tk_client.e2e.keyfile import load_or_create_pickle_key

    alice, _, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "hi", 1.0).requests)
    key = load_or_create_pickle_key(tmp_path)
    alice.save(tmp_path / "store.json", key)

    restarted = E2EEngine(CryptoStore.load(tmp_path / "store.json", key), new_id=lambda: "q")

    assert restarted.directory.device("bob", "DEV1") is not None


# --- 4.3: one-time and fallback keys -------------------------------------------------------


def test_the_fallback_key_is_replaced_at_least_once_a_week(relay):
    alice = make_user("alice")
    engine = relay.connect(alice, publish_user_key=True)
    first = relay.fallback[("alice", "DEV1")]

    relay.run(("alice", "DEV1"), engine.tick(8 * DAY).requests)

    assert relay.fallback[("alice", "DEV1")]["key"] != first["key"]


def test_a_fallback_key_younger_than_a_week_is_kept(relay):
    alice = make_user("alice")
    engine = relay.connect(alice, publish_user_key=True)  # published at 1.0

    assert engine.tick(6 * DAY).requests == []
    assert [r["type"] for r in engine.tick(1.0 + 7 * DAY + 1).requests] == ["keys_upload"]
    assert engine.tick(1.0 + 7 * DAY + 2).requests == []  # that upload is still on its way


# --- 4.4: to-device messages -----------------------------------------------------------------


def test_a_plaintext_naming_another_sender_than_the_pushs_is_dropped():
    alice, bob = make_user("alice"), make_user("bob")
    alice.olm._addressing = lambda peer: {  # the plaintext claims another device of alice's
        "sender": "alice",
        "sender_device": "DEV9",
        "recipient": "bob",
        "recipient_device": "DEV1",
    }
    passed_off = olm_body(alice, bob, {"type": "ping"})

    with pytest.raises(DecryptionFailed):
        bob.olm.decrypt(published(alice), passed_off)


def test_a_to_device_body_that_fails_to_decrypt_is_dropped_and_acked(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "hi", 1.0).requests)
    garbage = {"algorithm": "olm.v1", "sender_key": published(make_user("x")).curve25519}
    push = {"type": "to_device", "seq": 50, "from": "alice", "from_device": "DEV1"}

    out = bob_engine.receive({**push, "body": {**garbage, "type": 1, "ciphertext": "AwgA"}}, 2.0)

    assert out.events == []
    assert [r for r in out.requests if r["type"] == "to_device_ack"] == [
        {"type": "to_device_ack", "upto": 50}
    ]


def test_a_client_acks_only_after_saving_what_the_message_changed(tmp_path):
    session = LinkSession()
    link = E2ELink.open(session, tmp_path, SERVER, "alice", "DEV1", clock=lambda: 1000.0)
    order: list[str] = []
    saving = link.store.save
    link.store.save = lambda *a: (order.append("saved"), saving(*a))[1]  # type: ignore[method-assign]
    sending = session.send_message
    session.send_message = lambda m: (order.append(m["type"]), sending(m))[1]  # type: ignore[method-assign]
    body = {"algorithm": "olm.v1", "sender_key": "A" * 43, "type": 1, "ciphertext": "AwgA"}
    push = {"type": "to_device", "seq": 3, "from": "bob", "from_device": "X", "body": body}

    link.pushed(push)  # from a device not known: its user's keys are asked for first
    query = session.of("keys_query")[-1]
    order.clear()
    answer(link, query, {"type": "keys", "users": {}})  # still unknown: dropped, acked

    assert "to_device_ack" in order
    assert "saved" in order[: order.index("to_device_ack")]


# --- 4.5: the Megolm plaintext ---------------------------------------------------------------


def test_the_megolm_plaintext_is_the_canonical_json_of_its_five_fields():
    alice = make_user("alice")
    group, _ = alice.groups.outbound_for(ROOM, 0.0, set(), set())
    key_at_zero = group.session_key()
    device = alice.device

    sealed = alice.groups.encrypt(group, "héllo", "alice", "DEV1", device.curve25519)

    inbound = vodozemac.InboundGroupSession(vodozemac.SessionKey(key_at_zero))
    plaintext = inbound.decrypt(vodozemac.MegolmMessage.from_base64(sealed["ciphertext"]))
    assert plaintext.plaintext == canonical_json(
        {
            "type": MEGOLM_TEXT,
            "text": "héllo",
            "conversation": ROOM,
            "sender": "alice",
            "sender_device": "DEV1",
        }
    )
    assert set(sealed) == {"algorithm", "sender_key", "device", "session_id", "ciphertext"}


def test_a_text_past_the_limit_is_refused_by_the_sender_before_it_is_encrypted():
    from tests.tk_client.fake_e2e import FakeLink
    from tests.tk_client.test_controller_e2e import ROOMS, FakeSession, RecordingView
    from tk_client.controller import ChatController
    from tk_client.events import LoggedIn

    encrypted: list[str] = []

    class RecordingLink(FakeLink):
        def encrypt(self, conversation, members, text, on_request):
            encrypted.append(text)
            return super().encrypt(conversation, members, text, on_request)

    session, view = FakeSession(), RecordingView()

    opener = lambda user, device: RecordingLink(session, user, device)  # noqa: E731
    controller = ChatController(session, view, e2e_opener=opener, autoload_history=False)
    controller.handle(LoggedIn("me", ROOMS, again=False, device="d1"))
    controller.select(pm_key("alice"))
    assert controller.submit("a fine message") is True  # the limit is what refuses below
    encrypted.clear()

    assert controller.submit("x" * (controller.max_text + 1)) is False
    assert controller.submit("   ") is False
    assert encrypted == []


# --- 4.6: room keys and key requests -----------------------------------------------------------


def test_a_room_key_carries_exactly_section_4_4s_fields():
    alice, bob = make_user("alice"), make_user("bob")
    group, _ = alice.groups.outbound_for(ROOM, 0.0, set(), set())

    payload = room_keys.room_key(group, alice.device, published(bob), user_key(bob))

    assert payload == {
        "type": "room_key",
        "conversation": ROOM,
        "session_id": group.session_id,
        "session_key": group.session_key(),
        "sender_ed25519": alice.device.ed25519,
        "recipient_ed25519": bob.device.ed25519,
    }


def history_message(relay: Relay, number: int) -> dict[str, Any]:
    sealed = room_messages(relay)[number - 1]["e2e"]
    message = {"type": "message", "room": "plans", "from": "alice", "msg_id": number}
    return {**message, "ts": LATER_TS, "e2e": sealed}


def test_a_missing_key_is_asked_for_once_per_session_and_again_after_a_reconnect(relay):
    _, bob, alice_engine, _ = connect_pair(relay)
    for n, text in enumerate(["one", "two"]):
        relay.run(
            ("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], text, 1.0 + n).requests
        )
    del relay.engines[("bob", "DEV1")]  # offline: nobody answers the requests
    bob2 = add_device(bob, "DEV2", approved=True)
    bob2_engine = relay.connect(bob2)
    new, old = ("bob", "DEV2"), ("bob", "DEV1")

    for number in (1, 2):  # two messages of one session
        relay.push(new, history_message(relay, number))
    relay.run(new, [])
    assert to_device_messages_to(relay, new, old) == 1
    before = len(relay.sent)

    relay.run(new, bob2_engine.login().requests)  # a reconnect, the key still missing

    assert to_device_messages_to(relay, new, old, since=before) == 1


def test_no_key_is_forwarded_for_a_room_the_user_has_left(relay):
    _, bob, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "early", 1.0).requests)
    relay.rooms["plans"] = ["alice"]  # bob left (or was removed from) the room
    bob2 = add_device(bob, "DEV2", approved=True)
    relay.connect(bob2)
    relay.announce("bob")
    before = len(relay.sent)

    relay.push(("bob", "DEV2"), history_message(relay, 1))
    relay.run(("bob", "DEV2"), [])

    assert to_device_messages_to(relay, ("bob", "DEV2"), ("bob", "DEV1"), since=before) == 1
    assert to_device_messages_to(relay, ("bob", "DEV1"), ("bob", "DEV2"), since=before) == 0


def test_a_key_of_a_private_chat_is_forwarded_to_an_own_device(relay):
    from .test_engine import shown

    _, bob, alice_engine, _ = connect_pair(relay)
    pm = conversation_id(pm=("alice", "bob"))
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(pm, ["bob"], "early", 1.0).requests)
    bob2 = add_device(bob, "DEV2", approved=True)
    relay.connect(bob2)
    relay.announce("bob")
    sealed = next(r for _, r in relay.sent if r["type"] == "pm")["e2e"]
    private = {"type": "private", "from": "alice", "to": "bob", "msg_id": 1, "ts": LATER_TS}

    relay.push(("bob", "DEV2"), {**private, "e2e": sealed})
    relay.run(("bob", "DEV2"), [])

    assert shown(relay, ("bob", "DEV2")) == ["early"]


def test_the_controller_tells_the_link_the_private_rooms_the_user_is_in():
    from tests.tk_client.fake_e2e import FakeLink
    from tests.tk_client.test_controller import push
    from tests.tk_client.test_controller_e2e import ROOMS, FakeSession, RecordingView
    from tk_client.controller import ChatController
    from tk_client.events import LoggedIn

    session, links = FakeSession(), []

    def opener(user, device):
        links.append(FakeLink(session, user, device))
        return links[-1]

    controller = ChatController(session, RecordingView(), e2e_opener=opener)
    controller.handle(LoggedIn("me", ROOMS, again=False, device="d1"))
    told_at_login = links[0].private_rooms
    hidden = {"name": "hidden", "private": True, "owner": "bob", "members": ["bob"]}
    rooms = [r for r in ROOMS if r["name"] != "secret"] + [hidden]
    push(controller, {"type": "rooms", "rooms": rooms})

    assert told_at_login == ["secret"]
    assert links[0].private_rooms == []  # removed from #secret; never in #hidden


# --- 4.7: device approval ----------------------------------------------------------------------


def test_a_sas_transaction_id_is_1_to_64_characters():
    us, them = SasParty("bob", "DEV1"), SasParty("bob", "DEV2")
    SasVerification(us, them, "t" * MAX_SAS_TRANSACTION_LENGTH, we_started=True)
    for txn in ("", "t" * (MAX_SAS_TRANSACTION_LENGTH + 1)):
        with pytest.raises(ValueError):
            SasVerification(us, them, txn, we_started=True)


def test_a_sas_start_with_a_too_long_transaction_id_is_ignored():
    alice, bob = make_user("alice"), make_user("bob")
    start = SasVerification(
        SasParty("alice", "DEV1"), SasParty("bob", "DEV1"), "t" * 64, True, "contact"
    ).start()

    sent, events = Verifications(bob).receive(published(alice), {**start, "txn": "t" * 65}, 1.0, {})

    assert sent == [] and not [e for e in events if isinstance(e, VerificationRequested)]


def test_a_signed_device_macs_its_device_key_and_the_user_key_an_unsigned_one_only_its_own():
    alice = make_user("alice")
    new = add_device(alice, "DEV2", approved=False)
    txn, old_side, new_side = codes_shown(alice, new, kind="device")

    (old_mac,), _ = old_side.confirm(txn, 5.0, None)
    (new_mac,), _ = new_side.confirm(txn, 6.0, alice.identity.ed25519)

    assert set(old_mac["mac"]) == {"ed25519:DEV1", "user:alice"}
    assert set(new_mac["mac"]) == {"ed25519:DEV2"}
    assert {"keys", "txn"} <= set(old_mac) and {"keys", "txn"} <= set(new_mac)


# --- 4.8: contact verification -----------------------------------------------------------------


def test_a_changed_verified_contact_blocks_sending_to_a_private_room_they_are_in(relay):
    from tk_client.e2e.errors import SendingBlocked
    from tk_client.e2e.identity import UserIdentity

    alice, bob, alice_engine, _ = connect_pair(relay)
    carol = make_user("carol")
    relay.connect(carol, publish_user_key=True)
    relay.run(
        ("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob", "carol"], "hi", 1.0).requests
    )
    alice.contacts.verify("bob", bob.identity.ed25519)
    bob.identity = UserIdentity.generate("bob", version=2)
    relay.user_keys["bob"] = bob.identity.published_by(bob.device).to_wire()
    relay.announce("bob")
    pm_with_carol = conversation_id(pm=("alice", "carol"))

    with pytest.raises(SendingBlocked):
        alice_engine.encrypt_for(ROOM, ["bob", "carol"], "still there?", 2.0)
    assert alice_engine.encrypt_for(pm_with_carol, ["carol"], "only you", 2.0).requests
    alice.contacts.acknowledge("bob")
    assert alice.contacts.get("bob").state == "tofu"
    assert alice_engine.encrypt_for(ROOM, ["bob", "carol"], "again", 3.0).requests


# --- 4.10: keys at rest ----------------------------------------------------------------------


def test_no_text_or_key_of_a_conversation_reaches_the_logs(relay, caplog):
    caplog.set_level(logging.DEBUG)
    alice, _, alice_engine, _ = connect_pair(relay)
    relay.run(
        ("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "the vault code", 1.0).requests
    )
    (group,) = alice.groups.outbound.values()

    logged = caplog.text + repr([r.args for r in caplog.records])
    assert "the vault code" not in logged
    assert group.session_key() not in logged
    assert alice.identity is not None
    assert alice.identity.share("t", published(alice))["user_key"] not in logged


# --- 4.3 and 4.4: requests that fit the protocol's bounds ------------------------------------


def many_devices(owner, count: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """``count`` devices of ``owner``'s user, signed by its user key, as ``keys`` lists them;
    and one signed one-time key of each, by device id."""
    from tk_client.e2e.device import DeviceAccount

    devices, one_time_keys = [], {}
    for number in range(count):
        account = DeviceAccount.create(owner.device.user, f"D{number:04}")
        devices.append(owner.identity.sign_device(account.device_keys()).to_wire())
        account.account.generate_one_time_keys(1)
        (one_time_keys[account.device],) = account.unpublished_one_time_keys()
    return devices, one_time_keys


def test_a_room_key_for_more_than_1000_devices_is_claimed_and_sent_in_requests_within_bounds():
    from chatproto.e2e import MAX_KEYS_CLAIM_DEVICES
    from chatproto.limits import MAX_PLAINTEXT_SIZE

    alice, bob = make_user("alice"), make_user("bob")
    engine = E2EEngine(alice, new_id=iter(f"r{i}" for i in range(10_000)).__next__)
    devices, one_time_keys = many_devices(bob, MAX_TO_DEVICE_MESSAGES + 1)
    entry = {"user_key": bob.identity.published_by(bob.device).to_wire(), "devices": devices}
    pm = conversation_id(pm=("alice", "bob"))

    waiting = engine.encrypt_for(pm, ["bob"], "hello all of you", 1.0).requests
    sent: list[dict[str, Any]] = []
    while waiting:
        request = waiting.pop(0)
        sent.append(request)
        if request["type"] == "keys_query":
            users = {name: {**entry, "version": 1} for name in request["users"] if name == "bob"}
            reply = {"type": "keys", "ref": request["id"], "users": users}
        elif request["type"] == "keys_claim":
            keys = [
                {**asked, **one_time_keys[asked["device"]], "fallback": False}
                for asked in request["devices"]
                if asked["user"] == "bob"
            ]
            reply = {"type": "keys_claimed", "ref": request["id"], "keys": keys}
        else:
            continue
        waiting.extend(engine.receive(reply, 1.0).requests)

    claims = [r for r in sent if r["type"] == "keys_claim"]
    to_device = [r for r in sent if r["type"] == "to_device"]
    assert all(1 <= len(r["devices"]) <= MAX_KEYS_CLAIM_DEVICES for r in claims)
    assert all(1 <= len(r["messages"]) <= MAX_TO_DEVICE_MESSAGES for r in to_device)
    assert all(len(canonical_json(r)) <= MAX_PLAINTEXT_SIZE for r in to_device)
    reached = {m["device"] for r in to_device for m in r["messages"]}
    assert reached == {d["device"] for d in devices}


def test_a_to_device_carries_at_most_1000_messages_however_small():
    engine = E2EEngine(make_user("alice"), new_id=iter(f"r{i}" for i in range(10)).__next__)
    messages = [{"user": "bob", "device": f"D{n}", "body": {}} for n in range(1_001)]

    requests = engine._to_device_requests(messages)

    assert [len(r["messages"]) for r in requests] == [MAX_TO_DEVICE_MESSAGES, 1]


def test_a_to_device_refused_as_unknown_device_makes_the_client_refresh_and_send_again():
    from .test_engine import keys_answer

    alice, bob = make_user("alice"), make_user("bob")
    engine = E2EEngine(alice, new_id=iter(f"r{i}" for i in range(100)).__next__)
    pm = conversation_id(pm=("alice", "bob"))
    (query,) = engine.encrypt_for(pm, ["bob"], "hi", 1.0).requests
    (claiming,) = engine.receive(keys_answer(query["id"], bob), 1.0).requests
    (uploaded, *_) = bob.device.one_time_keys_to_upload(left_on_server=0)
    one_time_key = {"user": "bob", "device": "DEV1", **uploaded, "fallback": False}
    claimed = {"type": "keys_claimed", "ref": claiming["id"], "keys": [one_time_key]}
    (to_device,) = [r for r in engine.receive(claimed, 1.0).requests if r["type"] == "to_device"]

    refused = {"type": "error", "ref": to_device["id"], "code": "unknown_device"}
    out = engine.receive({**refused, "message": "'bob' has no device 'DEV1'"}, 2.0)

    (again,) = [r for r in out.requests if r["type"] == "keys_query"]
    assert again["users"] == ["bob"]
    resent = engine.receive(keys_answer(again["id"], bob), 2.0).requests
    assert [r["type"] for r in resent if r["type"] in ("keys_claim", "to_device")]


def test_a_room_key_refused_again_is_not_sent_a_third_time():
    from .test_engine import keys_answer

    alice, bob = make_user("alice"), make_user("bob")
    engine = E2EEngine(alice, new_id=iter(f"r{i}" for i in range(100)).__next__)
    pm = conversation_id(pm=("alice", "bob"))
    (query,) = engine.encrypt_for(pm, ["bob"], "hi", 1.0).requests
    (claiming,) = engine.receive(keys_answer(query["id"], bob), 1.0).requests
    (uploaded, *_) = bob.device.one_time_keys_to_upload(left_on_server=0)
    one_time_key = {"user": "bob", "device": "DEV1", **uploaded, "fallback": False}
    claimed = {"type": "keys_claimed", "ref": claiming["id"], "keys": [one_time_key]}
    out = engine.receive(claimed, 1.0)
    refused = {"type": "error", "code": "unknown_device", "message": "no such device"}
    for _ in range(2):  # refused, asked again, sent again; then refused again
        (to_device,) = [r for r in out.requests if r["type"] == "to_device"]
        (again,) = engine.receive({**refused, "ref": to_device["id"]}, 2.0).requests
        out = engine.receive(keys_answer(again["id"], bob), 2.0)

    assert [r["type"] for r in out.requests] == []
    assert [r["type"] for r in engine.encrypt_for(pm, ["bob"], "next", 3.0).requests] == [
        "to_device",
        "pm",
    ]  # the next message shares the key it never got


# --- 4.6: who gets the current session ---------------------------------------------------------


def session_ids(relay: Relay) -> list[str]:
    return [request["e2e"]["session_id"] for request in room_messages(relay)]


def test_a_members_new_signed_device_gets_the_current_session_from_the_next_message(relay):
    from .test_engine import shown

    _, bob, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "one", 1.0).requests)
    relay.connect(add_device(bob, "DEV2", approved=True))
    relay.announce("bob")

    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "two", 2.0).requests)

    first, second = session_ids(relay)
    assert first == second  # no rotation for a device that appears
    assert shown(relay, ("bob", "DEV2")) == ["two"]


def test_a_member_who_joins_reads_from_the_current_index_on_without_a_rotation(relay):
    from tk_client.e2e.engine import Shown

    from .test_engine import shown

    _, _, alice_engine, _ = connect_pair(relay)
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "before", 1.0).requests)
    relay.connect(make_user("carol"), publish_user_key=True)
    relay.rooms["plans"] = ["alice", "bob", "carol"]

    relay.run(
        ("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob", "carol"], "after", 2.0).requests
    )
    relay.push(("carol", "DEV1"), history_message(relay, 1))  # history shows her the first
    relay.run(("carol", "DEV1"), [])

    assert len(set(session_ids(relay))) == 1
    assert shown(relay, ("carol", "DEV1")) == ["after"]
    about_before = [e for e in relay.events[("carol", "DEV1")] if e.msg_id == 1]
    assert about_before and not [e for e in about_before if isinstance(e, Shown)]


@pytest.mark.parametrize("change", ["revoked", "identity reset"])
def test_a_members_device_revoked_or_unsigned_by_a_reset_makes_the_next_message_rotate(
    relay, change
):
    from .test_engine import reset_from

    _, bob, alice_engine, _ = connect_pair(relay)
    relay.connect(add_device(bob, "DEV2", approved=True))
    relay.announce("bob")
    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "one", 1.0).requests)
    if change == "revoked":
        del relay.device_keys[("bob", "DEV2")]
    else:
        reset_from(relay, bob)  # bob's DEV1 resets: DEV2 loses its user signature
    relay.announce("bob")
    before = len(relay.sent)

    relay.run(("alice", "DEV1"), alice_engine.encrypt_for(ROOM, ["bob"], "two", 2.0).requests)

    first, second = session_ids(relay)
    assert first != second
    assert to_device_messages_to(relay, ("alice", "DEV1"), ("bob", "DEV2"), since=before) == 0
    assert to_device_messages_to(relay, ("alice", "DEV1"), ("bob", "DEV1"), since=before) == 1


# --- 4.3: two first devices racing -------------------------------------------------------------


def test_a_device_that_loses_the_race_to_publish_the_first_user_key_waits_for_approval(tmp_path):
    from tk_client.e2e.engine import Notice
    from tk_client.e2e.link import WAIT_FOR_APPROVAL

    session = LinkSession()
    link = E2ELink.open(session, tmp_path, SERVER, "alice", "DEV1", clock=lambda: 1000.0)
    link.logged_in()
    answer(link, session.of("keys_query")[-1], {"type": "keys", "users": {}})  # no key yet
    publish = session.of("user_key_publish")[-1]

    events = answer(link, publish, {"type": "error", "code": "conflict", "message": "taken"})

    assert Notice(WAIT_FOR_APPROVAL) in events
    assert not link.approved and link.store.identity is None
    uploads = [r.message for r in session.of("keys_upload")]
    assert all("user" not in r.get("device_keys", {}).get("signatures", {}) for r in uploads)
