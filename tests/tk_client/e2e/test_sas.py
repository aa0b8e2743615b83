import pytest

from tk_client.e2e.errors import VerificationFailed
from tk_client.e2e.sas import EMOJI, SasParty, SasVerification

from .helpers import add_device, make_user

NEW, OLD = SasParty("bob", "DEV2"), SasParty("bob", "DEV1")


def exchange(transaction="tx-1"):
    """The new device starts; each side receives the other's key in protocol order."""
    starter = SasVerification(NEW, OLD, transaction, we_started=True)
    other = SasVerification(OLD, NEW, transaction, we_started=False)
    commitment = starter.commitment()  # sas_start
    starter.receive_key(other.public_key)  # other's sas_key
    other.receive_key(starter.public_key, commitment)  # starter's sas_key
    return starter, other


def test_both_devices_show_the_same_seven_emoji_and_numbers():
    starter, other = exchange()

    assert starter.emoji() == other.emoji()
    assert len(starter.emoji()) == 7
    assert all(emoji in EMOJI for emoji in starter.emoji())
    assert starter.decimals() == other.decimals()
    assert all(1000 <= n <= 9191 for n in starter.decimals())
    assert len(EMOJI) == 64


def test_a_key_swapped_in_between_shows_different_codes():
    starter = SasVerification(NEW, OLD, "tx-1", we_started=True)
    other = SasVerification(OLD, NEW, "tx-1", we_started=False)
    mallory_to_starter = SasVerification(OLD, NEW, "tx-1", we_started=False)
    mallory_to_other = SasVerification(NEW, OLD, "tx-1", we_started=True)
    starter.receive_key(mallory_to_starter.public_key)
    other.receive_key(mallory_to_other.public_key, mallory_to_other.commitment())

    assert starter.emoji() != other.emoji()
    assert starter.decimals() != other.decimals()


def test_a_starter_key_that_does_not_match_its_commitment_is_refused():
    other = SasVerification(OLD, NEW, "tx-1", we_started=False)
    committed = SasVerification(NEW, OLD, "tx-1", we_started=True)
    swapped = SasVerification(NEW, OLD, "tx-1", we_started=True)

    with pytest.raises(VerificationFailed):
        other.receive_key(swapped.public_key, committed.commitment())


def test_macs_of_the_verified_keys_check_on_the_other_side():
    bob = make_user("bob")
    bob2 = add_device(bob, "DEV2", approved=False)
    starter, other = exchange()
    new_keys = {"ed25519:DEV2": bob2.device.ed25519}

    other.check_macs(new_keys, starter.macs(new_keys))


def test_a_mac_over_another_key_is_detected():
    bob = make_user("bob")
    bob2 = add_device(bob, "DEV2", approved=False)
    impostor = add_device(bob, "DEV2", approved=False)
    starter, other = exchange()

    with pytest.raises(VerificationFailed, match="do not match"):
        other.check_macs(
            {"ed25519:DEV2": bob2.device.ed25519},
            starter.macs({"ed25519:DEV2": impostor.device.ed25519}),
        )


def test_a_mac_message_that_drops_a_key_is_detected():
    starter, other = exchange()
    keys = {"ed25519:DEV2": "key-a", "user:bob": "key-b"}
    sent = starter.macs(keys)
    dropped = {"mac": {"ed25519:DEV2": sent["mac"]["ed25519:DEV2"]}, "keys": sent["keys"]}

    with pytest.raises(VerificationFailed):
        other.check_macs(keys, dropped)


def test_macs_from_another_transaction_do_not_check():
    starter, _ = exchange("tx-1")
    _, other = exchange("tx-2")
    keys = {"ed25519:DEV2": "key-a"}

    with pytest.raises(VerificationFailed):
        other.check_macs(keys, starter.macs(keys))
