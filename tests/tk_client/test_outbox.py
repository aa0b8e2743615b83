"""The outbox without a connection: what is queued again, what fails, and how it is reported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tk_client.events import RequestState
from tk_client.outbox import IDEMPOTENT_TYPES, Outbox

LINK, OTHER_LINK = object(), object()


def sent(outbox: Outbox, type_: str, *, durable: bool = True, id_: str = "r1"):
    request = outbox.add({"type": type_, "id": id_}, durable=durable)
    request.link = LINK
    update = outbox.mark_sent(request, LINK)
    assert update is not None and update.request.state is RequestState.SENT
    return request


def test_a_new_request_waits_for_a_connection():
    outbox = Outbox()
    request = outbox.add({"type": "send", "id": "r1", "room": "lobby", "text": "hi"}, durable=True)

    assert outbox.waiting() == [request]
    assert [status.state for status in outbox.pending()] == [RequestState.QUEUED]


def test_a_request_handed_elsewhere_or_finished_is_not_marked_sent():
    outbox = Outbox()
    request = outbox.add({"type": "ping", "id": "r1"}, durable=True)
    request.link = LINK

    assert outbox.mark_sent(request, OTHER_LINK) is None
    assert outbox.mark_sent(request, LINK) is not None
    assert outbox.mark_sent(request, LINK) is None  # already sent


def test_the_direct_answer_finishes_the_request_by_ref():
    outbox = Outbox()
    sent(outbox, "send")

    assert outbox.answer({"type": "ack", "ref": "nope"}) is None
    assert outbox.answer({"type": "message", "ref": ["not", "a", "string"]}) is None
    done = outbox.answer({"type": "ack", "ref": "r1", "msg_id": 3})

    assert done is not None and done.request.state is RequestState.DONE
    assert done.answer == {"type": "ack", "ref": "r1", "msg_id": 3}
    assert outbox.pending() == []


def test_an_error_answer_fails_the_request_with_the_servers_words():
    outbox = Outbox()
    sent(outbox, "pm")

    failed = outbox.answer({"type": "error", "ref": "r1", "code": "unknown_user", "message": "who"})

    assert failed is not None and failed.request.state is RequestState.FAILED
    assert (failed.request.code, failed.request.error) == ("unknown_user", "who")
    assert not failed.request.uncertain


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            {"message": "too many messages", "retry_after": 12},
            "too many messages; try again in 12 seconds.",
        ),
        ({"message": "slow down.", "retry_after": 600}, "slow down; try again in 10 minutes."),
        ({"retry_after": 1}, "too many requests; try again in 1 second."),
        ({"message": "too many"}, "too many; try again later."),  # a revision 1 server
    ],
)
def test_a_rate_limited_request_says_how_long_to_wait_in_words(answer, words):
    # PROTOCOL.md revision 1.1: error rate_limited carries retry_after, for any request.
    outbox = Outbox()
    sent(outbox, "send")

    failed = outbox.answer({"type": "error", "ref": "r1", "code": "rate_limited", **answer})

    assert failed is not None and failed.request.code == "rate_limited"
    assert failed.request.error == words


@pytest.mark.parametrize("type_", sorted(IDEMPOTENT_TYPES))
def test_idempotent_requests_on_the_wire_are_queued_again(type_):
    outbox = Outbox()
    request = sent(outbox, type_)

    assert outbox.requeue(LINK) == []
    assert outbox.waiting() == [request] and request.state is RequestState.QUEUED


@pytest.mark.parametrize("type_", ["send", "pm", "create_room", "invite"])
def test_other_requests_on_the_wire_fail_as_uncertain_never_sent_twice(type_):
    outbox = Outbox()
    sent(outbox, type_)

    [failed] = outbox.requeue(LINK)

    assert failed.request.state is RequestState.FAILED and failed.request.uncertain
    assert "may or may not have been delivered" in failed.request.error
    assert outbox.waiting() == []


def test_a_request_not_yet_written_is_queued_again_whatever_its_type():
    outbox = Outbox()
    request = outbox.add({"type": "send", "id": "r1"}, durable=True)
    request.link = LINK

    assert outbox.requeue(LINK) == []
    assert outbox.waiting() == [request]


def test_a_connection_bound_request_fails_with_its_connection():
    outbox = Outbox()
    sent(outbox, "file_offer", durable=False)
    outbox.add({"type": "history", "id": "r2"}, durable=True).link = OTHER_LINK

    [failed] = outbox.requeue(LINK)

    assert failed.request.error == "the connection was lost" and failed.request.uncertain
    assert [status.id for status in outbox.pending()] == ["r2"]  # another link's is untouched


def test_closing_fails_everything_and_only_what_was_sent_is_uncertain():
    outbox = Outbox()
    sent(outbox, "send", id_="r1")
    outbox.add({"type": "send", "id": "r2"}, durable=True)

    updates = outbox.fail_all("not sent: you closed the session")

    assert [(u.request.id, u.request.uncertain) for u in updates] == [("r1", True), ("r2", False)]
    assert {u.request.state for u in updates} == {RequestState.FAILED}
    assert outbox.pending() == []


def test_the_outbox_does_no_io():
    source = (Path(__file__).parents[2] / "tk_client" / "outbox.py").read_text("utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"socket", "threading", "websocket", "tkinter", "time", "queue"}
