"""File transfer without I/O: the server's relay rules, both clients' ends, names, progress.

The relay tests assert the exact actions a consumer would carry out, so every
answer, every relayed message, every cancel reason and every ``final`` flag is
pinned down. :class:`Relay` is a server process in memory (a registry, sessions
with inboxes); :func:`run` lets the two ends of a transfer talk through it in a
random interleaving. The tk_client tests reuse both.
"""

from __future__ import annotations

import hashlib
import os
import random
import unicodedata
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatproto.codes import ErrorCode
from chatproto.connection import error_message
from chatproto.errors import LocalProtocolError, MessageError
from chatproto.framing import FileChunk, decode_plaintext, encode_chunk
from chatproto.limits import MAX_CHUNK_SIZE, TRANSFER_WINDOW
from chatproto.messages import validate_request
from chatproto.transfer import (
    OFFER_TIMEOUT_SECONDS,
    Accepted,
    Acknowledged,
    Action,
    Cancelled,
    CancelReason,
    ChunkData,
    ClientEvent,
    Deliver,
    DeliverChunk,
    Ended,
    Finished,
    IncomingTransfer,
    IntegrityCheck,
    OutgoingTransfer,
    Progress,
    RecipientStatus,
    Refuse,
    Refused,
    Rejected,
    Send,
    SendChunk,
    ToSession,
    ToUser,
    TransferIntegrityError,
    TransferRegistry,
    TransferState,
    is_reserved_name,
    sanitize_filename,
)

T = "0123456789abcdef0123456789abcdef"
T2 = "fedcba9876543210fedcba9876543210"
TB = bytes.fromhex(T)
SHA = "ab" * 32
USERS = {"alice-1": "alice", "alice-2": "alice", "bob-1": "bob", "bob-2": "bob", "carol-1": "carol"}


class AnyText(str):
    """Equal to any string: human messages are not part of the contract."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)

    __hash__ = str.__hash__


ANY = AnyText()


def request(kind: str, **fields: Any):
    return validate_request({"type": kind, **fields})


def offer_request(transfer: str = T, to: str = "bob", size: int = 100, **extra: Any):
    fields = {"id": "o1", "transfer": transfer, "to": to, "name": "report.pdf", "size": size}
    fields.update(sha256=SHA, **extra)
    return request("file_offer", **{k: v for k, v in fields.items() if v is not None})


def to(session: str, message: dict[str, Any], final: bool = False) -> Deliver:
    return Deliver(ToSession(session), message, final)


def ok(ref: str | None = None) -> dict[str, Any]:
    return {"type": "ok"} if ref is None else {"type": "ok", "ref": ref}


def cancel(reason: str, transfer: str = T) -> dict[str, Any]:
    return {"type": "file_cancel", "transfer": transfer, "reason": reason}


def chunk(index: int, size: int = 10, transfer: bytes = TB) -> FileChunk:
    return FileChunk(transfer, index, bytes(size))


def offered(size: int = 100, now: float = 0.0, **options: Any) -> TransferRegistry:
    registry = TransferRegistry(**options)
    actions = registry.offer(offer_request(size=size), session="alice-1", user="alice", now=now)
    assert actions[0] == to("alice-1", ok("o1"))
    return registry


def accepted(size: int = 100, **options: Any) -> TransferRegistry:
    registry = offered(size, **options)
    actions = registry.receive(request("file_accept", transfer=T), session="bob-1", user="bob")
    assert actions[0] == to("bob-1", ok())
    return registry


def step(registry: TransferRegistry, session: str, kind: str, **fields: Any) -> list[Action]:
    return registry.receive(
        request(kind, transfer=T, **fields), session=session, user=USERS[session]
    )


def send_chunks(registry: TransferRegistry, count: int, size: int = 10, start: int = 0) -> None:
    for index in range(start, start + count):
        actions = registry.receive_chunk(chunk(index, size), session="alice-1")
        assert actions == [DeliverChunk("bob-1", chunk(index, size))]


BOB_1 = ToSession("bob-1")


def cancelled_both(reason: str, recipient: ToSession | ToUser = BOB_1) -> list[Action]:
    return [to("alice-1", cancel(reason), True), Deliver(recipient, cancel(reason), True)]


# --- the offer -------------------------------------------------------------------------------


def test_offer_is_answered_ok_then_relayed_to_every_recipient_session_with_from_and_no_id():
    registry = TransferRegistry()
    actions = registry.offer(offer_request(), session="alice-1", user="alice", now=0.0)
    relayed = {
        "type": "file_offer",
        "transfer": T,
        "to": "bob",
        "name": "report.pdf",
        "size": 100,
        "sha256": SHA,
        "from": "alice",
    }
    assert actions == [to("alice-1", ok("o1")), Deliver(ToUser("bob"), relayed)]
    assert registry.open_count("alice") == 1 and T in registry


def test_offer_without_id_gets_ok_without_ref():
    registry = TransferRegistry()
    actions = registry.offer(offer_request(id=None), session="alice-1", user="alice", now=0.0)
    assert actions[0] == to("alice-1", {"type": "ok"})


@pytest.mark.parametrize(
    ("offer", "recipient", "code"),
    [
        (offer_request(to="alice"), RecipientStatus.ONLINE, ErrorCode.BAD_REQUEST),
        (offer_request(size=1001), RecipientStatus.ONLINE, ErrorCode.TOO_LARGE),
        (offer_request(), RecipientStatus.UNKNOWN, ErrorCode.UNKNOWN_USER),
        (offer_request(), RecipientStatus.OFFLINE, ErrorCode.OFFLINE),
    ],
    ids=["to oneself", "too large", "unknown user", "offline"],
)
def test_refused_offer_is_answered_with_its_error_and_leaves_nothing(offer, recipient, code):
    registry = TransferRegistry(max_file_size=1000)
    actions = registry.offer(offer, session="alice-1", user="alice", now=0.0, recipient=recipient)
    assert actions == [Refuse("alice-1", code, ANY, "o1")]
    assert registry.idle


def test_offer_of_exactly_the_maximum_size_is_accepted():
    registry = TransferRegistry(max_file_size=1000)
    actions = registry.offer(offer_request(size=1000), session="alice-1", user="alice", now=0.0)
    assert actions[0] == to("alice-1", ok("o1"))


def test_default_maximum_is_four_gibibytes():
    registry = TransferRegistry()
    big = registry.offer(offer_request(size=4 * 2**30 + 1), session="alice-1", user="alice", now=0)
    assert big == [Refuse("alice-1", ErrorCode.TOO_LARGE, ANY, "o1")]


def test_transfer_id_in_use_is_bad_request_whoever_offers_it():
    registry = offered()
    again = registry.offer(offer_request(to="bob"), session="carol-1", user="carol", now=0.0)
    assert again == [Refuse("carol-1", ErrorCode.BAD_REQUEST, ANY, "o1")]
    assert registry.get(T).sender_session == "alice-1"  # the first offer is untouched


def open_offers(registry: TransferRegistry, user: str, count: int) -> list[str]:
    ids = [os.urandom(16).hex() for _ in range(count)]
    for transfer in ids:
        actions = registry.offer(
            offer_request(transfer=transfer), session=f"{user}-1", user=user, now=0.0
        )
        assert actions[0] == to(f"{user}-1", ok("o1"))
    return ids


def test_ninth_open_transfer_of_a_user_is_rate_limited_until_one_ends():
    registry = TransferRegistry()
    first, *_ = open_offers(registry, "alice", 8)
    ninth = registry.offer(offer_request(transfer=T2), session="alice-2", user="alice", now=0.0)
    assert ninth == [Refuse("alice-2", ErrorCode.RATE_LIMITED, ANY, "o1")]
    open_offers(registry, "carol", 1)  # the limit is per user
    registry.receive(request("file_reject", transfer=first), session="bob-1", user="bob")
    again = registry.offer(offer_request(transfer=T2), session="alice-2", user="alice", now=0.0)
    assert again[0] == to("alice-2", ok("o1"))


def test_transfers_open_in_other_processes_count_toward_the_limit():
    registry = TransferRegistry()
    open_offers(registry, "alice", 5)
    actions = registry.offer(
        offer_request(), session="alice-1", user="alice", now=0.0, open_elsewhere=3
    )
    assert actions == [Refuse("alice-1", ErrorCode.RATE_LIMITED, ANY, "o1")]


# --- answers ---------------------------------------------------------------------------------


def test_accept_is_answered_relayed_with_from_and_the_other_sessions_told_answered_elsewhere():
    registry = offered()
    actions = step(registry, "bob-2", "file_accept", id="a1")
    assert actions == [
        to("bob-2", ok("a1")),
        to("alice-1", {"type": "file_accept", "transfer": T, "from": "bob"}),
        Deliver(ToUser("bob", exclude="bob-2"), cancel("answered_elsewhere"), True),
    ]
    assert registry.get(T).recipient_session == "bob-2"


def test_first_answer_wins_and_later_answers_from_other_sessions_are_unknown_transfer():
    registry = accepted()
    for kind in ("file_accept", "file_reject", "file_cancel"):
        late = step(registry, "bob-2", kind, id="late")
        assert late == [Refuse("bob-2", ErrorCode.UNKNOWN_TRANSFER, ANY, "late")]
    assert registry.get(T).recipient_session == "bob-1"


def test_reject_is_relayed_with_from_and_the_transfer_is_forgotten():
    registry = offered()
    actions = step(registry, "bob-1", "file_reject")
    assert actions == [
        to("bob-1", ok(), True),
        to("alice-1", {"type": "file_reject", "transfer": T, "from": "bob"}, True),
        Deliver(ToUser("bob", exclude="bob-1"), cancel("answered_elsewhere"), True),
    ]
    assert registry.idle


def test_a_recipient_session_the_owner_never_saw_can_accept_from_another_process():
    # The registry knows users, not the recipient's sessions: an accept forwarded from
    # another server process (by channel name) is as good as a local one.
    registry = offered()
    step_actions = registry.receive(
        request("file_accept", transfer=T), session="specific.remote!abc", user="bob"
    )
    assert step_actions[0] == to("specific.remote!abc", ok())
    forwarded = registry.receive_chunk(chunk(0), session="alice-1")
    assert forwarded == [DeliverChunk("specific.remote!abc", chunk(0))]


# --- who may send what -----------------------------------------------------------------------

OUTSIDERS = [
    # (session, state, message): not one of the transfer's two sessions in its role.
    ("carol-1", "offered", ("file_accept", {})),
    ("carol-1", "offered", ("file_cancel", {})),
    ("alice-2", "offered", ("file_cancel", {})),  # the sender's other session
    ("alice-1", "offered", ("file_accept", {})),  # the sender in the recipient's role
    ("alice-1", "offered", ("file_reject", {})),
    ("alice-2", "accepted", ("file_end", {})),
    ("bob-2", "accepted", ("file_ack", {"index": 0})),
    ("bob-2", "accepted", ("file_done", {"ok": True})),
    ("carol-1", "accepted", ("file_cancel", {})),
    ("alice-1", "accepted", ("file_ack", {"index": 0})),
    ("alice-1", "accepted", ("file_done", {"ok": True})),
    ("bob-1", "accepted", ("file_end", {})),  # the recipient in the sender's role
]


@pytest.mark.parametrize(("session", "state", "message"), OUTSIDERS)
def test_message_outside_the_transfer_or_its_role_is_unknown_transfer(session, state, message):
    registry = offered() if state == "offered" else accepted()
    if state == "accepted":
        send_chunks(registry, 1)
    before = vars(registry.get(T)).copy()
    kind, fields = message
    actions = step(registry, session, kind, id="x1", **fields)
    assert actions == [Refuse(session, ErrorCode.UNKNOWN_TRANSFER, ANY, "x1")]
    assert vars(registry.get(T)) == before


@pytest.mark.parametrize("session", ["bob-1", "bob-2", "carol-1", "alice-2"])
def test_chunk_from_anyone_but_the_sending_session_is_unknown_transfer(session):
    registry = accepted()
    assert registry.receive_chunk(chunk(0), session=session) == [
        Refuse(session, ErrorCode.UNKNOWN_TRANSFER, ANY, None)
    ]
    assert registry.get(T).next_index == 0


def test_steps_and_chunks_of_an_unknown_transfer_are_unknown_transfer():
    registry = accepted()
    actions = registry.receive(
        request("file_ack", transfer=T2, index=0, id="k"), session="bob-1", user="bob"
    )
    assert actions == [Refuse("bob-1", ErrorCode.UNKNOWN_TRANSFER, ANY, "k")]
    stray = registry.receive_chunk(chunk(0, transfer=bytes.fromhex(T2)), session="alice-1")
    assert stray == [Refuse("alice-1", ErrorCode.UNKNOWN_TRANSFER, ANY, None)]


def test_registry_refuses_to_be_misused_by_its_caller():
    registry = offered()
    with pytest.raises(LocalProtocolError):
        registry.receive(offer_request(transfer=T2), session="alice-1", user="alice")
    with pytest.raises(LocalProtocolError):
        registry.offer(request("file_accept", transfer=T), session="bob-1", user="bob", now=0)
    with pytest.raises(LocalProtocolError):
        registry.receive(request("ping"), session="bob-1", user="bob")


# --- steps out of turn: refused, the transfer goes on -----------------------------------------

OUT_OF_TURN = [
    ("offered", "bob-1", "file_ack", {"index": 0}),
    ("offered", "bob-1", "file_done", {"ok": True}),
    ("offered", "alice-1", "file_end", {}),
    ("accepted", "bob-1", "file_accept", {}),
    ("accepted", "bob-1", "file_reject", {}),
    ("accepted", "bob-1", "file_done", {"ok": True}),
    ("ended", "alice-1", "file_end", {}),
    ("ended", "bob-1", "file_accept", {}),
]


@pytest.mark.parametrize(("state", "session", "kind", "fields"), OUT_OF_TURN)
def test_step_out_of_turn_is_bad_request_and_the_transfer_goes_on(state, session, kind, fields):
    registry = offered(size=0) if state == "offered" else accepted(size=0)
    if state == "ended":
        step(registry, "alice-1", "file_end")
    before = vars(registry.get(T)).copy()
    actions = step(registry, session, kind, id="s1", **fields)
    assert actions == [Refuse(session, ErrorCode.BAD_REQUEST, ANY, "s1")]
    assert vars(registry.get(T)) == before


# --- chunks, acks, end, done -----------------------------------------------------------------


def test_whole_transfer_is_relayed_step_by_step_and_then_forgotten():
    registry = accepted(size=25)
    assert registry.receive_chunk(chunk(0, 20), session="alice-1") == [
        DeliverChunk("bob-1", chunk(0, 20))
    ]
    assert registry.receive_chunk(chunk(1, 5), session="alice-1") == [
        DeliverChunk("bob-1", chunk(1, 5))
    ]
    assert step(registry, "bob-1", "file_ack", index=0, id="k0") == [
        to("bob-1", ok("k0")),
        to("alice-1", {"type": "file_ack", "transfer": T, "index": 0}),
    ]
    # file_end once every byte is relayed, without waiting for the last ack.
    assert step(registry, "alice-1", "file_end", id="e") == [
        to("alice-1", ok("e")),
        to("bob-1", {"type": "file_end", "transfer": T}),
    ]
    assert step(registry, "bob-1", "file_ack", index=1) == [
        to("bob-1", ok()),
        to("alice-1", {"type": "file_ack", "transfer": T, "index": 1}),
    ]
    assert step(registry, "bob-1", "file_done", ok=True, id="d") == [
        to("bob-1", ok("d"), True),
        to("alice-1", {"type": "file_done", "transfer": T, "ok": True}, True),
    ]
    assert registry.idle


def test_empty_file_has_no_chunks_and_ends_right_after_the_accept():
    registry = accepted(size=0)
    assert step(registry, "alice-1", "file_end")[1] == to(
        "bob-1", {"type": "file_end", "transfer": T}
    )
    assert step(registry, "bob-1", "file_done", ok=False)[1] == to(
        "alice-1", {"type": "file_done", "transfer": T, "ok": False}, True
    )
    assert registry.idle


def test_chunk_before_the_accept_cancels_with_chunk_out_of_order_to_all_recipient_sessions():
    registry = offered()
    actions = registry.receive_chunk(chunk(0), session="alice-1")
    assert actions == cancelled_both("chunk_out_of_order", ToUser("bob"))
    assert registry.idle


@pytest.mark.parametrize(("sent", "index"), [(0, 1), (3, 2), (3, 4), (1, 0)])
def test_chunk_index_not_consecutive_from_zero_cancels_with_chunk_out_of_order(sent, index):
    registry = accepted(size=1000)
    send_chunks(registry, sent)
    assert registry.receive_chunk(chunk(index), session="alice-1") == cancelled_both(
        "chunk_out_of_order"
    )
    assert registry.idle


def test_chunk_after_file_end_cancels_with_chunk_out_of_order():
    registry = accepted(size=10)
    send_chunks(registry, 1)
    step(registry, "alice-1", "file_end")
    assert registry.receive_chunk(chunk(1), session="alice-1") == cancelled_both(
        "chunk_out_of_order"
    )


@pytest.mark.parametrize("size", [0, MAX_CHUNK_SIZE + 1])
def test_chunk_data_outside_1_to_65536_bytes_cancels_with_chunk_too_large(size):
    registry = accepted(size=10 * MAX_CHUNK_SIZE)
    assert registry.receive_chunk(chunk(0, size), session="alice-1") == cancelled_both(
        "chunk_too_large"
    )
    assert registry.idle


def test_chunk_of_exactly_65536_bytes_is_relayed():
    registry = accepted(size=MAX_CHUNK_SIZE)
    send_chunks(registry, 1, size=MAX_CHUNK_SIZE)


def test_seventeenth_unacknowledged_chunk_cancels_with_window_exceeded():
    registry = accepted(size=1000)
    send_chunks(registry, TRANSFER_WINDOW)
    assert registry.get(T).unacked == TRANSFER_WINDOW
    assert registry.receive_chunk(chunk(16), session="alice-1") == cancelled_both("window_exceeded")
    assert registry.idle


def test_window_slides_with_each_acknowledgement():
    registry = accepted(size=1000)
    send_chunks(registry, TRANSFER_WINDOW)
    for index in range(TRANSFER_WINDOW, 40):
        step(registry, "bob-1", "file_ack", index=index - TRANSFER_WINDOW)
        send_chunks(registry, 1, start=index)
        assert registry.get(T).unacked == TRANSFER_WINDOW


@pytest.mark.parametrize("sizes", [[101], [60, 41], [100, 1]])
def test_bytes_beyond_the_offered_size_cancel_with_size_exceeded(sizes):
    registry = accepted(size=100)
    *fine, last = sizes
    for index, size in enumerate(fine):
        send_chunks(registry, 1, size=size, start=index)
    assert registry.receive_chunk(chunk(len(fine), last), session="alice-1") == cancelled_both(
        "size_exceeded"
    )
    assert registry.idle


def test_file_end_before_all_bytes_is_refused_and_cancels_with_size_exceeded():
    registry = accepted(size=100)
    send_chunks(registry, 1, size=99)
    actions = step(registry, "alice-1", "file_end", id="e1")
    assert actions == [
        Refuse("alice-1", ErrorCode.BAD_REQUEST, ANY, "e1"),
        *cancelled_both("size_exceeded"),
    ]
    assert registry.idle


@pytest.mark.parametrize(("sent", "acked", "index"), [(0, 0, 0), (2, 0, 1), (2, 1, 0), (1, 1, 1)])
def test_acknowledgement_out_of_order_is_refused_and_cancels(sent, acked, index):
    registry = accepted(size=1000)
    send_chunks(registry, sent)
    for earlier in range(acked):
        step(registry, "bob-1", "file_ack", index=earlier)
    actions = step(registry, "bob-1", "file_ack", index=index, id="k")
    assert actions == [
        Refuse("bob-1", ErrorCode.BAD_REQUEST, ANY, "k"),
        *cancelled_both("chunk_out_of_order"),
    ]
    assert registry.idle


# --- cancels and endings from outside --------------------------------------------------------


def test_sender_cancelling_an_offer_tells_every_recipient_session():
    registry = offered()
    actions = step(registry, "alice-1", "file_cancel", reason="changed my mind", id="c")
    assert actions == [
        to("alice-1", ok("c"), True),
        Deliver(ToUser("bob"), cancel("changed my mind"), True),
    ]
    assert registry.idle


def test_recipient_cancelling_an_offer_tells_the_sender_and_its_other_sessions():
    registry = offered()
    actions = step(registry, "bob-2", "file_cancel")
    assert actions == [
        to("bob-2", ok(), True),
        to("alice-1", cancel("cancelled"), True),  # an empty reason is relayed as "cancelled"
        Deliver(ToUser("bob", exclude="bob-2"), cancel("answered_elsewhere"), True),
    ]
    assert registry.idle


@pytest.mark.parametrize(("canceller", "other"), [("alice-1", "bob-1"), ("bob-1", "alice-1")])
def test_cancel_mid_transfer_is_relayed_to_the_other_session(canceller, other):
    registry = accepted(size=1000)
    send_chunks(registry, 3)
    actions = step(registry, canceller, "file_cancel", reason="stop")
    assert actions == [to(canceller, ok(), True), to(other, cancel("stop"), True)]
    assert registry.idle


def test_sender_disconnecting_before_the_answer_tells_every_recipient_session():
    registry = offered()
    assert registry.drop_session("alice-1") == [
        Deliver(ToUser("bob"), cancel("disconnected"), True)
    ]
    assert registry.idle


@pytest.mark.parametrize(("gone", "other"), [("alice-1", "bob-1"), ("bob-1", "alice-1")])
def test_either_session_disconnecting_mid_transfer_tells_the_other(gone, other):
    registry = accepted(size=1000)
    send_chunks(registry, 5)
    assert registry.drop_session(gone) == [to(other, cancel("disconnected"), True)]
    assert registry.idle


def test_a_recipient_session_that_did_not_answer_leaving_changes_nothing():
    registry = offered()
    assert registry.drop_session("bob-2") == []
    assert registry.drop_session("carol-1") == []
    assert registry.get(T).phase.value == "offered"


def test_recipient_going_offline_ends_unanswered_offers_only():
    registry = offered()
    registry.offer(offer_request(transfer=T2), session="carol-1", user="carol", now=0)
    registry.receive(request("file_accept", transfer=T2), session="bob-1", user="bob")
    assert registry.recipient_offline("bob") == [to("alice-1", cancel("disconnected"), True)]
    assert T not in registry and T2 in registry


def test_disconnect_ends_every_transfer_of_the_session():
    registry = TransferRegistry()
    ids = open_offers(registry, "alice", 3)
    actions = registry.drop_session("alice-1")
    assert sorted(a.message["transfer"] for a in actions) == sorted(ids)
    assert registry.idle


def test_offer_unanswered_for_five_minutes_expires_to_both_sides():
    registry = offered(now=1000.0)
    assert registry.next_expiry() == 1000.0 + OFFER_TIMEOUT_SECONDS
    assert registry.expire(1299.9) == []
    assert registry.expire(1300.0) == cancelled_both("expired", ToUser("bob"))
    assert registry.idle and registry.next_expiry() is None


def test_accepted_transfer_never_expires():
    registry = accepted()
    assert registry.next_expiry() is None
    assert registry.expire(10**9) == []
    assert T in registry


# --- the clients' ends -----------------------------------------------------------------------


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


# --- integrity and progress ------------------------------------------------------------------


def test_integrity_check_counts_hashes_and_refuses_bytes_beyond_the_size():
    data = os.urandom(1000)
    check = IntegrityCheck(1000, hashlib.sha256(data).hexdigest())
    check.update(data[:400])
    assert not check.matches() and check.remaining == 600
    check.update(memoryview(data)[400:])
    assert check.matches()
    with pytest.raises(TransferIntegrityError) as info:
        check.update(b"x")
    assert info.value.reason == CancelReason.SIZE_EXCEEDED


def test_integrity_check_tells_a_different_content_of_the_same_size():
    check = IntegrityCheck(3, hashlib.sha256(b"abc").hexdigest())
    check.update(b"abd")
    assert not check.matches()


def test_progress_rate_follows_the_last_seconds_and_gives_the_time_left():
    progress = Progress(1000, window=5.0)
    assert progress.rate is None and progress.remaining_seconds is None
    progress.update(0, 100.0)
    progress.update(100, 101.0)  # 100 B/s
    assert progress.rate == 100.0 and progress.remaining_seconds == 9.0
    for second in range(2, 12):  # then 10 B/s for ten seconds
        progress.update(100 + 10 * (second - 1), 100.0 + second)
    assert progress.rate == pytest.approx(10.0)  # the fast start has left the window
    assert progress.remaining_seconds == pytest.approx((1000 - 200) / 10.0)
    assert progress.fraction == pytest.approx(0.2)


def test_progress_of_an_empty_file_is_complete_and_a_stalled_one_has_no_time_left():
    assert Progress(0).fraction == 1.0 and Progress(0).remaining_seconds == 0.0
    stalled = Progress(100)
    stalled.update(10, 0.0)
    stalled.update(10, 1.0)
    assert stalled.rate == 0.0 and stalled.remaining_seconds is None


def test_progress_survives_a_clock_going_backwards():
    progress = Progress(100)
    progress.update(10, 5.0)
    progress.update(20, 4.0)
    assert progress.rate is None and progress.done == 20


# --- file names ------------------------------------------------------------------------------

HOSTILE_NAMES = {
    "../../x": "x",
    "/etc/x": "etcx",
    "C:\\x": "C:x",
    "..\\..\\windows\\system32": "windowssystem32",
    "con": "file",
    "CON.txt": "file",
    "Com1.tar.gz": "file",
    "lpt9": "file",
    "nul.": "file",
    "aux .txt": "aux .txt",  # the spec's rule is the name before the first dot
    "COM10": "COM10",
    "console.log": "console.log",
    "..": "file",
    "...": "file",
    ". . .": "file",
    "   ": "file",
    "": "file",
    "a\x00b.txt": "ab.txt",
    "report\n.pdf": "report.pdf",
    "evil\u202etxt.exe": "eviltxt.exe",
    "zero\u200bwidth": "zerowidth",
    "\ufeffbom": "bom",
    ".bashrc": "bashrc",
    "name. . ": "name",
    " leading space": " leading space",
    "x" * 255: "x" * 255,
    "r\u00e9sum\u00e9.pdf": "r\u00e9sum\u00e9.pdf",
}


@pytest.mark.parametrize(("offered", "saved"), HOSTILE_NAMES.items())
def test_sanitize_filename_makes_a_safe_base_name(offered, saved):
    assert sanitize_filename(offered) == saved


def test_reserved_names_are_recognised_with_any_extension_in_any_case():
    assert all(is_reserved_name(n) for n in ("CON", "con", "Prn.x", "aUx.a.b", "LPT1.txt"))
    assert not any(is_reserved_name(n) for n in ("CONS", "COM0", "LPT", "file", "xcon"))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_sanitized_names_are_never_paths_controls_hidden_or_reserved(name):
    saved = sanitize_filename(name)
    assert saved
    assert "/" not in saved and "\\" not in saved
    assert all(unicodedata.category(c) not in ("Cc", "Cf") for c in saved)
    assert not saved.startswith(".")
    assert not saved.endswith((".", " "))
    assert not is_reserved_name(saved)
    assert sanitize_filename(saved) == saved


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["..", "/", "\\", ".", " ", "\x00", "\u202e", "con", "a"]), max_size=12
    )
)
def test_sanitize_filename_is_idempotent_on_adversarial_pieces(pieces):
    once = sanitize_filename("".join(pieces))
    assert sanitize_filename(once) == once
    assert once not in (".", "..") and not ({"/", "\\", "\x00", "\u202e"} & set(once))


# --- a whole transfer through a relay in memory ------------------------------------------------


class Relay:
    """One server process in memory: a registry and the inboxes of the sessions it serves.

    Client events go in with :meth:`from_client` (requests are validated as the
    server would, chunks go through the record framing); the registry's actions
    land in the inboxes. It records the largest window the registry ever let a
    transfer reach, and every error a session was sent.
    """

    def __init__(self, registry: TransferRegistry | None = None) -> None:
        self.registry = registry or TransferRegistry()
        self.users: dict[str, str] = {}
        self.inbox: dict[str, deque[dict[str, Any] | FileChunk]] = {}
        self.shown: dict[str, list[ClientEvent]] = {}
        self.errors: list[tuple[str, dict[str, Any]]] = []
        self.max_unacked = 0
        self.now = 0.0

    def connect(self, session: str, user: str) -> None:
        self.users[session] = user
        self.inbox[session] = deque()
        self.shown[session] = []

    def from_client(self, session: str, events: list[ClientEvent]) -> None:
        user = self.users[session]
        for event in events:
            if isinstance(event, Send):
                req = validate_request(event.message)
                if req.type == "file_offer":
                    actions = self.registry.offer(req, session=session, user=user, now=self.now)
                else:
                    actions = self.registry.receive(req, session=session, user=user)
            elif isinstance(event, SendChunk):
                c = event.chunk
                decoded = decode_plaintext(encode_chunk(c.transfer, c.index, c.data))
                assert isinstance(decoded, FileChunk)
                actions = self.registry.receive_chunk(decoded, session=session)
            else:
                self.shown[session].append(event)
                continue
            self.carry(actions)

    def carry(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                if isinstance(action.to, ToSession):
                    targets = [action.to.session]
                else:
                    targets = [
                        s
                        for s, u in self.users.items()
                        if u == action.to.user and s != action.to.exclude
                    ]
                for target in targets:
                    self.inbox[target].append(action.message)
            elif isinstance(action, DeliverChunk):
                self.inbox[action.session].append(action.chunk)
                transfer = self.registry.get(action.chunk.transfer_hex)
                self.max_unacked = max(self.max_unacked, transfer.unacked)
            else:
                assert isinstance(action, Refuse)
                message = error_message(action.code, action.message, action.ref)
                self.inbox[action.session].append(message)
                self.errors.append((action.session, message))


def run(relay: Relay, ends: dict[str, Any], rng: random.Random, *, until: Any = None) -> None:
    """Let each session's end read its inbox, one item at a time, in a random interleaving.

    An end has ``handle(message)`` and ``handle_chunk(chunk)`` returning client events
    (the shape of tk_client's Upload and Download). ``until(relay)`` may stop early.
    """
    while True:
        if until is not None and until(relay):
            return
        ready = [session for session, items in relay.inbox.items() if items]
        if not ready:
            return
        session = rng.choice(ready)
        item = relay.inbox[session].popleft()
        end = ends.get(session)
        if end is None:
            if isinstance(item, dict):
                relay.shown[session].append(item)  # type: ignore[arg-type]
            continue
        if isinstance(item, FileChunk):
            relay.from_client(session, end.handle_chunk(item))
        else:
            relay.from_client(session, end.handle(item))


class MemorySender:
    """The sender's end over bytes in memory (tk_client's Upload does this with a file)."""

    def __init__(self, data: bytes, to: str) -> None:
        self.data = data
        sha = hashlib.sha256(data).hexdigest()
        self.outgoing = OutgoingTransfer(to=to, name="data.bin", size=len(data), sha256=sha)

    def handle(self, message: dict[str, Any]) -> list[ClientEvent]:
        events = self.outgoing.receive(message)
        while size := self.outgoing.next_chunk_size():
            start = self.outgoing.bytes_sent
            events += self.outgoing.chunk(self.data[start : start + size])
        if self.outgoing.ready_to_end:
            events += self.outgoing.end()
        return events

    def handle_chunk(self, chunk: FileChunk) -> list[ClientEvent]:
        raise AssertionError("the sender never receives chunks")


class MemoryReceiver:
    """The recipient's end writing into memory, hashing as it writes."""

    def __init__(self, offer: dict[str, Any]) -> None:
        self.incoming = IncomingTransfer.from_offer(offer)
        self.check = IntegrityCheck(self.incoming.size, self.incoming.sha256)
        self.data = bytearray()

    def handle_chunk(self, chunk: FileChunk) -> list[ClientEvent]:
        events: list[ClientEvent] = []
        for event in self.incoming.receive_chunk(chunk):
            if isinstance(event, ChunkData):
                self.check.update(event.data)
                self.data += event.data
                events += self.incoming.written(event.index)
            else:
                events.append(event)
        return events

    def handle(self, message: dict[str, Any]) -> list[ClientEvent]:
        events: list[ClientEvent] = []
        for event in self.incoming.receive(message):
            if isinstance(event, Ended):
                events += self.incoming.finish(event.size_ok and self.check.matches())
            else:
                events.append(event)
        return events


def connected_relay() -> Relay:
    relay = Relay()
    for session, user in USERS.items():
        relay.connect(session, user)
    return relay


def offer_and_accept(relay: Relay, sender: Any, accept_on: str = "bob-1") -> Any:
    relay.from_client("alice-1", [Send(sender.outgoing.offer("o1"))])
    offer = relay.inbox[accept_on].popleft()
    receiver = MemoryReceiver(offer)  # type: ignore[arg-type]
    relay.from_client(accept_on, receiver.incoming.accept())
    return receiver


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
