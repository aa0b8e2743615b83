"""The server's relay rules of a file transfer (:mod:`chatproto.transfer.relay`).

The tests assert the exact actions a consumer would carry out, so every
answer, every relayed message, every cancel reason and every ``final`` flag is
pinned down.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from chatproto.codes import ErrorCode
from chatproto.errors import LocalProtocolError
from chatproto.limits import MAX_CHUNK_SIZE, TRANSFER_WINDOW
from chatproto.messages import validate_request
from chatproto.transfer import (
    OFFER_TIMEOUT_SECONDS,
    Action,
    Deliver,
    DeliverChunk,
    RecipientStatus,
    Refuse,
    ToSession,
    ToUser,
    TransferRegistry,
)
from tests.chatproto.transfer_harness import (
    SHA,
    T2,
    USERS,
    T,
    cancel,
    chunk,
)


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


def offered(size: int = 100, now: float = 0.0, **options: Any) -> TransferRegistry:
    registry = TransferRegistry(**options)
    actions = registry.offer(offer_request(size=size), session="alice-1", user="alice", now=now)
    assert actions[0] == to("alice-1", ok("o1"))
    return registry


def accepted(size: int = 100, **options: Any) -> TransferRegistry:
    registry = offered(size, **options)
    actions = registry.receive(request("file_accept", transfer=T), session="bob-1", user="bob")
    assert actions[0] == to("alice-1", {"type": "file_accept", "transfer": T, "from": "bob"})
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
    assert step_actions[0] == to("alice-1", {"type": "file_accept", "transfer": T, "from": "bob"})
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
        Refuse(session, ErrorCode.UNKNOWN_TRANSFER, ANY, None, counts=True)
    ]
    assert registry.get(T).next_index == 0


def test_steps_and_chunks_of_an_unknown_transfer_are_unknown_transfer():
    registry = accepted()
    actions = registry.receive(
        request("file_ack", transfer=T2, index=0, id="k"), session="bob-1", user="bob"
    )
    assert actions == [Refuse("bob-1", ErrorCode.UNKNOWN_TRANSFER, ANY, "k")]
    stray = registry.receive_chunk(chunk(0, transfer=bytes.fromhex(T2)), session="alice-1")
    assert stray == [Refuse("alice-1", ErrorCode.UNKNOWN_TRANSFER, ANY, None, counts=True)]


def test_registry_refuses_to_be_misused_by_its_caller():
    registry = offered()
    with pytest.raises(LocalProtocolError):
        registry.receive(offer_request(transfer=T2), session="alice-1", user="alice")
    with pytest.raises(LocalProtocolError):
        registry.offer(request("file_accept", transfer=T), session="bob-1", user="bob", now=0)
    with pytest.raises(LocalProtocolError):
        registry.receive(request("ping"), session="bob-1", user="bob")


# --- steps out of turn: against the order of the steps, the transfer ends (1.1) ---------------

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
def test_step_out_of_turn_ends_the_transfer_with_file_cancel_and_no_other_answer(
    state, session, kind, fields
):
    registry = offered(size=0) if state == "offered" else accepted(size=0)
    if state == "ended":
        step(registry, "alice-1", "file_end")
    actions = step(registry, session, kind, id="s1", **fields)
    recipient = ToUser("bob") if state == "offered" else BOB_1
    assert actions == cancelled_both("chunk_out_of_order", recipient)
    assert registry.idle


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
        to("alice-1", {"type": "file_ack", "transfer": T, "index": 0}),
    ]
    # file_end once every byte is relayed, without waiting for the last ack.
    assert step(registry, "alice-1", "file_end", id="e") == [
        to("bob-1", {"type": "file_end", "transfer": T}),
    ]
    assert step(registry, "bob-1", "file_ack", index=1) == [
        to("alice-1", {"type": "file_ack", "transfer": T, "index": 1}),
    ]
    assert step(registry, "bob-1", "file_done", ok=True, id="d") == [
        to("alice-1", {"type": "file_done", "transfer": T, "ok": True}, True),
    ]
    assert registry.idle


def test_empty_file_has_no_chunks_and_ends_right_after_the_accept():
    registry = accepted(size=0)
    assert step(registry, "alice-1", "file_end") == [
        to("bob-1", {"type": "file_end", "transfer": T})
    ]
    assert step(registry, "bob-1", "file_done", ok=False) == [
        to("alice-1", {"type": "file_done", "transfer": T, "ok": False}, True)
    ]
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
    assert actions == cancelled_both("size_exceeded")  # and no other answer
    assert registry.idle


@pytest.mark.parametrize(("sent", "acked", "index"), [(0, 0, 0), (2, 0, 1), (2, 1, 0), (1, 1, 1)])
def test_acknowledgement_out_of_order_is_refused_and_cancels(sent, acked, index):
    registry = accepted(size=1000)
    send_chunks(registry, sent)
    for earlier in range(acked):
        step(registry, "bob-1", "file_ack", index=earlier)
    actions = step(registry, "bob-1", "file_ack", index=index, id="k")
    assert actions == cancelled_both("chunk_out_of_order")  # and no other answer
    assert registry.idle


# --- cancels and endings from outside --------------------------------------------------------


def test_sender_cancelling_an_offer_tells_every_recipient_session():
    registry = offered()
    actions = step(registry, "alice-1", "file_cancel", reason="changed my mind", id="c")
    assert actions == [
        Deliver(ToUser("bob"), cancel("changed my mind"), True),
    ]
    assert registry.idle


def test_recipient_cancelling_an_offer_tells_the_sender_and_its_other_sessions():
    registry = offered()
    actions = step(registry, "bob-2", "file_cancel")
    assert actions == [
        to("alice-1", cancel("cancelled"), True),  # an empty reason is relayed as "cancelled"
        Deliver(ToUser("bob", exclude="bob-2"), cancel("answered_elsewhere"), True),
    ]
    assert registry.idle


@pytest.mark.parametrize(("canceller", "other"), [("alice-1", "bob-1"), ("bob-1", "alice-1")])
def test_cancel_mid_transfer_is_relayed_to_the_other_session(canceller, other):
    registry = accepted(size=1000)
    send_chunks(registry, 3)
    actions = step(registry, canceller, "file_cancel", reason="stop")
    assert actions == [to(other, cancel("stop"), True)]
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
    assert registry.get(T).state.value == "offered"


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


# --- chunks the sender had in flight when the transfer ended ------------------------------------
#
# A cancel (or a disconnect) of the recipient races the sender's window of chunks: those
# that arrive after the end are dropped silently and do not count as bad requests
# (PROTOCOL.md 3.3 counts a chunk "from any other session"); the sender got file_cancel.

COUNTED = Refuse("alice-1", ErrorCode.UNKNOWN_TRANSFER, ANY, None, counts=True)


def ended_mid_window(how: str, now: float | None = 100.0) -> TransferRegistry:
    """Alice's transfer with a full window in flight, ended by the recipient at ``now``."""
    registry = accepted(size=10 * MAX_CHUNK_SIZE)
    send_chunks(registry, 3)  # relayed before the end
    if how == "cancel":
        actions = registry.receive(
            request("file_cancel", transfer=T, reason="stop"), session="bob-1", user="bob", now=now
        )
        assert actions == [to("alice-1", cancel("stop"), True)]
    else:
        actions = registry.drop_session("bob-1", now=now)
        assert actions == [to("alice-1", cancel("disconnected"), True)]
    assert T not in registry and registry.remembered("alice-1") == [T]
    return registry


@pytest.mark.parametrize("how", ["cancel", "disconnect"])
def test_the_senders_chunks_in_flight_after_the_recipient_ends_it_are_dropped_silently(how):
    registry = ended_mid_window(how)
    for index in range(3, 3 + TRANSFER_WINDOW):
        assert registry.receive_chunk(chunk(index), session="alice-1", now=101.0) == []
    # A window's worth has arrived: the transfer is forgotten, and a further chunk counts.
    assert registry.remembered("alice-1") == []
    assert registry.receive_chunk(chunk(19), session="alice-1", now=101.0) == [COUNTED]
    assert registry.idle


@pytest.mark.parametrize("session", ["alice-2", "bob-1", "carol-1"])
def test_a_chunk_of_an_ended_transfer_from_any_other_session_still_counts(session):
    registry = ended_mid_window("cancel")
    assert registry.receive_chunk(chunk(3), session=session, now=101.0) == [
        Refuse(session, ErrorCode.UNKNOWN_TRANSFER, ANY, None, counts=True)
    ]
    assert registry.remembered("alice-1") == [T]


def test_a_chunk_of_a_transfer_the_sender_never_had_still_counts_beside_the_memory():
    registry = ended_mid_window("cancel")
    other = chunk(0, transfer=bytes.fromhex(T2))
    assert registry.receive_chunk(other, session="alice-1", now=101.0) == [COUNTED]


def test_the_memory_of_an_ended_transfer_lasts_a_few_seconds():
    registry = ended_mid_window("cancel", now=100.0)
    linger = registry.linger
    assert 0 < linger <= 30
    assert registry.receive_chunk(chunk(3), session="alice-1", now=100.0 + linger - 0.01) == []
    assert registry.receive_chunk(chunk(4), session="alice-1", now=100.0 + linger) == [COUNTED]
    assert registry.remembered("alice-1") == []


def test_an_end_without_a_time_is_timed_from_the_next_chunk_that_has_one():
    registry = ended_mid_window("cancel", now=None)
    assert registry.receive_chunk(chunk(3), session="alice-1") == []  # no time: counted off only
    assert registry.receive_chunk(chunk(4), session="alice-1", now=500.0) == []
    linger = registry.linger
    assert registry.receive_chunk(chunk(5), session="alice-1", now=500.0 + linger - 0.01) == []
    assert registry.receive_chunk(chunk(6), session="alice-1", now=500.0 + linger) == [COUNTED]


def test_a_transfer_the_relay_cancels_leaves_the_senders_later_chunks_silent_too():
    registry = accepted(size=10 * MAX_CHUNK_SIZE)
    send_chunks(registry, TRANSFER_WINDOW)
    actions = registry.receive_chunk(chunk(TRANSFER_WINDOW), session="alice-1", now=1.0)
    assert actions == cancelled_both("window_exceeded")
    assert registry.receive_chunk(chunk(TRANSFER_WINDOW + 1), session="alice-1", now=1.0) == []


def test_the_senders_session_ending_frees_its_memory():
    registry = ended_mid_window("cancel")
    assert registry.drop_session("alice-1", now=101.0) == []
    assert registry.remembered("alice-1") == []
    assert registry.receive_chunk(chunk(3), session="alice-1", now=101.0) == [COUNTED]


def test_the_memory_is_bounded_per_session_and_a_reused_id_is_live_again():
    registry = TransferRegistry()
    limit = 2 * registry.max_open_per_user
    ids = []
    for _ in range(3):  # many more transfers end than the memory holds
        batch = open_offers(registry, "alice", registry.max_open_per_user)
        for transfer in batch:
            registry.receive(request("file_accept", transfer=transfer), session="bob-1", user="bob")
            actions = registry.receive(
                request("file_cancel", transfer=transfer), session="bob-1", user="bob", now=1.0
            )
            assert actions == [to("alice-1", cancel("cancelled", transfer), True)]
        ids += batch
    assert registry.remembered("alice-1") == ids[-limit:]  # the newest, oldest forgotten first
    forgotten = chunk(0, transfer=bytes.fromhex(ids[0]))
    assert registry.receive_chunk(forgotten, session="alice-1", now=2.0) == [COUNTED]
    again = ids[-1]
    registry.offer(offer_request(transfer=again), session="alice-1", user="alice", now=2.0)
    assert again in registry and again not in registry.remembered("alice-1")


def ended_by(how: str) -> TransferRegistry:
    if how == "reject":
        registry = offered()
        step(registry, "bob-1", "file_reject")
    elif how == "expiry":
        registry = offered(now=0.0)
        registry.expire(OFFER_TIMEOUT_SECONDS)
    else:
        registry = accepted(size=10)
        send_chunks(registry, 1)
        if how == "sender_cancel":
            step(registry, "alice-1", "file_cancel")
        elif how == "done":
            step(registry, "alice-1", "file_end")
            step(registry, "bob-1", "file_ack", index=0)
            step(registry, "bob-1", "file_done", ok=True)
        else:  # the recipient cancels after file_end: every chunk came before file_end
            step(registry, "alice-1", "file_end")
            step(registry, "bob-1", "file_cancel")
    assert T not in registry
    return registry


@pytest.mark.parametrize("how", ["reject", "expiry", "sender_cancel", "done", "cancel_after_end"])
def test_transfers_that_end_with_no_chunk_of_the_sender_in_flight_are_not_remembered(how):
    registry = ended_by(how)
    assert registry.remembered("alice-1") == []
    assert registry.receive_chunk(chunk(1), session="alice-1", now=1.0) == [COUNTED]
