"""Verification flows driven directly, plaintext to plaintext (the engine adds Olm)."""

import pytest

from tk_client.e2e.sas import SasParty, SasVerification
from tk_client.e2e.verification import CodesReady, VerificationCancelled, Verifications

from .helpers import add_device, make_user, published


def codes_shown(alice, bob, kind="contact"):
    """Alice starts a verification (a contact's, by default) with bob; both reach the codes."""
    alice_side, bob_side = Verifications(alice), Verifications(bob)
    user_keys = {}
    txn, (start,) = alice_side.start(published(bob), kind, 0.0)
    bob_side.receive(published(alice), start, 1.0, user_keys)
    (bob_key,) = bob_side.accept(txn, 2.0)
    (alice_key,), events = alice_side.receive(published(bob), bob_key, 3.0, user_keys)
    assert isinstance(events[0], CodesReady)
    _, events = bob_side.receive(published(alice), alice_key, 4.0, user_keys)
    assert isinstance(events[0], CodesReady)
    return txn, alice_side, bob_side


def test_a_wrong_mac_cancels_with_mismatch():
    alice, bob = make_user("alice"), make_user("bob")
    txn, alice_side, bob_side = codes_shown(alice, bob)
    (mac,), _ = alice_side.confirm(txn, 5.0, bob.identity.ed25519)
    bob_side.confirm(txn, 6.0, alice.identity.ed25519)
    forged = {**mac, "mac": {k: "AAAA" for k in mac["mac"]}}

    alice_key = {"alice": alice.identity.published_by(alice.device)}
    bob.contacts.observe("alice", alice.identity.ed25519)
    sent, events = bob_side.receive(published(alice), forged, 7.0, alice_key)

    assert [p["reason"] for p in sent] == ["mismatch"]
    assert [e.reason for e in events if isinstance(e, VerificationCancelled)] == ["mismatch"]
    assert bob.contacts.get("alice").state == "tofu"


def test_the_right_mac_verifies_the_contact():
    alice, bob = make_user("alice"), make_user("bob")
    txn, alice_side, bob_side = codes_shown(alice, bob)
    (mac,), _ = alice_side.confirm(txn, 5.0, bob.identity.ed25519)
    bob_side.confirm(txn, 6.0, alice.identity.ed25519)

    alice_key = {"alice": alice.identity.published_by(alice.device)}
    bob.contacts.observe("alice", alice.identity.ed25519)  # from keys_query, in the engine
    sent, _ = bob_side.receive(published(alice), mac, 7.0, alice_key)

    assert [p["type"] for p in sent] == ["sas_done"]
    assert bob.contacts.get("alice").state == "verified"


def test_a_sas_key_out_of_order_cancels_as_unexpected():
    alice, bob = make_user("alice"), make_user("bob")
    txn, alice_side, _ = codes_shown(alice, bob)

    sent, _ = alice_side.receive(
        published(bob), {"type": "sas_key", "txn": txn, "key": "AAAA"}, 5.0, {}
    )

    assert [p["reason"] for p in sent] == ["unexpected"]


def test_messages_from_another_device_than_the_flows_are_ignored():
    alice, bob, mallory = make_user("alice"), make_user("bob"), make_user("mallory")
    txn, alice_side, _ = codes_shown(alice, bob)

    sent, events = alice_side.receive(
        published(mallory), {"type": "sas_cancel", "txn": txn, "reason": "user"}, 5.0, {}
    )

    assert (sent, events) == ([], [])
    assert alice_side.peer_of(txn) is not None


def test_a_contact_verification_from_an_unsigned_device_verifies_nobody():
    alice, bob = make_user("alice"), make_user("bob")
    alice_laptop = add_device(alice, "DEV2", approved=False)
    txn, laptop_side, bob_side = codes_shown(alice_laptop, bob)
    (mac,), _ = laptop_side.confirm(txn, 5.0, bob.identity.ed25519)
    bob_side.confirm(txn, 6.0, alice.identity.ed25519)
    bob.contacts.observe("alice", alice.identity.ed25519)

    alice_key = {"alice": alice.identity.published_by(alice.device)}
    sent, _ = bob_side.receive(published(alice_laptop), mac, 7.0, alice_key)

    assert [p["reason"] for p in sent] == ["mismatch"]
    assert bob.contacts.get("alice").state == "tofu"


def test_a_device_approval_of_another_users_device_cannot_start():
    alice, bob = make_user("alice"), make_user("bob")

    with pytest.raises(ValueError):
        Verifications(alice).start(published(bob), "device", 0.0)


def test_a_device_approval_started_by_another_user_is_ignored():
    alice, bob = make_user("alice"), make_user("bob")
    alice_laptop = add_device(alice, "DEV2", approved=False)
    laptop_side = Verifications(alice_laptop)
    bobs = SasVerification(
        SasParty("bob", "DEV1"), SasParty("alice", "DEV2"), "txn-1", we_started=True
    )

    sent, events = laptop_side.receive(published(bob), bobs.start(), 1.0, {})

    assert (sent, events) == ([], [])
    assert laptop_side.peer_of("txn-1") is None


def test_a_user_key_share_from_a_contact_is_refused():
    alice, bob = make_user("alice"), make_user("bob")
    alice_laptop = add_device(alice, "DEV2", approved=False)
    txn, bob_side, laptop_side = codes_shown(bob, alice_laptop)
    (mac,), _ = bob_side.confirm(txn, 5.0, None)
    laptop_side.confirm(txn, 6.0, bob.identity.ed25519)
    alice_laptop.contacts.observe("bob", bob.identity.ed25519)
    bob_key = {"bob": bob.identity.published_by(bob.device)}
    laptop_side.receive(published(bob), mac, 7.0, bob_key)
    assert alice_laptop.contacts.get("bob").state == "verified"  # a finished verification
    share = alice.identity.share(txn, published(alice_laptop))  # even a genuine one
    alice_key = {"alice": alice.identity.published_by(alice.device)}

    sent, _ = laptop_side.receive(published(bob), share, 8.0, alice_key)

    assert alice_laptop.identity is None
    assert sent == []


def test_a_user_key_share_in_a_contact_verification_between_own_devices_is_refused():
    alice = make_user("alice")
    alice_laptop = add_device(alice, "DEV2", approved=False)
    txn, _, laptop_side = codes_shown(alice, alice_laptop)
    alice_key = {"alice": alice.identity.published_by(alice.device)}
    alice_laptop.contacts.observe("alice", alice.identity.ed25519)
    laptop_side.confirm(txn, 5.0, alice.identity.ed25519)
    flow = laptop_side.flows[txn]
    flow.their_mac_ok = True  # as if alice's MAC had checked and the flow stayed open
    share = alice.identity.share(txn, published(alice_laptop))

    sent, _ = laptop_side.receive(published(alice), share, 6.0, alice_key)

    assert alice_laptop.identity is None
    assert [p["reason"] for p in sent] == ["unexpected"]


def test_our_own_devices_macs_are_checked_against_the_user_key_this_device_holds():
    alice = make_user("alice")
    alice_phone = add_device(alice, "DEV2", approved=True)
    txn, alice_side, phone_side = codes_shown(alice, alice_phone, kind="device")
    (mac, *_), _ = alice_side.confirm(txn, 5.0, alice.identity.ed25519)
    phone_side.confirm(txn, 6.0, None)
    substitute = make_user("alice", "PLANTED")  # the server publishes a user key of its own
    published_key = {"alice": substitute.identity.published_by(substitute.device)}

    sent, events = phone_side.receive(published(alice), mac, 7.0, published_key)

    assert sent == [] and events == []  # the MACs check; the approval goes on
