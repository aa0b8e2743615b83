"""End-to-end file offers in the engine (protocol.md 4.12): sealed like a private message,
opened with 4.5's checks under the message id ``file:<transfer>``, held while the key is
missing; the link's verdict checks the ``file`` plaintext against its offer."""

from __future__ import annotations

import os
from typing import Any

import pytest

from chatproto.e2e import conversation_id
from chatproto.e2e_files import encrypted_size, file_plaintext
from tk_client.e2e.engine import _PendingSend
from tk_client.e2e.files import (
    FileOfferRefused,
    FileOfferVerified,
    Opened,
    Sealed,
    verdict,
)
from tk_client.e2e.megolm import Undecryptable

from .test_engine import NotShown, Relay, connect_pair

T = "0123456789abcdef0123456789abcdef"
T2 = "fedcba9876543210fedcba9876543210"
PM = conversation_id(pm=("alice", "bob"))
ALICE, BOB = ("alice", "DEV1"), ("bob", "DEV1")
KEY = os.urandom(32)


@pytest.fixture
def relay() -> Relay:
    return Relay()


def payload(transfer: str = T, size: int = 1000, **changes: Any) -> dict[str, Any]:
    plain = file_plaintext(
        conversation=PM,
        sender="alice",
        sender_device="DEV1",
        transfer=transfer,
        name="report.pdf",
        size=size,
        sha256="ab" * 32,
        key=KEY,
    )
    return {**plain, **changes}


def seal(relay: Relay, engine, plain: dict[str, Any], tag: str = T) -> dict[str, Any]:
    out = engine.seal_for(PM, ["bob"], plain, tag, 1.0)
    relay.run(ALICE, out.requests)
    sealed = [e for e in out.events + relay.events[ALICE] if isinstance(e, Sealed)]
    assert [s.tag for s in sealed] == [tag]
    relay.events[ALICE].clear()
    return sealed[0].e2e


def offer(e2e: dict[str, Any], transfer: str = T, size: int = 1000) -> dict[str, Any]:
    """The offer as the server relays it to bob."""
    return {
        "type": "file_offer",
        "transfer": transfer,
        "to": "bob",
        "from": "alice",
        "size": encrypted_size(size),
        "e2e": e2e,
    }


def opened(relay: Relay, engine, message: dict[str, Any]) -> list[Any]:
    relay.events[BOB] = []
    out = engine.open_file_offer(message, 1.0)
    relay.run(BOB, out.requests)
    events = out.events + relay.events[BOB]
    relay.events[BOB] = []
    return [e for e in events if isinstance(e, Opened | NotShown)]


def test_a_sealed_offer_is_opened_and_verified_and_the_relay_sees_no_name(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    e2e = seal(relay, alice_engine, payload())
    # The room key went to bob before the offer's e2e came out, over Olm.
    assert any(r["type"] == "to_device" for p, r in relay.sent if p == ALICE)
    assert "report.pdf" not in str(e2e) and "ab" * 32 not in str(e2e)

    (event,) = opened(relay, bob_engine, offer(e2e))

    assert isinstance(event, Opened) and event.msg_id == f"file:{T}"
    result = verdict(offer(e2e), event)
    assert isinstance(result, FileOfferVerified)
    assert (result.facts.name, result.facts.size, result.facts.key) == ("report.pdf", 1000, KEY)


def test_an_offer_waits_for_its_key_and_opens_when_it_comes(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    held_back: list[tuple[Any, dict[str, Any]]] = []  # the room key: delivered after the offer
    deliver = relay.push

    def push(target, message):
        if target == BOB and message["type"] == "to_device":
            held_back.append((target, message))
        else:
            deliver(target, message)

    relay.push = push  # type: ignore[method-assign]
    e2e = seal(relay, alice_engine, payload())
    relay.push = deliver  # type: ignore[method-assign]
    assert held_back

    (waiting,) = opened(relay, bob_engine, offer(e2e))
    assert isinstance(waiting, NotShown) and waiting.reason is Undecryptable.KEY_NOT_RECEIVED

    for target, message in held_back:
        relay.push(target, message)
    relay.run(ALICE, [])
    assert [type(e) for e in relay.events[BOB] if isinstance(e, Opened)] == [Opened]


def test_an_offer_forgotten_while_it_waits_shows_nothing_when_its_key_comes(relay):
    """4.12 polish: an offer that ended (cancelled, expired) while it waited for its key is
    no longer held: its key, when it comes, opens nothing."""
    _, _, alice_engine, bob_engine = connect_pair(relay)
    held_back: list[tuple[Any, dict[str, Any]]] = []
    deliver = relay.push

    def push(target, message):
        if target == BOB and message["type"] == "to_device":
            held_back.append((target, message))
        else:
            deliver(target, message)

    relay.push = push  # type: ignore[method-assign]
    e2e = seal(relay, alice_engine, payload())
    relay.push = deliver  # type: ignore[method-assign]
    (waiting,) = opened(relay, bob_engine, offer(e2e))
    assert isinstance(waiting, NotShown)

    bob_engine.forget_held(f"file:{T}")
    for target, message in held_back:
        relay.push(target, message)
    relay.run(ALICE, [])

    assert not [e for e in relay.events[BOB] if isinstance(e, Opened)]


def test_a_file_offer_waiting_to_be_sealed_never_prints_its_key_or_name():
    """A send waits in memory for device lists and keys; a traceback or a debug print of
    it must not show the file key, the name or the hash (they leave only sealed)."""
    pending = _PendingSend(PM, frozenset({"alice", "bob"}), None, 1.0, payload(), T)

    shown = repr(pending)

    assert KEY.hex() not in shown and payload()["key"] not in shown
    assert "report.pdf" not in shown and "ab" * 32 not in shown


def test_a_text_message_passed_off_as_a_file_offer_is_not_verified(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    out = alice_engine.encrypt_for(PM, ["bob"], "hello", 1.0)
    relay.run(ALICE, out.requests)
    text_e2e = next(r["e2e"] for p, r in relay.sent if r["type"] == "pm")

    (event,) = opened(relay, bob_engine, offer(text_e2e))

    assert isinstance(event, NotShown) and event.reason is Undecryptable.NOT_VERIFIED


def test_an_offers_e2e_replayed_under_another_transfer_is_not_verified(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    e2e = seal(relay, alice_engine, payload())
    (first,) = opened(relay, bob_engine, offer(e2e))
    assert isinstance(first, Opened)

    (again,) = opened(relay, bob_engine, offer(e2e, transfer=T2))

    assert isinstance(again, NotShown) and again.reason is Undecryptable.NOT_VERIFIED


def test_an_offer_replayed_under_its_own_transfer_is_not_verified(relay):
    """The server may replay an offer it relayed once, and then the chunks it recorded:
    an offer is opened once, so an old file cannot come again as if sent anew."""
    _, _, alice_engine, bob_engine = connect_pair(relay)
    e2e = seal(relay, alice_engine, payload())
    (first,) = opened(relay, bob_engine, offer(e2e))
    assert isinstance(first, Opened)

    (again,) = opened(relay, bob_engine, offer(e2e))

    assert isinstance(again, NotShown) and again.reason is Undecryptable.NOT_VERIFIED


def test_an_offer_from_another_sender_than_the_plaintext_says_is_not_verified(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    e2e = seal(relay, alice_engine, payload(sender="carol"))

    (event,) = opened(relay, bob_engine, offer(e2e))

    assert isinstance(event, NotShown) and event.reason is Undecryptable.NOT_VERIFIED


def test_the_verdict_refuses_a_plaintext_of_another_transfer_or_size(relay):
    _, _, alice_engine, bob_engine = connect_pair(relay)
    other = seal(relay, alice_engine, payload(transfer=T2), tag=T2)
    (moved,) = opened(relay, bob_engine, offer(other))  # T2's plaintext offered as T
    resized = seal(relay, alice_engine, payload(size=5000), tag=T)
    (wrong_size,) = opened(relay, bob_engine, offer(resized, transfer=T, size=1000))

    for event, message in ((moved, offer(other)), (wrong_size, offer(resized, size=1000))):
        assert isinstance(event, Opened)
        result = verdict(message, event)
        assert isinstance(result, FileOfferRefused)
        assert result.text == "A file from alice could not be verified and was refused."
