"""File transfer through real servers (PROTOCOL.md 3.3; 4.12 end to end), on one process and two.

The sender is always on the first process and the recipient on the second,
so on the two-process deployment (Redis, PostgreSQL) every chunk, ack and
answer crosses the channel layer between the processes. The two ends are
chatproto's client state machines (``OutgoingTransfer``, ``IncomingTransfer``)
over the blocking test client; file data is made chunk by chunk from a seeded
generator (once to hash it for the offer, once to send it), never held whole.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import random
from collections.abc import Iterator

import pytest

from chatproto.e2e_files import PIECE_SIZE, ChunkCipher, encrypted_size, new_file_key
from chatproto.framing import FileChunk
from chatproto.limits import MAX_CHUNK_SIZE, TRANSFER_WINDOW
from chatproto.transfer import (
    Cancelled,
    ChunkData,
    Ended,
    Finished,
    IncomingTransfer,
    IntegrityCheck,
    OutgoingTransfer,
    Send,
    SendChunk,
    new_transfer_id,
)
from tests.e2e.deployments import Deployment
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.sync import SyncClient

pytestmark = pytest.mark.slow  # starts daphne processes

SENDER_PROCESS = 0
RECIPIENT_PROCESS = 1  # the same process when the deployment has only one


def blocks(size: int, seed: int) -> Iterator[bytes]:
    """``size`` pseudo-random bytes in chunk-sized blocks, the same for the same seed."""
    rng = random.Random(seed)
    remaining = size
    while remaining:
        length = min(MAX_CHUNK_SIZE, remaining)
        yield rng.randbytes(length)
        remaining -= length


def sha256_of(size: int, seed: int) -> str:
    check = IntegrityCheck(size, "0" * 64)
    for block in blocks(size, seed):
        check.update(block)
    return check.hexdigest()


def pair(deployment: Deployment) -> tuple[str, SyncClient, str, SyncClient]:
    """A sender on the first process and a recipient on the second (both logged in)."""
    alice, alice_client = deployment.register("alice", on=SENDER_PROCESS)
    bob, bob_client = deployment.register("bob", on=RECIPIENT_PROCESS)
    return alice, alice_client, bob, bob_client


def offer(client: SyncClient, outgoing: OutgoingTransfer) -> None:
    answer = client.request(outgoing.offer())
    assert answer["type"] == "ok", answer


def send_file(client: SyncClient, outgoing: OutgoingTransfer, seed: int) -> Finished | Cancelled:
    """The sender's side once the offer is made, as a client does it: the outcome."""
    data = blocks(outgoing.size, seed)
    while True:
        while length := outgoing.next_chunk_size():
            block = next(data)
            assert len(block) == length
            (event,) = outgoing.chunk(block)
            assert isinstance(event, SendChunk)
            client.send_chunk(event.chunk)
        if outgoing.ready_to_end:
            for event in outgoing.end():
                client.send(event.message)
        for event in outgoing.receive(client.recv()):
            if isinstance(event, Finished | Cancelled):
                return event


def receive_file(client: SyncClient) -> tuple[Finished | Cancelled, str]:
    """The recipient's side: accept the next offer, write (hash) and ack, verify; outcome, hash."""
    incoming = IncomingTransfer.from_offer(client.find("file_offer"))
    check = IntegrityCheck(incoming.size, incoming.sha256)
    for event in incoming.accept():
        client.send(event.message)
    while True:
        item = client.recv_item()
        if isinstance(item, FileChunk):
            events = incoming.receive_chunk(item)
        else:
            events = incoming.receive(item)
        for event in events:
            if isinstance(event, ChunkData):
                check.update(event.data)  # where a client writes the data to its file
                for reply in incoming.written(event.index):
                    client.send(reply.message)
            elif isinstance(event, Ended):
                for reply in incoming.finish(check.matches()):
                    if isinstance(reply, Send):
                        client.send(reply.message)
                    else:
                        return reply, check.hexdigest()
            elif isinstance(event, Cancelled):
                return event, check.hexdigest()


def test_fifty_mebibytes_arrive_intact(deployment):
    _alice, alice_client, bob, bob_client = pair(deployment)
    size, seed = 50 * 2**20 + 12_345, 5
    expected = sha256_of(size, seed)
    outgoing = OutgoingTransfer(to=bob, name="big.bin", size=size, sha256=expected)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        received = pool.submit(receive_file, bob_client)
        offer(alice_client, outgoing)
        outcome = send_file(alice_client, outgoing, seed)
        bob_outcome, bob_sha = received.result(timeout=120)
    assert outcome == Finished(ok=True)
    assert bob_outcome == Finished(ok=True)
    assert bob_sha == expected


def test_a_declined_offer_is_reported_to_the_sender(deployment):
    _alice, alice_client, bob, bob_client = pair(deployment)
    outgoing = OutgoingTransfer(to=bob, name="no.txt", size=10, sha256="0" * 64)
    offer(alice_client, outgoing)
    incoming = IncomingTransfer.from_offer(bob_client.find("file_offer"))
    for event in incoming.reject():
        bob_client.send(event.message)  # no answer (1.1)
    message = alice_client.find("file_reject")
    assert message == {"type": "file_reject", "transfer": outgoing.transfer, "from": bob}
    assert "ok" not in {m["type"] for m in bob_client.protocol.skipped}


def test_an_offer_over_the_servers_limit_is_too_large(deployment):
    _alice, alice_client, bob, _bob_client = pair(deployment)
    assert alice_client.greeting["limits"]["max_file_size"] == 4 * 2**30
    outgoing = OutgoingTransfer(to=bob, name="huge.iso", size=4 * 2**30 + 1, sha256="0" * 64)
    answer = alice_client.request(outgoing.offer())
    assert (answer["type"], answer["code"]) == ("error", "too_large")


def started(deployment: Deployment, size: int = 10 * MAX_CHUNK_SIZE):
    """A transfer accepted and three chunks through: (alice, bob, their clients, both ends)."""
    alice, alice_client, bob, bob_client = pair(deployment)
    outgoing = OutgoingTransfer(to=bob, name="part.bin", size=size, sha256="0" * 64)
    offer(alice_client, outgoing)
    incoming = IncomingTransfer.from_offer(bob_client.find("file_offer"))
    for event in incoming.accept():
        bob_client.send(event.message)
    outgoing.receive(alice_client.find("file_accept"))
    for block in itertools.islice(blocks(size, 1), 3):
        (event,) = outgoing.chunk(block)
        alice_client.send_chunk(event.chunk)
    for index in range(3):
        chunk = bob_client.recv_item()
        while not isinstance(chunk, FileChunk):  # the answer to the accept, pushes
            chunk = bob_client.recv_item()
        assert chunk.index == index
    return alice, bob, alice_client, bob_client, outgoing


def test_the_sender_cancelling_midway_reaches_the_recipient(deployment):
    _alice, _bob, alice_client, bob_client, outgoing = started(deployment)
    alice_client.send({"type": "file_cancel", "transfer": outgoing.transfer, "reason": "cancelled"})
    cancel = bob_client.find("file_cancel")
    assert cancel == {"type": "file_cancel", "transfer": outgoing.transfer, "reason": "cancelled"}


def test_the_recipient_cancelling_midway_reaches_the_sender(deployment):
    _alice, _bob, alice_client, bob_client, outgoing = started(deployment)
    bob_client.send(
        {"type": "file_cancel", "transfer": outgoing.transfer, "reason": "write_failed"}
    )
    cancel = alice_client.find("file_cancel")
    assert cancel == {
        "type": "file_cancel",
        "transfer": outgoing.transfer,
        "reason": "write_failed",
    }


def ended_in_log(deployment: Deployment, transfer: str, outcome: str) -> bool:
    """The owner's (sender's process's) log line saying the transfer's state is gone."""
    line = f"transfer {transfer[:8]} ended: {outcome}"
    return line in deployment.server(SENDER_PROCESS).log()


def test_the_sender_disconnecting_midway_is_reported_and_nothing_is_left(deployment):
    alice, bob, alice_client, bob_client, outgoing = started(deployment)
    alice_client.close()
    cancel = bob_client.find("file_cancel")
    assert cancel == {
        "type": "file_cancel",
        "transfer": outgoing.transfer,
        "reason": "disconnected",
    }
    assert ended_in_log(deployment, outgoing.transfer, "cancelled (disconnected)")
    # The transfer id is free again: the server kept nothing of the old transfer.
    again = deployment.login(alice, on=SENDER_PROCESS)
    reoffer = OutgoingTransfer(
        to=bob, name="again.bin", size=1, sha256="0" * 64, transfer=outgoing.transfer
    )
    offer(again, reoffer)


def test_the_recipient_disconnecting_midway_is_reported_and_nothing_is_left(deployment):
    _alice, bob, alice_client, bob_client, outgoing = started(deployment)
    bob_client.close()
    cancel = alice_client.find("file_cancel")
    assert cancel == {
        "type": "file_cancel",
        "transfer": outgoing.transfer,
        "reason": "disconnected",
    }
    assert ended_in_log(deployment, outgoing.transfer, "cancelled (disconnected)")
    deployment.login(bob, on=RECIPIENT_PROCESS)
    reoffer = OutgoingTransfer(
        to=bob, name="again.bin", size=1, sha256="0" * 64, transfer=outgoing.transfer
    )
    offer(alice_client, reoffer)


def test_an_unanswered_offer_ends_when_the_recipient_goes_offline(deployment):
    _alice, alice_client, bob, bob_client = pair(deployment)
    outgoing = OutgoingTransfer(to=bob, name="later.bin", size=10, sha256="0" * 64)
    offer(alice_client, outgoing)
    bob_client.find("file_offer")
    bob_client.close()
    cancel = alice_client.find("file_cancel")
    assert cancel == {
        "type": "file_cancel",
        "transfer": outgoing.transfer,
        "reason": "disconnected",
    }


def test_the_server_never_forwards_a_chunk_beyond_the_window(deployment):
    _alice, alice_client, bob, bob_client = pair(deployment)
    transfer = new_transfer_id()
    size = (TRANSFER_WINDOW + 1) * 100
    alice_client.request(
        {
            "type": "file_offer",
            "transfer": transfer,
            "to": bob,
            "name": "w.bin",
            "size": size,
            "sha256": "0" * 64,
        }
    )
    bob_client.find("file_offer")
    bob_client.send({"type": "file_accept", "transfer": transfer})
    alice_client.find("file_accept")
    for index in range(TRANSFER_WINDOW + 1):  # never waiting for an ack
        alice_client.send_chunk(FileChunk(bytes.fromhex(transfer), index, b"w" * 100))
    cancel = {"type": "file_cancel", "transfer": transfer, "reason": "window_exceeded"}
    assert alice_client.find("file_cancel") == cancel
    forwarded = []
    while (item := bob_client.recv_item()) != cancel:
        if isinstance(item, FileChunk):
            forwarded.append(item.index)
    assert forwarded == list(range(TRANSFER_WINDOW))


@pytest.mark.services
@pytest.mark.parametrize("deployment", ["scaled"], indirect=True)
@pytest.mark.parametrize("dying", ["sender", "recipient"])
def test_a_transfer_ends_when_the_other_sides_server_process_dies(deployment, dying):
    """A killed process says goodbye to nobody: presence notices, and the survivor is told."""
    _alice, _bob, alice_client, bob_client, outgoing = started(deployment)
    on, survivor = (
        (SENDER_PROCESS, bob_client) if dying == "sender" else (RECIPIENT_PROCESS, alice_client)
    )
    deployment.server(on).kill()
    try:
        # Three missed heartbeats (1 s each in tests), then two checks of the survivor's.
        cancel = survivor.find("file_cancel", timeout=30)
        assert cancel == {
            "type": "file_cancel",
            "transfer": outgoing.transfer,
            "reason": "disconnected",
        }
    finally:
        deployment.server(on).start()


def test_an_end_to_end_file_crosses_the_relay_as_it_came(deployment):
    """Protocol 4.12: an offer with ``e2e`` (no name, no hash) and AES-GCM chunks go from
    one process to the other unchanged; the recipient opens every chunk with the file key."""
    alice, alice_client = deployment.register("alice", on=SENDER_PROCESS, remember="laptop")
    bob, bob_client = deployment.register("bob", on=RECIPIENT_PROCESS, remember="desk")
    data = random.Random(7).randbytes(2 * PIECE_SIZE + 1_000)
    key, transfer = new_file_key(), new_transfer_id()
    sealed = e2e_body(alice_client.device, "the sealed name, size, hash and key")
    offered = {"type": "file_offer", "transfer": transfer, "to": bob, "e2e": sealed}
    offered["size"] = encrypted_size(len(data))
    assert alice_client.request(offered)["type"] == "ok"
    assert bob_client.find("file_offer") == {**offered, "from": alice}
    bob_client.send({"type": "file_accept", "transfer": transfer})
    alice_client.find("file_accept")
    sender = ChunkCipher(key, transfer, len(data))
    for index in range(sender.pieces):
        piece = data[index * PIECE_SIZE : (index + 1) * PIECE_SIZE]
        alice_client.send_chunk(
            FileChunk(bytes.fromhex(transfer), index, sender.encrypt(index, piece))
        )
    receiver, received = ChunkCipher(key, transfer, len(data)), b""
    for index in range(receiver.pieces):
        chunk = bob_client.recv_chunk()
        assert chunk.index == index
        received += receiver.decrypt(index, chunk.data)
        bob_client.send({"type": "file_ack", "transfer": transfer, "index": index})
    alice_client.send({"type": "file_end", "transfer": transfer})
    bob_client.find("file_end")
    bob_client.send({"type": "file_done", "transfer": transfer, "ok": received == data})
    assert alice_client.find("file_done") == {"type": "file_done", "transfer": transfer, "ok": True}
