from pathlib import Path

import pytest

from tk_client.e2e.contacts import ContactBook, TrustState
from tk_client.e2e.errors import SendingBlocked

KEY_1, KEY_2, KEY_3 = "key-one", "key-two", "key-three"


def test_first_sight_pins_the_key_as_tofu_without_a_notice():
    book = ContactBook()

    assert book.observe("bob", KEY_1) is None
    contact = book.get("bob")
    assert contact is not None
    assert (contact.pinned, contact.state) == (KEY_1, TrustState.TOFU)


def test_a_tofu_contacts_new_key_gives_one_notice_and_is_pinned():
    book = ContactBook()
    book.observe("bob", KEY_1)

    notice = book.observe("bob", KEY_2)
    again = book.observe("bob", KEY_2)

    assert notice is not None and again is None
    assert notice.text == (
        "bob's identity changed: bob reset their identity or reinstalled, or someone is "
        "intercepting. Compare safety numbers before you send more."
    )
    assert not notice.blocks_sending
    contact = book.get("bob")
    assert (contact.pinned, contact.state) == (KEY_2, TrustState.TOFU)
    book.check_sending(["bob"])  # a tofu contact's change warns but does not block


def test_a_verified_contacts_change_blocks_sending_until_acknowledged():
    book = ContactBook()
    book.observe("bob", KEY_1)
    book.verify("bob", KEY_1)

    notice = book.observe("bob", KEY_2)

    assert notice is not None and notice.blocks_sending
    assert book.get("bob").state is TrustState.CHANGED
    assert notice.text.endswith("Sending to bob is paused until you acknowledge the change.")
    with pytest.raises(SendingBlocked, match="bob"):
        book.check_sending(["alice", "bob"])

    book.acknowledge("bob")

    book.check_sending(["bob"])
    contact = book.get("bob")
    assert (contact.pinned, contact.state) == (KEY_2, TrustState.TOFU)


def test_verification_marks_the_pinned_key_verified():
    book = ContactBook()
    book.observe("bob", KEY_1)

    book.verify("bob", KEY_1)

    assert book.get("bob").state is TrustState.VERIFIED
    assert book.observe("bob", KEY_1) is None


def test_verifying_a_key_that_is_not_the_current_one_is_refused():
    book = ContactBook()
    book.observe("bob", KEY_1)

    with pytest.raises(ValueError, match="start it again"):
        book.verify("bob", KEY_2)
    assert book.get("bob").state is TrustState.TOFU


def test_the_notices_words_are_section_4_8s():
    section_4 = (Path(__file__).parents[3] / "docs" / "protocol.md").read_text(encoding="utf-8")
    book = ContactBook()
    book.observe("Bob", KEY_1)
    book.verify("Bob", KEY_1)

    notice = book.observe("Bob", KEY_2)

    assert notice is not None
    first, paused = notice.text.split(" Sending to ")
    assert f'"{first}"' in section_4
    assert f'"Sending to {paused}"' in section_4


def test_the_verified_key_coming_back_restores_verified_without_a_notice():
    book = ContactBook()
    book.observe("bob", KEY_1)
    book.verify("bob", KEY_1)
    book.observe("bob", KEY_2)

    assert book.observe("bob", KEY_1) is None
    assert book.get("bob").state is TrustState.VERIFIED


def test_a_second_change_is_a_second_notice():
    book = ContactBook()
    book.observe("bob", KEY_1)
    book.verify("bob", KEY_1)
    book.observe("bob", KEY_2)

    notice = book.observe("bob", KEY_3)

    assert notice is not None and notice.blocks_sending
    assert book.current_key("bob") == KEY_3


def test_contacts_round_trip_through_their_stored_form():
    book = ContactBook()
    book.observe("bob", KEY_1)
    book.verify("bob", KEY_1)
    book.observe("bob", KEY_2)
    book.observe("carol", KEY_3)

    restored = ContactBook.from_state(book.to_state())

    assert restored.get("bob") == book.get("bob")
    assert restored.get("carol") == book.get("carol")
    with pytest.raises(SendingBlocked):
        restored.check_sending(["bob"])


def test_verifying_someone_whose_key_is_unknown_says_to_fetch_it_first():
    with pytest.raises(ValueError, match="fetch their keys"):
        ContactBook().verify("bob", KEY_1)
