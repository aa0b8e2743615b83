"""Incoming files on the terminal: one question at a time, answered by the next line typed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tk_client.files import TransferError, TransferInfo, TransferState
from tk_client.secure_files import SEALED_OFFER
from tk_client.terminal_lines import is_yes
from tk_client.terminal_offers import OfferQuestions
from tk_client.terminal_view import TerminalView


class RecordingTransfers:
    """The terminal's side of the transfer manager, recorded."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.accepted: list[tuple[str, Path]] = []
        self.declined: list[str] = []

    def accept(self, transfer: str, destination) -> Path:
        if self.refuse:
            raise TransferError(self.refuse)
        self.accepted.append((transfer, Path(destination)))
        return Path(destination)

    def accept_into(self, transfer: str, folder) -> Path:
        return self.accept(transfer, Path(folder) / "notes.txt")

    def decline(self, transfer: str) -> None:
        self.declined.append(transfer)

    def answerable(self, transfer: str) -> bool:
        return True


def offer(
    transfer: str = "t1", name: str = "notes.txt", stage=TransferState.OFFERED, end_to_end=True
):
    return TransferInfo(
        transfer=transfer,
        outgoing=False,
        peer="alice",
        name=name,
        size=2048,
        stage=stage,
        done=0,
        fraction=0.0,
        rate=None,
        remaining=None,
        progress="",
        message="words",
        end_to_end=end_to_end,
    )


@pytest.fixture
def err():
    return io.StringIO()


@pytest.fixture
def transfers():
    return RecordingTransfers()


def questions_for(
    err, transfers, *, accept_into=None, interactive=True, device=True
) -> OfferQuestions:
    view = TerminalView(io.StringIO(), err)
    return OfferQuestions(
        view,
        transfers,
        accept_into=accept_into,
        interactive=interactive,
        reads_end_to_end=lambda: device,
    )


def test_an_offer_is_asked_about_then_saved_where_the_user_says(err, transfers, tmp_path):
    questions = questions_for(err, transfers)

    assert questions.offered(offer())
    assert questions.asking
    assert err.getvalue().endswith(
        f"alice offers you the file notes.txt (2.0 KiB; {SEALED_OFFER}). Accept? [y/N] "
    )
    questions.answer("y")
    assert "Save as [" in err.getvalue()
    questions.answer(str(tmp_path / "saved.txt"))

    assert transfers.accepted == [("t1", tmp_path / "saved.txt")]
    assert not questions.asking
    assert f"* receiving notes.txt into {tmp_path / 'saved.txt'}" in err.getvalue()


def test_a_plain_offer_says_the_server_could_read_it(err, transfers):
    """4.12: a 3.3 offer (no e2e) is marked before the user answers."""
    questions = questions_for(err, transfers)
    questions.offered(offer(end_to_end=False))
    assert err.getvalue().endswith(
        "alice offers you the file notes.txt (2.0 KiB; not end-to-end encrypted: the server "
        "could read this file). Accept? [y/N] "
    )


def test_anything_but_yes_declines_and_the_next_offer_is_asked(err, transfers):
    questions = questions_for(err, transfers)
    questions.offered(offer("t1", "one.txt"))
    questions.offered(offer("t2", "two.txt"))
    assert "two.txt" not in err.getvalue()  # one question at a time

    questions.answer("sure")

    assert transfers.declined == ["t1"]
    assert err.getvalue().endswith(
        f"alice offers you the file two.txt (2.0 KiB; {SEALED_OFFER}). Accept? [y/N] "
    )


def test_an_offer_that_ends_unanswered_withdraws_its_question(err, transfers):
    questions = questions_for(err, transfers)
    questions.offered(offer("t1"))
    questions.offered(offer("t2"))

    assert questions.ended(offer("t2", stage=TransferState.FAILED)) is False  # only waiting
    assert questions.ended(offer("t1", stage=TransferState.FAILED)) is True  # on the screen
    assert not questions.asking
    assert transfers.declined == []  # the sender ended them: nothing to decline


def test_at_the_end_of_input_every_waiting_offer_is_declined(err, transfers):
    questions = questions_for(err, transfers)
    questions.offered(offer("t1"))
    questions.offered(offer("t2"))

    questions.abandon()

    assert transfers.declined == ["t1", "t2"]
    assert not questions.asking


def test_a_place_that_cannot_be_saved_to_is_asked_again(err):
    transfers = RecordingTransfers(refuse="Cannot save to /root/x: Permission denied.")
    questions = questions_for(err, transfers)
    questions.offered(offer())
    questions.answer("yes")

    questions.answer("/root/x")

    assert "error: Cannot save to /root/x: Permission denied." in err.getvalue()
    assert questions.asking
    assert err.getvalue().endswith("]: ")  # Save as [...]: again


def test_accept_files_saves_without_asking(err, transfers, tmp_path):
    questions = questions_for(err, transfers, accept_into=str(tmp_path), interactive=False)

    assert questions.offered(offer())

    assert transfers.accepted == [("t1", tmp_path / "notes.txt")]
    assert not questions.asking
    assert (
        f"* receiving notes.txt (2.0 KiB; {SEALED_OFFER}) from alice into {tmp_path}"
        in err.getvalue()
    )


def test_accept_files_never_takes_a_plain_offer_unasked(err, transfers, tmp_path):
    """4.12: a 3.3 offer (which any server can forge in anyone's name) is shown with its
    warning before the user answers: with a device, --accept-files takes end-to-end
    offers only."""
    questions = questions_for(err, transfers, accept_into=str(tmp_path), interactive=False)
    assert questions.offered(offer(end_to_end=False))
    assert transfers.accepted == [] and transfers.declined == ["t1"]
    assert "* alice's file notes.txt was declined: it is not end-to-end encrypted" in (
        err.getvalue()
    )

    questions = questions_for(err, transfers, accept_into=str(tmp_path), interactive=True)
    assert questions.offered(offer(end_to_end=False))
    assert transfers.accepted == []
    assert err.getvalue().endswith(
        "alice offers you the file notes.txt (2.0 KiB; not end-to-end encrypted: the server "
        "could read this file). Accept? [y/N] "
    )


def test_without_a_device_accept_files_takes_plain_offers(err, transfers, tmp_path):
    """A session without a device reads nothing end to end: its files are all plain."""
    questions = questions_for(
        err, transfers, accept_into=str(tmp_path), interactive=False, device=False
    )
    assert questions.offered(offer(end_to_end=False))
    assert transfers.accepted == [("t1", tmp_path / "notes.txt")]


def test_without_a_terminal_or_a_folder_nobody_can_answer(err, transfers):
    questions = questions_for(err, transfers, interactive=False)
    assert questions.offered(offer()) is False  # the controller declines it


@pytest.mark.parametrize(
    ("answer", "yes"), [("y", True), (" YES \n", True), ("", False), ("n", False), ("yeah", False)]
)
def test_only_y_or_yes_is_yes(answer, yes):
    assert is_yes(answer) is yes
