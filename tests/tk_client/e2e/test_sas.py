import pytest
import vodozemac

from chatproto import e2e
from tk_client.e2e.errors import VerificationFailed
from tk_client.e2e.sas import EMOJI, SasParty, SasVerification

from .helpers import add_device, make_user

NEW, OLD = SasParty("bob", "DEV2"), SasParty("bob", "DEV1")


def exchange(transaction="tx-1"):
    """The new device starts; each side receives the other's key in protocol order."""
    starter = SasVerification(NEW, OLD, transaction, we_started=True)
    other = SasVerification(OLD, NEW, transaction, we_started=False)
    other.receive_start(starter.start())  # sas_start
    starter.receive_key(other.key_message()["key"])  # other's sas_key
    other.receive_key(starter.key_message()["key"])  # starter's sas_key
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
    other.receive_start(mallory_to_other.start())
    other.receive_key(mallory_to_other.public_key)

    assert starter.emoji() != other.emoji()
    assert starter.decimals() != other.decimals()


def test_a_starter_key_that_does_not_match_its_commitment_is_refused():
    other = SasVerification(OLD, NEW, "tx-1", we_started=False)
    committed = SasVerification(NEW, OLD, "tx-1", we_started=True)
    swapped = SasVerification(NEW, OLD, "tx-1", we_started=True)

    other.receive_start(committed.start())

    with pytest.raises(VerificationFailed):
        other.receive_key(swapped.public_key)


def test_macs_of_the_verified_keys_check_on_the_other_side():
    bob = make_user("bob")
    bob2 = add_device(bob, "DEV2", approved=False)
    starter, other = exchange()
    new_keys = {"ed25519:DEV2": bob2.device.ed25519}

    other.check_macs(new_keys, starter.mac_message(new_keys))


def test_a_mac_over_another_key_is_detected():
    bob = make_user("bob")
    bob2 = add_device(bob, "DEV2", approved=False)
    impostor = add_device(bob, "DEV2", approved=False)
    starter, other = exchange()

    with pytest.raises(VerificationFailed, match="do not match"):
        other.check_macs(
            {"ed25519:DEV2": bob2.device.ed25519},
            starter.mac_message({"ed25519:DEV2": impostor.device.ed25519}),
        )


def test_a_mac_message_that_drops_a_key_is_detected():
    starter, other = exchange()
    keys = {"ed25519:DEV2": "key-a", "user:bob": "key-b"}
    sent = starter.mac_message(keys)
    dropped = {"mac": {"ed25519:DEV2": sent["mac"]["ed25519:DEV2"]}, "keys": sent["keys"]}

    with pytest.raises(VerificationFailed):
        other.check_macs(keys, dropped)


def test_macs_from_another_transaction_do_not_check():
    starter, _ = exchange("tx-1")
    _, other = exchange("tx-2")
    keys = {"ed25519:DEV2": "key-a"}

    with pytest.raises(VerificationFailed):
        other.check_macs(keys, starter.mac_message(keys))


def test_sas_start_is_section_4_7s_with_chatprotos_commitment():
    starter = SasVerification(NEW, OLD, "tx-1", we_started=True, kind="device")

    start = starter.start()
    without = {k: v for k, v in start.items() if k != "commitment"}

    assert without == {
        "type": "sas_start",
        "txn": "tx-1",
        "kind": "device",
        "from_device": "DEV2",
        "sender": "bob",
        "sender_device": "DEV2",
        "recipient": "bob",
        "recipient_device": "DEV1",
    }
    assert start["commitment"] == e2e.sas_commitment(starter.public_key, without)


def test_the_codes_use_chatprotos_info_string():
    starter, other = exchange()
    info = e2e.sas_bytes_info(
        ("bob", "DEV2", starter.public_key), ("bob", "DEV1", other.public_key), "tx-1"
    )
    bare = vodozemac.Sas()
    # the other side's view, rebuilt from chatproto's info: the same 7 emoji
    assert [EMOJI[i] for i in other._session().bytes(info).emoji_indices] == starter.emoji()
    assert bare.public_key.to_base64() not in info


def test_a_start_of_another_kind_or_transaction_is_refused():
    starter = SasVerification(NEW, OLD, "tx-1", we_started=True, kind="contact")
    other = SasVerification(OLD, NEW, "tx-1", we_started=False, kind="device")

    with pytest.raises(VerificationFailed):
        other.receive_start(starter.start())


def test_done_and_cancel_messages():
    starter, _ = exchange()

    assert starter.done() == {"type": "sas_done", "txn": "tx-1"}
    assert starter.cancel("mismatch") == {"type": "sas_cancel", "txn": "tx-1", "reason": "mismatch"}
    with pytest.raises(ValueError):
        starter.cancel("bored")
