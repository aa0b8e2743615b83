"""Whole transfers: both clients' ends talking through the relay in memory."""

from __future__ import annotations

import random

import pytest

from chatproto.limits import TRANSFER_WINDOW
from chatproto.transfer import (
    Finished,
    TransferState,
)
from tests.chatproto.transfer_harness import (
    MemorySender,
    cancel,
    connected_relay,
    offer_and_accept,
    run,
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_three_mebibytes_cross_the_relay_intact_and_the_window_is_never_exceeded(seed):
    rng = random.Random(seed)
    data = rng.randbytes(3 * 2**20 + 12345)
    relay = connected_relay()
    sender = MemorySender(data, "bob")
    receiver = offer_and_accept(relay, sender)
    run(relay, {"alice-1": sender, "bob-1": receiver}, rng)
    assert bytes(receiver.data) == data and receiver.check.matches()
    assert sender.outgoing.state is TransferState.FINISHED
    assert receiver.incoming.state is TransferState.FINISHED
    assert Finished(True) in relay.shown["alice-1"]
    assert relay.max_unacked == TRANSFER_WINDOW  # the window was used, and never exceeded
    assert relay.errors == []
    assert relay.registry.idle
    assert cancel("answered_elsewhere", sender.outgoing.transfer) in relay.shown["bob-2"]


def test_a_sender_lying_about_the_hash_gets_file_done_false():
    relay = connected_relay()
    sender = MemorySender(b"hello world", "bob")
    sender.outgoing.sha256 = "00" * 32
    receiver = offer_and_accept(relay, sender)
    run(relay, {"alice-1": sender, "bob-1": receiver}, random.Random(0))
    assert Finished(False) in relay.shown["alice-1"] and Finished(False) in relay.shown["bob-1"]
    assert relay.registry.idle


def test_empty_file_crosses_the_relay():
    relay = connected_relay()
    sender = MemorySender(b"", "bob")
    receiver = offer_and_accept(relay, sender)
    run(relay, {"alice-1": sender, "bob-1": receiver}, random.Random(0))
    assert receiver.incoming.state is TransferState.FINISHED and receiver.data == b""
    assert relay.registry.idle
