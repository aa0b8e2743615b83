"""Transfer steps under protocol revision 1.1 (PROTOCOL.md 3.3), with a fake session.

Only ``file_offer`` is a request: every other step goes without ``id`` and gets
no answer. ``error`` ``unknown_transfer`` means the server cannot relay a step:
the transfer it is about ends with words saying so, unless a transfer that just
ended explains it (a race). A revision 1 server's ``ok`` to a step is harmless.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import time
from pathlib import Path
from typing import Any

import pytest

from chatproto.framing import FileChunk
from tk_client.events import ChunkArrived, Phase, Received, RequestState, RequestStatus
from tk_client.files import TransferChanged, TransferManager, TransferState

ALICE_TRANSFER = "a" * 32
CAROL_TRANSFER = "c" * 32
GRACE = 0.1  # how long an unnamed unknown_transfer waits for the end that explains it


class FakeSession:
    """What TransferManager needs of ChatSession; records what would go on the wire."""

    def __init__(self) -> None:
        self.events: queue.Queue[Any] = queue.Queue()
        self.greeting: dict[str, Any] | None = {"limits": {"max_file_size": 1 << 20}}
        self.phase = Phase.ONLINE
        self.hooks: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def add_hook(self, hook: Any) -> None:
        self.hooks.append(hook)

    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus:
        message = {"type": type_, **fields, "id": f"r{next(self._ids)}"}
        self.requests.append(message)
        return RequestStatus(message["id"], message, RequestState.QUEUED)

    def send_message(self, message: dict[str, Any]) -> None:
        self.sent.append(dict(message))

    def send_chunk(self, transfer: bytes, index: int, data: bytes) -> None:
        pass

    def arrive(self, message: dict[str, Any]) -> bool:
        """A server message on the network thread: True if the transfers took it."""
        return any(hook(Received(message)) for hook in self.hooks)


def offer(transfer: str, sender: str, data: bytes = b"hello") -> dict[str, Any]:
    return {
        "type": "file_offer",
        "transfer": transfer,
        "from": sender,
        "name": f"from-{sender}.txt",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited in vain for {what}")
        time.sleep(0.01)


def ending(session: FakeSession, transfer: str, timeout: float = 10.0):
    """The TransferChanged that ends ``transfer`` (other events are dropped)."""
    deadline = time.monotonic() + timeout
    while True:
        event = session.events.get(timeout=max(0.01, deadline - time.monotonic()))
        info = event.info if isinstance(event, TransferChanged) else None
        if info is not None and info.transfer == transfer and info.over:
            return info


@pytest.fixture
def session():
    return FakeSession()


@pytest.fixture
def manager(session):
    manager = TransferManager(session, unknown_grace=GRACE)
    yield manager
    manager.close()


def accepted(session: FakeSession, manager: TransferManager, transfer: str, sender: str, folder):
    Path(folder).mkdir(exist_ok=True)
    assert session.arrive(offer(transfer, sender))
    manager.accept_into(transfer, folder)
    wait_for(
        lambda: any(m["type"] == "file_accept" and m["transfer"] == transfer for m in session.sent),
        "the file_accept",
    )


def test_steps_go_without_an_id_and_an_old_servers_ok_is_harmless(session, manager, tmp_path):
    accepted(session, manager, ALICE_TRANSFER, "alice", tmp_path)

    assert all("id" not in message for message in session.sent)
    assert session.requests == []  # only file_offer is a request
    assert session.arrive({"type": "ok"})  # a revision 1 server answering the accept
    assert manager.transfers()[0].stage is TransferState.RUNNING


@pytest.mark.parametrize("ref", [None, "r9"], ids=["revision-1.1", "with-a-ref"])
def test_unknown_transfer_ends_the_transfer_with_words_and_no_file(session, manager, tmp_path, ref):
    accepted(session, manager, ALICE_TRANSFER, "alice", tmp_path)
    error = {"type": "error", "code": "unknown_transfer", "message": "no open transfer"}
    if ref is not None:
        error["ref"] = ref  # matches no request: an old server echoing an id

    assert session.arrive(error)

    info = ending(session, ALICE_TRANSFER)
    assert info.stage is TransferState.FAILED and info.reason == "unknown_transfer"
    assert "server lost track of this transfer" in info.message
    assert list(tmp_path.iterdir()) == []  # the partial file went
    assert manager.transfers() == []


def test_an_offer_not_yet_answered_is_not_ended_by_someone_elses_error(session, manager, tmp_path):
    assert session.arrive(offer(ALICE_TRANSFER, "alice"))  # unanswered: we sent nothing

    session.arrive({"type": "error", "code": "unknown_transfer", "message": "no"})

    time.sleep(3 * GRACE)
    assert [info.stage for info in manager.transfers()] == [TransferState.OFFERED]


@pytest.mark.parametrize("error_first", [False, True], ids=["cancel-first", "error-first"])
def test_an_error_beside_a_transfers_end_is_taken_for_that_race(
    session, manager, tmp_path, error_first
):
    # Alice cancels while our ack is on the wire: the server refuses the ack, and its relayed
    # cancel may come before or after that error. It is about Alice's transfer; Carol's goes on.
    accepted(session, manager, ALICE_TRANSFER, "alice", tmp_path / "a")
    accepted(session, manager, CAROL_TRANSFER, "carol", tmp_path / "c")
    error = {"type": "error", "code": "unknown_transfer", "message": "no"}
    cancel = {"type": "file_cancel", "transfer": ALICE_TRANSFER, "reason": "cancelled"}

    for message in [error, cancel] if error_first else [cancel, error]:
        session.arrive(message)

    assert ending(session, ALICE_TRANSFER).reason == "cancelled"
    time.sleep(3 * GRACE)
    assert [info.transfer for info in manager.transfers()] == [CAROL_TRANSFER]


def test_a_transfer_the_server_still_relays_for_is_not_the_lost_one(session, manager, tmp_path):
    accepted(session, manager, ALICE_TRANSFER, "alice", tmp_path / "a")
    accepted(session, manager, CAROL_TRANSFER, "carol", tmp_path / "c")

    session.arrive({"type": "error", "code": "unknown_transfer", "message": "no"})
    chunk = FileChunk(bytes.fromhex(CAROL_TRANSFER), 0, b"he")
    assert any(hook(ChunkArrived(chunk)) for hook in session.hooks)  # carol's is alive

    assert ending(session, ALICE_TRANSFER).reason == "unknown_transfer"
    assert [info.transfer for info in manager.transfers()] == [CAROL_TRANSFER]


def test_an_error_naming_its_transfer_ends_only_that_one(session, manager, tmp_path):
    accepted(session, manager, ALICE_TRANSFER, "alice", tmp_path / "a")
    accepted(session, manager, CAROL_TRANSFER, "carol", tmp_path / "c")

    session.arrive(
        {"type": "error", "code": "unknown_transfer", "message": "no", "transfer": CAROL_TRANSFER}
    )

    assert ending(session, CAROL_TRANSFER).reason == "unknown_transfer"
    assert [info.transfer for info in manager.transfers()] == [ALICE_TRANSFER]


def test_the_error_is_not_shown_twice_as_a_server_notice(session, manager):
    # The hook takes it on the network thread; the controller never sees it.
    assert session.arrive({"type": "error", "code": "unknown_transfer", "message": "no"})
    assert session.events.empty()
