import pytest

from chatproto.e2e import OLM_NORMAL as NORMAL
from chatproto.e2e import OLM_PRE_KEY as PRE_KEY
from tk_client.e2e.errors import DecryptionFailed, UntrustedKeys
from tk_client.e2e.keys import ClaimedKey

from .helpers import add_device, claim, make_user, olm_body, published, send


def test_first_message_is_a_pre_key_message_that_makes_the_inbound_session():
    alice, bob = make_user("alice"), make_user("bob")

    body = olm_body(alice, bob, {"type": "ping", "n": 1})
    received = bob.olm.decrypt(published(alice), body)

    assert body["type"] == PRE_KEY
    assert body["sender_key"] == alice.device.curve25519
    assert received.payload == {
        "type": "ping",
        "n": 1,
        "sender": "alice",
        "sender_device": "DEV1",
        "recipient": "bob",
        "recipient_device": "DEV1",
    }
    assert received.sender.peer == ("alice", "DEV1")
    assert bob.olm.has_session(published(alice))


def test_the_answer_uses_the_same_session_and_is_a_normal_message():
    alice, bob = make_user("alice"), make_user("bob")
    send(alice, bob, {"type": "ping"})

    body = olm_body(bob, alice, {"type": "pong"})

    assert body["type"] == NORMAL
    assert alice.olm.decrypt(published(bob), body).payload["type"] == "pong"


def test_a_one_time_key_not_signed_by_its_device_makes_no_session():
    alice, bob = make_user("alice"), make_user("bob")
    mallory = make_user("mallory")
    forged = claim(mallory)
    claimed = ClaimedKey("bob", "DEV1", forged.key_id, forged.key, forged.signature)

    with pytest.raises(UntrustedKeys):
        alice.olm.encrypt(published(bob), {"type": "ping"}, claimed)
    assert not alice.olm.has_session(published(bob))


def test_a_body_whose_sender_key_is_not_the_senders_device_fails_opaquely():
    alice, bob = make_user("alice"), make_user("bob")
    bob2 = add_device(bob, "DEV2")
    body = olm_body(alice, bob, {"type": "ping"})

    with pytest.raises(DecryptionFailed) as failure:
        bob.olm.decrypt(published(bob2), body)
    assert str(failure.value) == "this message could not be decrypted"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: {**body, "ciphertext": body["ciphertext"][:-6] + "AAAAAA"},
        lambda body: {**body, "ciphertext": "not base64!"},
        lambda body: {**body, "type": 7},
        lambda body: {**body, "algorithm": "megolm.v1"},
    ],
)
def test_a_tampered_olm_body_fails_with_the_one_opaque_error(tamper):
    alice, bob = make_user("alice"), make_user("bob")
    send(alice, bob, {"type": "ping"})
    body = olm_body(alice, bob, {"type": "secret"})

    with pytest.raises(DecryptionFailed) as failure:
        bob.olm.decrypt(published(alice), tamper(body))
    assert str(failure.value) == "this message could not be decrypted"


def test_a_replayed_pre_key_message_on_the_fallback_key_is_refused():
    alice, bob = make_user("alice"), make_user("bob")
    fallback = ClaimedKey.from_wire(
        {"user": "bob", "device": "DEV1", **bob.device.new_fallback_key(), "fallback": True}
    )
    body = alice.olm.encrypt(published(bob), {"type": "ping"}, fallback)
    assert bob.olm.decrypt(published(alice), body).payload["type"] == "ping"

    with pytest.raises(DecryptionFailed):
        bob.olm.decrypt(published(alice), body)


def test_a_plaintext_addressed_to_another_device_is_dropped():
    alice, bob = make_user("alice"), make_user("bob")
    body = olm_body(alice, bob, {"type": "ping"})
    alice.olm._addressing = lambda peer: {  # a sender that names bob's other device inside
        "sender": "alice",
        "sender_device": "DEV1",
        "recipient": "bob",
        "recipient_device": "DEV2",
    }
    misaddressed = alice.olm.encrypt(published(bob), {"type": "ping"})

    bob.olm.decrypt(published(alice), body)
    with pytest.raises(DecryptionFailed):
        bob.olm.decrypt(published(alice), misaddressed)
