"""The clients' two ends of a file transfer: OutgoingTransfer and IncomingTransfer."""

from __future__ import annotations

from typing import Any

import pytest

from chatproto.errors import LocalProtocolError, MessageError
from chatproto.framing import FileChunk
from chatproto.limits import MAX_CHUNK_SIZE, TRANSFER_WINDOW
from chatproto.messages import validate_request
from chatproto.transfer import (
    Accepted,
    Acknowledged,
    Cancelled,
    ChunkData,
    Ended,
    Finished,
    IncomingTransfer,
    OutgoingTransfer,
    Refused,
    Rejected,
    Send,
    SendChunk,
    TransferState,
)
from tests.chatproto.transfer_harness import (
    SHA,
    T2,
    TB,
    T,
    cancel,
    chunk,
)


def outgoing(size: int = 3 * MAX_CHUNK_SIZE + 5, **kwargs: Any) -> OutgoingTransfer:
    return OutgoingTransfer(to="bob", name="a.bin", size=size, sha256=SHA, transfer=T, **kwargs)


def incoming(size: int = 100) -> IncomingTransfer:
    return IncomingTransfer(transfer=T, sender="alice", name="a.bin", size=size, sha256=SHA)


def test_outgoing_offer_names_everything_the_protocol_asks():
    sender = outgoing(size=7)
    assert sender.offer("o9") == {
        "type": "file_offer",
        "transfer": T,
        "to": "bob",
        "name": "a.bin",
        "size": 7,
        "sha256": SHA,
        "id": "o9",
    }
    assert validate_request(sender.offer("o9")).type == "file_offer"


def test_outgoing_transfer_id_is_fresh_random_hex():
    first = OutgoingTransfer(to="bob", name="a", size=0, sha256=SHA)
    second = OutgoingTransfer(to="bob", name="a", size=0, sha256=SHA)
    assert len(first.transfer) == 32 and first.transfer != second.transfer
    assert bytes.fromhex(first.transfer) == first.transfer_bytes


def test_outgoing_sends_nothing_before_the_accept_then_fills_the_window():
    sender = outgoing(size=100 * MAX_CHUNK_SIZE)
    assert sender.next_chunk_size() == 0
    assert sender.receive({"type": "file_accept", "transfer": T, "from": "bob"}) == [Accepted()]
    for index in range(TRANSFER_WINDOW):
        assert sender.next_chunk_size() == MAX_CHUNK_SIZE
        [sent] = sender.chunk(bytes(MAX_CHUNK_SIZE))
        assert sent == SendChunk(FileChunk(TB, index, bytes(MAX_CHUNK_SIZE)))
    assert sender.next_chunk_size() == 0  # the window is full
    assert sender.receive({"type": "file_ack", "transfer": T, "index": 0}) == [
        Acknowledged(0, MAX_CHUNK_SIZE)
    ]
    assert sender.next_chunk_size() == MAX_CHUNK_SIZE


def test_outgoing_last_chunk_is_the_remainder_then_file_end_without_waiting_for_acks():
    sender = outgoing(size=MAX_CHUNK_SIZE + 5)
    sender.receive({"type": "file_accept", "transfer": T})
    sender.chunk(bytes(MAX_CHUNK_SIZE))
    assert not sender.ready_to_end
    assert sender.next_chunk_size() == 5
    with pytest.raises(LocalProtocolError):
        sender.chunk(bytes(6))
    sender.chunk(bytes(5))
    assert sender.next_chunk_size() == 0 and sender.ready_to_end
    assert sender.end() == [Send({"type": "file_end", "transfer": T})]
    assert sender.receive({"type": "file_ack", "transfer": T, "index": 0})[0].bytes_acked == (
        MAX_CHUNK_SIZE
    )
    assert sender.receive({"type": "file_done", "transfer": T, "ok": True}) == [Finished(True)]
    assert sender.state is TransferState.FINISHED


def test_outgoing_cannot_end_early():
    sender = outgoing(size=10)
    sender.receive({"type": "file_accept", "transfer": T})
    with pytest.raises(LocalProtocolError):
        sender.end()


def test_outgoing_recipient_not_keeping_the_file_is_a_failure():
    sender = outgoing(size=0)
    sender.receive({"type": "file_accept", "transfer": T})
    sender.end()
    assert sender.receive({"type": "file_done", "transfer": T, "ok": False}) == [Finished(False)]
    assert sender.state is TransferState.FAILED


@pytest.mark.parametrize("index", [1, -1, True, None, "0"])
def test_outgoing_cancels_on_an_acknowledgement_out_of_order(index):
    sender = outgoing()
    sender.receive({"type": "file_accept", "transfer": T})
    sender.chunk(bytes(10))
    assert sender.receive({"type": "file_ack", "transfer": T, "index": index}) == [
        Send(cancel("chunk_out_of_order")),
        Cancelled("chunk_out_of_order", local=True),
    ]
    assert sender.over


def test_outgoing_rejected_refused_and_cancelled_are_failures_with_their_reason():
    rejected = outgoing()
    assert rejected.receive({"type": "file_reject", "transfer": T, "from": "bob"}) == [Rejected()]
    assert (rejected.state, rejected.reason) == (TransferState.FAILED, "rejected")
    refused = outgoing()
    assert refused.offer_refused("offline", "not online") == [Refused("offline", "not online")]
    assert refused.reason == "offline"
    peer = outgoing()
    peer.receive({"type": "file_accept", "transfer": T})
    assert peer.receive(cancel("disconnected")) == [Cancelled("disconnected", local=False)]
    assert peer.over and peer.next_chunk_size() == 0


def test_outgoing_ignores_other_transfers_stale_messages_and_unknown_types():
    sender = outgoing()
    assert sender.receive({"type": "file_accept", "transfer": T2}) == []
    assert sender.receive({"type": "ok"}) == []
    assert sender.receive({"type": "file_whatever", "transfer": T}) == []
    sender.cancel()
    assert sender.receive({"type": "file_accept", "transfer": T}) == []
    assert sender.cancel() == []  # already over: nothing more to send


def test_local_cancel_sends_file_cancel_with_the_reason():
    sender = outgoing()
    assert sender.cancel() == [Send(cancel("cancelled")), Cancelled("cancelled", local=True)]


@pytest.mark.parametrize(
    "change",
    [
        {"transfer": "0123"},
        {"transfer": T.upper()},
        {"from": "not a user!"},
        {"from": None},
        {"name": ""},
        {"name": "x" * 256},
        {"name": 7},
        {"size": -1},
        {"size": True},
        {"size": 1.5},
        {"sha256": "AB" * 32},
        {"sha256": None},
    ],
)
def test_malformed_offer_is_a_message_error(change):
    offer = {"type": "file_offer", "transfer": T, "from": "alice", "name": "a", "size": 1}
    offer.update(sha256=SHA, to="bob")
    offer.update(change)
    with pytest.raises(MessageError):
        IncomingTransfer.from_offer(offer)


@pytest.mark.parametrize(
    "change",
    [
        {"transfer": "AB" * 16},
        {"name": ""},
        {"name": "x" * 256},
        {"size": -1},
        {"size": True},
        {"sha256": "ab" * 31},
        {"name": "notes.txt", "size": 0},  # a valid offer: taken by all three
    ],
)
def test_the_server_and_both_ends_judge_an_offers_facts_by_the_same_rules(change):
    offer = {"type": "file_offer", "transfer": T, "to": "bob", "name": "a", "size": 1}
    offer.update(sha256=SHA)
    offer.update(change)
    facts = {k: offer[k] for k in ("transfer", "name", "size", "sha256")}

    def taken(judge) -> bool:
        try:
            judge()
        except (MessageError, LocalProtocolError):
            return False
        return True

    server = taken(lambda: validate_request(offer))
    sender = taken(lambda: OutgoingTransfer(to="bob", **facts))
    recipient = taken(lambda: IncomingTransfer.from_offer({**offer, "from": "alice"}))
    assert server == sender == recipient == (change.get("name") == "notes.txt")


def test_incoming_offer_gives_the_sanitized_name_to_save_under():
    offer = {"type": "file_offer", "transfer": T, "from": "alice", "name": "../../etc/passwd"}
    offer.update(size=1, sha256=SHA, to="bob")
    receiver = IncomingTransfer.from_offer(offer)
    assert (receiver.name, receiver.safe_name, receiver.sender) == (
        "../../etc/passwd",
        "etcpasswd",
        "alice",
    )


def test_incoming_receives_writes_and_acknowledges_in_order():
    receiver = incoming(size=15)
    assert receiver.accept() == [Send({"type": "file_accept", "transfer": T})]
    assert receiver.receive_chunk(chunk(0, 10)) == [ChunkData(0, bytes(10))]
    assert receiver.receive_chunk(chunk(1, 5)) == [ChunkData(1, bytes(5))]
    with pytest.raises(LocalProtocolError):
        receiver.written(1)
    assert receiver.written(0) == [Send({"type": "file_ack", "transfer": T, "index": 0})]
    assert receiver.written(1) == [Send({"type": "file_ack", "transfer": T, "index": 1})]
    assert receiver.receive({"type": "file_end", "transfer": T}) == [Ended(size_ok=True)]
    assert receiver.finish(True) == [
        Send({"type": "file_done", "transfer": T, "ok": True}),
        Finished(True),
    ]
    assert receiver.state is TransferState.FINISHED


def test_incoming_short_file_at_file_end_is_never_kept():
    receiver = incoming(size=15)
    receiver.accept()
    receiver.receive_chunk(chunk(0, 10))
    receiver.written(0)
    assert receiver.receive({"type": "file_end", "transfer": T}) == [Ended(size_ok=False)]
    assert receiver.finish(True)[0] == Send({"type": "file_done", "transfer": T, "ok": False})


def violations() -> list[tuple[str, list[FileChunk], bool]]:
    return [
        ("chunk_out_of_order", [chunk(0)], False),  # before the accept
        ("chunk_out_of_order", [chunk(1)], True),
        ("chunk_out_of_order", [chunk(0), chunk(0)], True),
        ("chunk_too_large", [chunk(0, MAX_CHUNK_SIZE + 1)], True),
        ("chunk_too_large", [chunk(0, 0)], True),
        ("size_exceeded", [chunk(0, 90), chunk(1, 11)], True),
        ("window_exceeded", [chunk(i, 1) for i in range(TRANSFER_WINDOW + 1)], True),
    ]


@pytest.mark.parametrize(("reason", "chunks", "accept"), violations())
def test_incoming_cancels_on_a_chunk_that_breaks_the_rules(reason, chunks, accept):
    receiver = incoming(size=100)
    if accept:
        receiver.accept()
    *fine, bad = chunks
    for good in fine:
        assert isinstance(receiver.receive_chunk(good)[0], ChunkData)
    assert receiver.receive_chunk(bad) == [Send(cancel(reason)), Cancelled(reason, local=True)]
    assert receiver.receive_chunk(chunk(len(chunks))) == []  # stragglers change nothing


def test_incoming_cancel_from_the_server_ends_it_with_the_reason():
    receiver = incoming()
    assert receiver.receive(cancel("answered_elsewhere")) == [
        Cancelled("answered_elsewhere", local=False)
    ]
    assert receiver.reject() == []  # the offer is gone; nothing to answer


def test_accepting_an_offer_that_ended_meanwhile_sends_nothing():
    receiver = incoming()
    receiver.receive(cancel("expired"))
    assert receiver.accept() == []
    running = incoming()
    running.accept()
    with pytest.raises(LocalProtocolError):
        running.accept()


def test_lost_connection_ends_either_end_without_anything_to_send():
    for end in (outgoing(), incoming()):
        assert end.connection_lost() == [Cancelled("disconnected", local=True)]
        assert end.over and end.connection_lost() == [] and end.cancel() == []


@pytest.mark.parametrize(
    "bad",
    [{"name": ""}, {"size": -1}, {"sha256": "xyz"}, {"transfer": "not hex"}],
)
def test_outgoing_refuses_an_offer_the_protocol_would_refuse(bad):
    fields = {"to": "bob", "name": "a", "size": 1, "sha256": SHA, "transfer": T}
    fields.update(bad)
    with pytest.raises(LocalProtocolError):
        OutgoingTransfer(**fields)
