import pytest

from chatproto import e2e
from tk_client.e2e.device import ONE_TIME_KEYS_ON_SERVER, TOP_UP_BELOW
from tk_client.e2e.errors import UntrustedKeys
from tk_client.e2e.identity import UserIdentity
from tk_client.e2e.keys import ClaimedKey, DeviceKeys, PublishedUserKey

from .helpers import add_device, make_user, published


def test_device_keys_are_signed_by_the_device_over_the_object_with_its_purpose():
    bob = make_user("bob")

    wire = bob.device.device_keys().to_wire()
    checked = DeviceKeys.from_wire(wire)

    assert set(wire) == {"user", "device", "curve25519", "ed25519", "signatures"}
    assert set(wire["signatures"]) == {"device"}
    assert "purpose" not in wire
    payload = {k: v for k, v in wire.items() if k != "signatures"}
    assert checked.signed_bytes() == e2e.device_keys_payload(payload)
    assert b'"purpose":"chat.device_keys.v1"' in checked.signed_bytes()


def test_unknown_device_key_fields_are_signed_kept_and_sent_again():
    wire = make_user("bob").device.device_keys().to_wire()
    wire["colour"] = "blue"

    with pytest.raises(UntrustedKeys, match="not signed by its own key"):
        DeviceKeys.from_wire(wire)

    bob = make_user("bob")
    fields = {**bob.device.device_keys().public_fields(), "colour": "blue"}
    signed = {**fields, "signatures": {"device": bob.device.sign(e2e.device_keys_payload(fields))}}
    assert DeviceKeys.from_wire(signed).to_wire() == signed


def test_device_keys_with_a_changed_key_are_refused():
    wire = make_user("bob").device.device_keys().to_wire()
    wire["curve25519"] = make_user("mallory").device.curve25519

    with pytest.raises(UntrustedKeys, match="not signed by its own key"):
        DeviceKeys.from_wire(wire)


def test_the_user_key_signs_a_device_and_the_signature_checks_against_it():
    bob = make_user("bob")
    bob2 = add_device(bob, "DEV2", approved=False)

    signed = bob.identity.sign_device(published(bob2))

    assert not published(bob2).signed_by_user_key(bob.identity.ed25519)
    assert signed.signed_by_user_key(bob.identity.ed25519)
    assert not signed.signed_by_user_key(make_user("bob").identity.ed25519)
    assert DeviceKeys.from_wire(signed.to_wire()) == signed


def test_the_published_user_key_is_signed_by_the_publishing_device():
    bob = make_user("bob")

    published_key = PublishedUserKey.from_wire(bob.identity.published_by(bob.device).to_wire())

    assert published_key.published_by(published(bob))
    assert not published_key.published_by(published(make_user("bob")))


def test_one_time_keys_top_up_to_the_target_and_each_is_signed():
    bob = make_user("bob")

    first = bob.device.one_time_keys_to_upload(left_on_server=0)
    bob.device.mark_published()
    enough = bob.device.one_time_keys_to_upload(left_on_server=TOP_UP_BELOW)
    later = bob.device.one_time_keys_to_upload(left_on_server=TOP_UP_BELOW - 1)

    assert len(first) == ONE_TIME_KEYS_ON_SERVER == 50
    assert enough == []
    assert len(later) == ONE_TIME_KEYS_ON_SERVER - TOP_UP_BELOW + 1
    for key in first:
        ClaimedKey.from_wire({"user": "bob", "device": "DEV1", **key}).check(published(bob))


def test_keys_not_marked_published_are_offered_again():
    bob = make_user("bob")

    first = bob.device.one_time_keys_to_upload(left_on_server=0)
    again = bob.device.one_time_keys_to_upload(left_on_server=0)

    assert again == first


def test_the_fallback_key_is_signed_and_offered_until_published():
    bob = make_user("bob")

    fallback = bob.device.new_fallback_key()

    assert bob.device.unpublished_fallback_key() == fallback
    ClaimedKey.from_wire({"user": "bob", "device": "DEV1", **fallback, "fallback": True}).check(
        published(bob)
    )
    bob.device.mark_published()
    assert bob.device.unpublished_fallback_key() is None


def test_a_one_time_key_claimed_for_another_device_is_refused():
    bob = make_user("bob")
    key = bob.device.one_time_keys_to_upload(left_on_server=0)[0]
    claimed = ClaimedKey.from_wire({"user": "bob", "device": "DEV2", **key})

    with pytest.raises(UntrustedKeys):
        claimed.check(published(bob))


def test_a_user_key_share_is_section_4_7s_and_signs_the_new_device():
    bob = make_user("bob")
    bob2 = add_device(bob, "DEV2", approved=False)

    share = bob.identity.share("txn-1", bob2.device.device_keys())
    received = UserIdentity.from_share(share, "bob", bob.identity.published_by(bob.device))

    assert set(share) == {"type", "txn", "user_key", "version", "signature"}
    assert share["type"] == "user_key_share"
    signed = bob2.device.device_keys(user_signature=share["signature"])
    assert signed.signed_by_user_key(received.ed25519)


def test_a_shared_user_key_must_be_the_published_one():
    bob = make_user("bob")
    other = make_user("bob")
    share = bob.identity.share("txn-1", add_device(bob, "DEV2").device.device_keys())

    with pytest.raises(ValueError, match="not the published one"):
        UserIdentity.from_share(share, "bob", other.identity.published_by(other.device))
    with pytest.raises(ValueError, match="not the published one"):
        current = bob.identity.published_by(bob.device)
        UserIdentity.from_share({**share, "version": 2}, "bob", current)
