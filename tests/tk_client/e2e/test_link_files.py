"""The link's side of end-to-end files (protocol.md 4.12): seal an offer (waiting for the
first device's set-up like a typed message), open one (refused in words when it fails,
one line while its key is missing, forgotten when it ends)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tk_client.e2e.engine import Output
from tk_client.e2e.files import FileOfferRefused, FileOfferWaiting, Opened
from tk_client.e2e.link import WAIT_FOR_APPROVAL, E2ELink, NotApproved
from tk_client.e2e.megolm import Undecryptable

from .test_link import answer, setup_check

T = "0123456789abcdef0123456789abcdef"
WELL_FORMED = {
    "algorithm": "megolm.v1",
    "sender_key": "A" * 43,
    "device": "BOBDEV",
    "session_id": "B" * 43,
    "ciphertext": "AAAA",
}


def seal(link: E2ELink, sealed: list[Any], failed: list[str]) -> list[Any]:
    return link.seal_file(
        "bob",
        transfer=T,
        name="report.pdf",
        size=10,
        sha256="ab" * 32,
        key=os.urandom(32),
        on_sealed=sealed.append,
        on_failed=failed.append,
    )


def test_an_offer_made_during_the_set_up_is_sealed_once_the_user_key_exists(link, session):
    link.logged_in()
    sealed: list[Any] = []
    failed: list[str] = []
    seal(link, sealed, failed)
    assert link.can_send and not link.approved and sealed == []

    answer(link, setup_check(session), {"type": "keys", "users": {}})
    answer(link, session.of("user_key_publish")[-1], {"type": "ok"})
    for query in session.of("keys_query")[2:]:  # the engine's own, before it shares a key
        answer(link, query, {"type": "keys", "users": {}})

    assert failed == [] and len(sealed) == 1
    assert sealed[0]["algorithm"] == "megolm.v1" and "report.pdf" not in str(sealed[0])
    assert session.of("pm") == []  # the link only seals; the worker sends the offer


def test_an_offer_made_on_a_device_that_must_wait_for_approval_fails_in_words(link, session):
    link.logged_in()
    sealed: list[Any] = []
    failed: list[str] = []
    seal(link, sealed, failed)

    answer(
        link,
        setup_check(session),
        {"type": "keys", "users": {"alice": {"user_key": {"ed25519": "x"}, "devices": []}}},
    )

    assert sealed == [] and failed == [WAIT_FOR_APPROVAL]
    assert not link.can_send
    with pytest.raises(NotApproved):
        seal(link, sealed, failed)


def offer(e2e: Any) -> dict[str, Any]:
    return {
        "type": "file_offer",
        "transfer": T,
        "from": "bob",
        "to": "alice",
        "size": 26,
        "e2e": e2e,
    }


def test_a_malformed_offer_is_refused_in_words(link):
    (refused,) = link.open_file_offer(offer({"algorithm": "megolm.v1"}))

    assert refused == FileOfferRefused(T, "bob")
    assert refused.text == "A file from bob could not be verified and was refused."


def test_an_offer_whose_key_is_missing_waits_with_one_line(link):
    (waiting,) = link.open_file_offer(offer(WELL_FORMED))

    assert isinstance(waiting, FileOfferWaiting) and waiting.transfer == T
    assert waiting.text == "A file from bob is waiting for its key: asked your other devices."


def test_an_offer_from_an_unsigned_device_waits_in_its_own_words():
    waiting = FileOfferWaiting(T, "bob", Undecryptable.SENDER_NOT_VERIFIED)
    assert "a device that bob has not verified" in waiting.text


def test_an_offer_that_ended_while_it_waited_is_dropped_by_the_link_and_the_engine(link):
    link.open_file_offer(offer(WELL_FORMED))
    assert link._offers and link.engine._held

    link.drop_file_offer(T)

    assert not link._offers and not link.engine._held


def test_an_opened_offer_is_saved_so_a_replay_after_a_restart_is_still_refused(link, monkeypatch):
    """The replay memory of an opened offer (its message index, 4.5) goes to the store at
    once: a client restarted before any other save still refuses the offer replayed."""
    saves: list[int] = []
    monkeypatch.setattr(link, "_save", lambda: saves.append(1))
    opened = Opened("pm:alice:bob", f"file:{T}", "bob", {"type": "file"})
    monkeypatch.setattr(link.engine, "open_file_offer", lambda o, now: Output(events=[opened]))

    (verdict,) = link.open_file_offer(offer(WELL_FORMED))

    assert isinstance(verdict, FileOfferRefused)  # the plaintext lacks the file's facts
    assert saves
