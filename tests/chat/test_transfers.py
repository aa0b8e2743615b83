"""File transfer through the real consumer (PROTOCOL.md 3.3): every duty of the server's relay.

Each test drives sessions over the real WebSocket application on the in-memory
layer, speaking the protocol through the tests' one protocol client
(:mod:`tests.protocol_client.inprocess`, on chatproto's ``ClientConnection``); after a
transfer ends, the runtime's relay must hold nothing (``registry_idle()``).
Transfers between two server processes are in ``tests/e2e/test_file_transfer.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.core.cache import cache

from accounts import services as accounts
from accounts.models import User
from chat import presence
from chatproto.framing import FileChunk
from chatproto.limits import MAX_CHUNK_SIZE, TRANSFER_WINDOW
from chatproto.transfer import (
    ChunkData,
    Ended,
    Finished,
    IncomingTransfer,
    IntegrityCheck,
    OutgoingTransfer,
    Send,
    SendChunk,
)
from tests.protocol_client import inprocess
from tests.protocol_client.inprocess import TIMEOUT, InProcessClient, communicator

pytestmark = pytest.mark.django_db(transaction=True)

T = "0123456789abcdef0123456789abcdef"
T2 = "fedcba9876543210fedcba9876543210"
SHA = "ab" * 32
PUSHES = {"users", "presence", "rooms"}  # pushes that may come at any time; not a transfer's


class Peer(InProcessClient):
    """A session that also receives chunk records (all kept, in order, in ``chunks``)."""

    def __init__(self, comm) -> None:
        super().__init__(comm)
        self.taken: list[FileChunk] = []
        self._disconnected = False

    @property
    def chunks(self) -> list[FileChunk]:
        """Every chunk received so far, in order: those taken, then those pending."""
        return self.taken + [item for item in self.pending if isinstance(item, FileChunk)]

    async def next_chunk(self, timeout: float = TIMEOUT) -> FileChunk:
        """The next chunk record; messages read meanwhile stay pending for ``recv``."""
        chunk = await self.recv_chunk(timeout)
        self.taken.append(chunk)
        return chunk

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message that is not a ``users``/``rooms`` push."""
        while True:
            message = await self.recv(timeout)
            if message["type"] not in PUSHES:
                return message

    async def chunk(self, index: int, data: bytes, transfer: str = T) -> None:
        await self.send_chunk(FileChunk(bytes.fromhex(transfer), index, data))

    async def raw_chunk(self, index: int, data: bytes, transfer: str = T) -> None:
        """A chunk record sealed by hand: chatproto's encoder refuses what the protocol forbids."""
        plaintext = b"\x02" + bytes.fromhex(transfer) + struct.pack(">I", index) + data
        await self.send_bytes(self.protocol.seal_raw(plaintext))

    async def close(self) -> None:
        """Disconnect (once: fixtures close what a test has not)."""
        if not self._disconnected:
            self._disconnected = True
            await super().close()

    async def quiet(self) -> bool:
        """Nothing but pushes arrives for a moment (and no chunk)."""
        before = len(self.chunks)
        received = await self.drain()
        return len(self.chunks) == before and all(m["type"] in PUSHES for m in received)


async def logged_in(name: str) -> Peer:
    session = Peer(communicator())
    await session.connect()
    await session.handshake()
    await session.login(name)
    return session


async def settled(*sessions: Peer) -> None:
    """Let the pushes of everyone's logins arrive, and drop them."""
    for session in sessions:
        await session.drain()


def offer(to: str = "bob", size: int = 100, transfer: str = T, **extra: Any) -> dict[str, Any]:
    message = {
        "type": "file_offer",
        "transfer": transfer,
        "to": to,
        "name": "report.pdf",
        "size": size,
        "sha256": SHA,
    }
    message.update(extra)
    return message


def cancel(reason: str, transfer: str = T) -> dict[str, Any]:
    return {"type": "file_cancel", "transfer": transfer, "reason": reason}


def is_error(answer: dict[str, Any], code: str, ref: str | None) -> bool:
    expected = {"type": "error", "code": code}
    if ref is not None:
        expected["ref"] = ref
    if code == "rate_limited":  # revision 1.1: always with retry_after, at least 1 s
        wait = answer.get("retry_after")
        if type(wait) is not int or wait < 1:
            return False
    fields = {k: v for k, v in answer.items() if k not in ("message", "retry_after")}
    return fields == expected and bool(answer["message"])


def bad_requests_counted_for(session: Peer) -> int:
    """The bad requests the server counted for ``session`` (its 10th closes 4008)."""
    (consumer,) = [
        s
        for s in inprocess.RUNTIME.sessions.local_sessions()
        if s.session_id == session.conn.keys.session_id
    ]
    return consumer.conn.bad_requests


def registry_idle() -> bool:
    return inprocess.RUNTIME.transfers.idle


@pytest.fixture
async def alice_bob(create_users):
    """alice and bob logged in, pushes drained; closed afterwards."""
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob = await logged_in("bob")
    await settled(alice, bob)
    yield alice, bob
    for session in (alice, bob):
        await session.close()


async def offered(alice: Peer, bob: Peer, size: int = 100, transfer: str = T) -> None:
    answer = await alice.request({**offer(size=size, transfer=transfer), "id": "o"})
    assert answer == {"type": "ok", "ref": "o"}
    assert (await bob.next())["type"] == "file_offer"


async def accepted(alice: Peer, bob: Peer, size: int = 100, transfer: str = T) -> None:
    await offered(alice, bob, size, transfer)
    await bob.send({"type": "file_accept", "id": "a", "transfer": transfer})  # no answer (1.1)
    assert await alice.next() == {"type": "file_accept", "transfer": transfer, "from": "bob"}


# --- the offer ---------------------------------------------------------------------------------


async def test_offer_is_answered_ok_and_relayed_to_every_session_of_the_recipient(create_users):
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob_laptop = await logged_in("bob")
    bob_phone = await logged_in("bob")
    await settled(alice, bob_laptop, bob_phone)
    answer = await alice.request({**offer(), "id": "o1"})
    assert answer == {"type": "ok", "ref": "o1"}
    relayed = {**offer(), "from": "alice"}
    assert await bob_laptop.next() == relayed
    assert await bob_phone.next() == relayed
    assert await alice.quiet()  # the sender's other sessions and the sender itself get nothing
    for session in (alice, bob_laptop, bob_phone):
        await session.close()
    assert registry_idle()


async def test_steps_get_no_answer_with_or_without_id(alice_bob):
    """Revision 1.1: only file_offer is a request; the relayed steps are not answered."""
    alice, bob = alice_bob
    await accepted(alice, bob, size=3)
    await alice.chunk(0, b"abc")
    await bob.next_chunk()
    await bob.send({"type": "file_ack", "id": "k", "transfer": T, "index": 0})
    assert (await alice.next())["type"] == "file_ack"
    await alice.send({"type": "file_end", "transfer": T})
    assert (await bob.next())["type"] == "file_end"
    await bob.send({"type": "file_done", "id": "d", "transfer": T, "ok": True})
    assert (await alice.next())["type"] == "file_done"
    assert await alice.quiet() and await bob.quiet()
    assert registry_idle()


async def test_offer_without_id_gets_ok_without_ref(alice_bob):
    alice, bob = alice_bob
    await alice.send(offer())
    assert await alice.next() == {"type": "ok"}
    assert (await bob.next())["from"] == "alice"


async def test_greeting_announces_the_file_size_limit_and_larger_offers_are_too_large(
    alice_bob, chat_settings
):
    _alice, _bob = alice_bob
    chat_settings.CHAT_MAX_FILE_SIZE = 1000  # read when the relay's registry is made
    fresh = await logged_in("alice")
    assert fresh.greeting["limits"]["max_file_size"] == 1000
    answer = await fresh.request({**offer(size=1001), "id": "big"})
    assert is_error(answer, "too_large", "big")
    assert await fresh.request({**offer(size=1000), "id": "fits"}) == {"type": "ok", "ref": "fits"}
    await fresh.close()


async def test_the_default_file_size_limit_is_four_gibibytes(alice_bob):
    alice, _bob = alice_bob
    assert alice.greeting["limits"]["max_file_size"] == 4 * 2**30
    answer = await alice.request({**offer(size=4 * 2**30 + 1), "id": "big"})
    assert is_error(answer, "too_large", "big")
    assert registry_idle()


@pytest.mark.parametrize(
    ("to", "code"),
    [
        ("nobody", "unknown_user"),
        ("gone", "unknown_user"),  # an inactive account
        ("carol", "offline"),  # an account without a session
        ("alice", "bad_request"),  # oneself
    ],
    ids=["no such user", "inactive user", "offline user", "oneself"],
)
async def test_refused_offers_are_answered_with_their_code(alice_bob, create_users, to, code):
    alice, bob = alice_bob
    await create_users("carol")
    await create_users("gone", is_active=False)
    answer = await alice.request({**offer(to=to), "id": "o"})
    assert is_error(answer, code, "o")
    assert await bob.quiet()
    assert registry_idle()


async def test_a_transfer_id_in_use_is_bad_request(alice_bob):
    alice, bob = alice_bob
    await offered(alice, bob)
    again = await alice.request({**offer(), "id": "again"})
    assert is_error(again, "bad_request", "again")
    assert await bob.quiet()  # the first offer is untouched and not offered twice


async def test_the_ninth_open_transfer_of_a_user_is_rate_limited(alice_bob):
    alice, _bob = alice_bob
    ids = [f"{n:032x}" for n in range(1, 10)]
    for transfer in ids[:8]:
        assert (await alice.request(offer(transfer=transfer)))["type"] == "ok"
    ninth = await alice.request({**offer(transfer=ids[8]), "id": "ninth"})
    assert is_error(ninth, "rate_limited", "ninth")
    # One ends: there is room for another.
    await alice.send(cancel("cancelled", ids[0]))  # no answer (1.1)
    assert (await alice.request(offer(transfer=ids[8])))["type"] == "ok"


# --- who may answer ------------------------------------------------------------------------------


async def test_messages_from_a_session_not_in_the_transfer_are_unknown_transfer(
    alice_bob, create_users
):
    alice, bob = alice_bob
    await create_users("carol")
    carol = await logged_in("carol")
    await settled(alice, bob, carol)
    await offered(alice, bob)
    for kind in ("file_accept", "file_reject", "file_cancel"):
        answer = await carol.request({"type": kind, "id": "c", "transfer": T})
        assert is_error(answer, "unknown_transfer", "c")
    await bob.send({"type": "file_accept", "transfer": T})
    assert (await alice.next())["type"] == "file_accept"
    answer = await carol.request({"type": "file_ack", "id": "c", "transfer": T, "index": 0})
    assert is_error(answer, "unknown_transfer", "c")
    await carol.chunk(0, b"not yours")  # dropped, and a bad request of carol's session
    assert is_error(await carol.next(), "unknown_transfer", None)
    assert bad_requests_counted_for(carol) == 1
    # The two sessions outside their roles: the recipient sends no chunks, the sender no acks.
    await bob.chunk(0, b"wrong way")
    assert is_error(await bob.next(), "unknown_transfer", None)
    answer = await alice.request({"type": "file_ack", "id": "x", "transfer": T, "index": 0})
    assert is_error(answer, "unknown_transfer", "x")
    # The transfer went on untouched.
    await alice.chunk(0, b"x" * 100)
    assert (await bob.next_chunk()).data == b"x" * 100
    await carol.close()


async def test_accepting_tells_the_sender_and_the_recipients_other_sessions(alice_bob):
    alice, bob = alice_bob
    bob_phone = await logged_in("bob")
    await settled(alice, bob, bob_phone)
    await alice.request(offer())
    assert (await bob.next())["type"] == "file_offer"
    assert (await bob_phone.next())["type"] == "file_offer"
    await bob.send({"type": "file_accept", "id": "a", "transfer": T})
    assert await alice.next() == {"type": "file_accept", "transfer": T, "from": "bob"}
    assert await bob_phone.next() == cancel("answered_elsewhere")
    # The other session is out of the transfer now.
    late = await bob_phone.request({"type": "file_accept", "id": "late", "transfer": T})
    assert is_error(late, "unknown_transfer", "late")
    assert await bob.quiet()
    await bob_phone.close()


async def test_declining_tells_the_sender_and_ends_the_transfer(alice_bob):
    alice, bob = alice_bob
    bob_phone = await logged_in("bob")
    await settled(alice, bob, bob_phone)
    await alice.request(offer())
    await bob_phone.next()
    await offered_to(bob)
    await bob.send({"type": "file_reject", "id": "r", "transfer": T})
    assert await bob.quiet()  # no answer (1.1)
    assert await alice.next() == {"type": "file_reject", "transfer": T, "from": "bob"}
    assert await bob_phone.next() == cancel("answered_elsewhere")
    assert registry_idle()
    await bob_phone.close()


async def offered_to(session: Peer) -> dict[str, Any]:
    message = await session.next()
    assert message["type"] == "file_offer", message
    return message


# --- a whole transfer ----------------------------------------------------------------------------


async def run_transfer(alice: Peer, bob: Peer, data: bytes) -> tuple[bool, str]:
    """Send ``data`` from alice to bob with chatproto's client ends; (kept, bob's SHA-256)."""
    sha256 = hashlib.sha256(data).hexdigest()
    outgoing = OutgoingTransfer(to="bob", name="data.bin", size=len(data), sha256=sha256)
    assert (await alice.request(outgoing.offer("o")))["type"] == "ok"
    incoming = IncomingTransfer.from_offer(await offered_to(bob))
    check = IntegrityCheck(incoming.size, incoming.sha256)
    for event in incoming.accept():
        await bob.send(event.message)
    outgoing.receive(await alice.next())  # file_accept
    sent = 0
    while not outgoing.ready_to_end:
        while size := outgoing.next_chunk_size():
            (event,) = outgoing.chunk(data[sent : sent + size])
            assert isinstance(event, SendChunk)
            await alice.chunk(event.chunk.index, event.chunk.data, outgoing.transfer)
            sent += size
            for event in incoming.receive_chunk(await bob.next_chunk()):
                assert isinstance(event, ChunkData)
                check.update(event.data)
                for reply in incoming.written(event.index):
                    await bob.send(reply.message)
        while outgoing.unacked:
            message = await alice.next()
            if message["type"] == "file_ack":
                outgoing.receive(message)
    for event in outgoing.end():
        await alice.send(event.message)
    verdict = None
    while verdict is None:
        message = await bob.next()
        assert message["type"] != "ok", message  # acks get no answer (1.1)
        (ended,) = incoming.receive(message)
        assert isinstance(ended, Ended) and ended.size_ok
        for event in incoming.finish(check.matches()):
            if isinstance(event, Send):
                await bob.send(event.message)
            else:
                verdict = event
    while True:
        message = await alice.next()
        if message["type"] == "file_done":
            (finished,) = outgoing.receive(message)
            assert isinstance(finished, Finished)
            return finished.ok, check.hexdigest()


async def test_a_file_goes_through_intact_chunk_by_chunk(alice_bob):
    alice, bob = alice_bob
    data = os.urandom(3 * MAX_CHUNK_SIZE + 1234)
    kept, received_sha = await run_transfer(alice, bob, data)
    assert kept and received_sha == hashlib.sha256(data).hexdigest()
    assert [chunk.index for chunk in bob.chunks] == [0, 1, 2, 3]
    assert b"".join(chunk.data for chunk in bob.chunks) == data
    assert registry_idle()


async def test_more_chunks_than_the_window_flow_as_acks_come_back(alice_bob):
    alice, bob = alice_bob
    data = os.urandom((TRANSFER_WINDOW + 4) * 1000)
    # 1000-byte chunks: OutgoingTransfer sends up to 64 KiB, so cut them small by hand.
    kept, received_sha = await run_small_chunks(alice, bob, data, chunk_size=1000)
    assert kept and received_sha == hashlib.sha256(data).hexdigest()
    assert registry_idle()


async def run_small_chunks(
    alice: Peer, bob: Peer, data: bytes, chunk_size: int
) -> tuple[bool, str]:
    """Like a client, but with ``chunk_size`` chunks and the whole window in flight each time."""
    sha256 = hashlib.sha256(data).hexdigest()
    await alice.request(offer(size=len(data), sha256=sha256))
    await offered_to(bob)
    await bob.send({"type": "file_accept", "transfer": T})
    assert (await alice.next())["type"] == "file_accept"
    pieces = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    received = hashlib.sha256()
    acked = 0
    for index, piece in enumerate(pieces):
        if index - acked == TRANSFER_WINDOW:  # the window is full: bob writes, acks, alice hears
            for _ in range(TRANSFER_WINDOW):
                chunk = await bob.next_chunk()
                received.update(chunk.data)
                await bob.send({"type": "file_ack", "transfer": T, "index": chunk.index})
            while acked < index:
                message = await alice.next()
                if message["type"] == "file_ack":
                    assert message["index"] == acked
                    acked += 1
        await alice.chunk(index, piece)
    while len(bob.taken) < len(pieces):
        chunk = await bob.next_chunk()
        received.update(chunk.data)
        await bob.send({"type": "file_ack", "transfer": T, "index": chunk.index})
    await alice.send({"type": "file_end", "transfer": T})
    assert (await bob.next())["type"] == "file_end"  # nothing before it: acks get no answer
    kept = received.hexdigest() == sha256
    await bob.send({"type": "file_done", "transfer": T, "ok": kept})
    while (message := await alice.next())["type"] != "file_done":
        assert message["type"] == "file_ack"
    return message["ok"], received.hexdigest()


async def test_an_empty_file_has_no_chunks(alice_bob):
    alice, bob = alice_bob
    kept, received_sha = await run_transfer(alice, bob, b"")
    assert kept and received_sha == hashlib.sha256(b"").hexdigest()
    assert bob.chunks == []
    assert registry_idle()


# --- endings -------------------------------------------------------------------------------------


async def test_the_sender_cancels_midway(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=1000)
    await alice.chunk(0, b"a" * 100)
    await bob.next_chunk()
    await alice.send({"type": "file_cancel", "id": "c", "transfer": T, "reason": "x"})
    assert await bob.next() == cancel("x")
    assert registry_idle()
    await alice.chunk(1, b"a" * 100)  # a straggler: the transfer is over
    assert is_error(await alice.next(), "unknown_transfer", None)
    assert await bob.quiet()


async def test_the_recipient_cancels_midway(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=1000)
    await alice.chunk(0, b"a" * 100)
    await bob.next_chunk()
    await bob.send({"type": "file_cancel", "id": "c", "transfer": T})
    assert await alice.next() == cancel("cancelled")  # an empty reason is relayed as cancelled
    assert registry_idle()


async def test_an_offer_can_be_withdrawn_before_the_answer(alice_bob):
    alice, bob = alice_bob
    await offered(alice, bob)
    await alice.send(cancel("cancelled"))
    assert await bob.next() == cancel("cancelled")
    assert registry_idle()


@pytest.mark.parametrize("leaving", ["sender", "recipient"])
async def test_the_other_side_is_told_when_a_session_ends_midway(alice_bob, leaving):
    alice, bob = alice_bob
    await accepted(alice, bob, size=1000)
    await alice.chunk(0, b"a" * 100)
    await bob.next_chunk()
    gone, stays = (alice, bob) if leaving == "sender" else (bob, alice)
    await gone.close()
    assert await stays.next() == cancel("disconnected")
    assert registry_idle()


async def test_an_offer_ends_when_the_recipients_last_session_ends(alice_bob):
    alice, bob = alice_bob
    bob_phone = await logged_in("bob")
    await settled(alice, bob, bob_phone)
    await alice.request(offer())
    await offered_to(bob)
    await offered_to(bob_phone)
    await bob_phone.close()  # bob is still online: the offer stays open
    assert await alice.quiet()
    await bob.close()
    assert await alice.next() == cancel("disconnected")
    assert registry_idle()


async def test_an_offer_unanswered_in_time_expires_on_both_sides(alice_bob, chat_settings):
    alice, bob = alice_bob
    chat_settings.CHAT_TRANSFER_OFFER_TIMEOUT = 0.2  # read when the relay's registry is made
    await offered(alice, bob)
    assert await alice.next() == cancel("expired")
    assert await bob.next() == cancel("expired")
    assert registry_idle()
    late = await bob.request({"type": "file_accept", "id": "late", "transfer": T})
    assert is_error(late, "unknown_transfer", "late")


async def test_an_answered_offer_does_not_expire(alice_bob, chat_settings):
    alice, bob = alice_bob
    chat_settings.CHAT_TRANSFER_OFFER_TIMEOUT = 0.2  # read when the relay's registry is made
    await accepted(alice, bob, transfer=T)
    await offered(alice, bob, transfer=T2)  # expires, and wakes the timer after T's deadline
    assert await alice.next() == cancel("expired", T2)
    assert await bob.next() == cancel("expired", T2)
    await alice.chunk(0, b"still running")
    assert (await bob.next_chunk()).data == b"still running"


@pytest.mark.parametrize("ending", ["cancel", "disconnect"])
async def test_chunks_in_flight_when_the_recipient_ends_it_are_dropped_and_not_counted(
    alice_bob, ending
):
    """Alice's full window is on its way when Bob cancels or leaves: those chunks are a race,
    not bad requests (PROTOCOL.md 3.3 counts chunks "from any other session"). Over two
    transfers more than 10 of them arrive, and Alice's session goes on serving her."""
    alice, bob = alice_bob
    recipients = [bob]
    for transfer in (T, T2):
        recipient = recipients[-1]
        await accepted(alice, recipient, size=100_000, transfer=transfer)
        for index in range(3):
            await alice.chunk(index, b"f" * 100, transfer)
            assert (await recipient.next_chunk()).index == index
        if ending == "cancel":
            await recipient.send({"type": "file_cancel", "transfer": transfer})
            assert await alice.next() == cancel("cancelled", transfer)
        else:
            await recipient.close()
            assert await alice.next() == cancel("disconnected", transfer)
            recipients.append(await logged_in("bob"))
            await settled(alice, recipients[-1])
        for index in range(3, 3 + TRANSFER_WINDOW):  # what Alice had sent before she knew
            await alice.chunk(index, b"f" * 100, transfer)
    assert (await alice.request({"type": "ping"}))["type"] == "pong"
    assert await alice.quiet()  # no unknown_transfer for them either: Alice has file_cancel
    assert bad_requests_counted_for(alice) == 0
    assert await recipients[-1].quiet()  # nothing relayed
    assert registry_idle()
    # A chunk for a transfer Alice never sent still counts.
    await alice.chunk(0, b"stray", "00" * 16)
    assert is_error(await alice.next(), "unknown_transfer", None)
    assert bad_requests_counted_for(alice) == 1
    for recipient in recipients[1:]:
        await recipient.close()


# --- the data rules: violations end the transfer on both sides ------------------------------------


async def test_a_chunk_beyond_the_window_ends_the_transfer_unforwarded(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=100_000)
    for index in range(TRANSFER_WINDOW):
        await alice.chunk(index, b"w" * 100)
    for index in range(TRANSFER_WINDOW):
        assert (await bob.next_chunk()).index == index
    await alice.chunk(TRANSFER_WINDOW, b"w" * 100)  # the 17th without an ack
    assert await alice.next() == cancel("window_exceeded")
    assert await bob.next() == cancel("window_exceeded")
    assert [chunk.index for chunk in bob.chunks] == list(range(TRANSFER_WINDOW))
    assert await bob.quiet()
    assert registry_idle()


async def test_an_ack_frees_a_place_in_the_window(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=100_000)
    for index in range(TRANSFER_WINDOW):
        await alice.chunk(index, b"w" * 100)
    await bob.next_chunk()
    await bob.send({"type": "file_ack", "transfer": T, "index": 0})
    assert await alice.next() == {"type": "file_ack", "transfer": T, "index": 0}
    await alice.chunk(TRANSFER_WINDOW, b"w" * 100)
    for index in range(1, TRANSFER_WINDOW + 1):
        assert (await bob.next_chunk()).index == index


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([(1, 10)], "chunk_out_of_order"),  # skips index 0
        ([(0, 10), (0, 10)], "chunk_out_of_order"),  # repeats index 0
        ([(0, 60), (1, 41)], "size_exceeded"),  # 101 bytes of an offered 100
    ],
    ids=["index skipped", "index repeated", "beyond the size"],
)
async def test_chunk_violations_cancel_both_sides(alice_bob, steps, reason):
    alice, bob = alice_bob
    await accepted(alice, bob, size=100)
    for index, size in steps:
        await alice.chunk(index, b"v" * size)
    assert await alice.next() == cancel(reason)
    assert await bob.next() == cancel(reason)
    forwarded = len(steps) - 1
    assert len(bob.chunks) == forwarded  # the offending chunk never reached bob
    assert registry_idle()


async def test_a_chunk_before_the_accept_is_out_of_order(alice_bob):
    alice, bob = alice_bob
    await offered(alice, bob)
    await alice.chunk(0, b"too early")
    assert await alice.next() == cancel("chunk_out_of_order")
    assert await bob.next() == cancel("chunk_out_of_order")
    assert bob.chunks == []
    assert registry_idle()


async def test_an_oversized_chunk_is_chunk_too_large(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=10 * MAX_CHUNK_SIZE)
    await alice.raw_chunk(0, b"L" * (MAX_CHUNK_SIZE + 1))
    assert await alice.next() == cancel("chunk_too_large")
    assert await bob.next() == cancel("chunk_too_large")
    assert bob.chunks == []
    assert registry_idle()


async def test_file_end_before_every_byte_is_size_exceeded(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=100)
    await alice.chunk(0, b"e" * 99)
    await bob.next_chunk()
    await alice.send({"type": "file_end", "id": "e", "transfer": T})
    assert await alice.next() == cancel("size_exceeded")  # and no other answer (1.1)
    assert await bob.next() == cancel("size_exceeded")
    assert registry_idle()


async def test_an_ack_out_of_order_is_chunk_out_of_order(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=100)
    await alice.chunk(0, b"a" * 10)
    await alice.chunk(1, b"a" * 10)
    await bob.next_chunk()
    await bob.send({"type": "file_ack", "id": "k", "transfer": T, "index": 1})
    assert await bob.next() == cancel("chunk_out_of_order")  # and no other answer (1.1)
    assert await alice.next() == cancel("chunk_out_of_order")
    assert registry_idle()


@pytest.mark.parametrize("step", ["file_done before file_end", "a second file_accept"])
async def test_a_step_out_of_turn_ends_the_transfer_with_file_cancel(alice_bob, step):
    """Revision 1.1: the order of the steps is a rule; breaking it ends the transfer."""
    alice, bob = alice_bob
    await offered(alice, bob)
    if step == "a second file_accept":
        await bob.send({"type": "file_accept", "transfer": T})
        assert (await alice.next())["type"] == "file_accept"
        await bob.send({"type": "file_accept", "id": "a2", "transfer": T})
    else:
        await bob.send({"type": "file_done", "id": "d", "transfer": T, "ok": True})
    assert await bob.next() == cancel("chunk_out_of_order")
    assert await alice.next() == cancel("chunk_out_of_order")
    assert registry_idle()


# --- the channel layer between processes ---------------------------------------------------------


def test_a_chunk_crosses_the_redis_layer_as_raw_bytes_well_within_its_limits():
    """What a cross-process chunk costs in Redis (serialising needs no Redis server)."""
    layer = RedisChannelLayer(
        hosts=["redis://127.0.0.1:6379/0"], symmetric_encryption_keys=["k" * 32]
    )
    event = {
        "type": "chat.transfer",
        "op": "chunk",
        "transfer": bytes.fromhex(T),
        "index": 7,
        "data": os.urandom(MAX_CHUNK_SIZE),
    }
    packed = layer.serialize(event)
    assert layer.deserialize(packed) == event
    # msgpack keeps bytes as bytes; Fernet's base64 adds a third; Redis takes 512 MiB.
    assert len(packed) < MAX_CHUNK_SIZE * 4 // 3 + 1024


async def test_deactivating_the_recipient_midway_tells_the_sender(alice_bob, run_sync):
    alice, bob = alice_bob
    await accepted(alice, bob, size=1000)
    bob_user = await run_sync(User.objects.get, username="bob")
    await run_sync(accounts.set_active, bob_user, False)
    assert await bob.find("session_ended") == {"type": "session_ended", "reason": "deactivated"}
    assert await bob.expect_close() == 4003
    await bob.close()
    assert await alice.next() == cancel("disconnected")
    assert registry_idle()


# --- peers in a server process that died ---------------------------------------------------------

GHOST_PROCESS = "deadbeefdeadbeef"  # another server process, as presence sees it


async def ghost_session(run_sync, user: str, channel: str) -> None:
    """``user`` has a session ``channel`` on another process, which is alive for now."""
    await run_sync(presence.session_started, user, channel, GHOST_PROCESS)


def ghost_process_dies() -> None:
    cache.delete(presence.process_key(GHOST_PROCESS))  # its heartbeat is gone


def ghost_process_beats() -> None:
    presence.heartbeat(GHOST_PROCESS)


async def checked_twice() -> None:
    """Two checks, as a heartbeat apart: what it takes to judge a peer gone."""
    await inprocess.RUNTIME.transfers.check_peers()
    await inprocess.RUNTIME.transfers.check_peers()


def channel_of(username: str) -> str:
    channel = inprocess.RUNTIME.transfers.session_of(username)
    assert channel is not None, f"{username} has no session here"
    return channel


async def test_a_transfer_ends_when_the_recipients_process_dies(create_users, run_sync):
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    await ghost_session(run_sync, "bob", "ghost-bob")
    await alice.drain()
    await alice.request(offer())
    # bob accepts in the other process, which forwards his answer to the owner.
    forwarded = {
        "type": "chat.transfer",
        "op": "request",
        "request": {"type": "file_accept", "transfer": T},
        "session": "ghost-bob",
        "user": "bob",
    }
    await get_channel_layer().send(channel_of("alice"), forwarded)
    assert await alice.next() == {"type": "file_accept", "transfer": T, "from": "bob"}
    await checked_twice()
    assert await alice.quiet()  # bob's process lives: nothing happens
    ghost_process_dies()
    await inprocess.RUNTIME.transfers.check_peers()
    assert await alice.quiet()  # one late heartbeat is not a death
    ghost_process_beats()
    await inprocess.RUNTIME.transfers.check_peers()
    ghost_process_dies()
    await inprocess.RUNTIME.transfers.check_peers()
    assert await alice.quiet()  # the late heartbeat came: the count starts again
    await inprocess.RUNTIME.transfers.check_peers()
    assert await alice.next() == cancel("disconnected")
    assert registry_idle()
    await alice.close()


async def test_an_offer_ends_when_the_recipient_is_left_only_in_a_dead_process(
    create_users, run_sync
):
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    await ghost_session(run_sync, "bob", "ghost-bob")
    await alice.drain()
    assert (await alice.request(offer()))["type"] == "ok"  # bob is online, elsewhere
    ghost_process_dies()
    await checked_twice()
    assert await alice.next() == cancel("disconnected")
    assert registry_idle()
    await alice.close()


async def test_a_recipient_is_told_when_the_senders_process_dies(create_users, run_sync):
    await create_users("bob", "carol")
    bob = await logged_in("bob")
    await ghost_session(run_sync, "carol", "ghost-carol")
    await bob.drain()
    relayed = {**offer(), "from": "carol"}
    event = {
        "type": "chat.transfer",
        "op": "message",
        "message": relayed,
        "final": False,
        "owner": "ghost-carol",  # the offer lives in carol's process
    }
    await get_channel_layer().send(channel_of("bob"), event)
    assert await bob.next() == relayed
    await checked_twice()
    assert await bob.quiet()
    ghost_process_dies()
    await checked_twice()
    assert await bob.next() == cancel("disconnected")
    late = await bob.request({"type": "file_accept", "id": "late", "transfer": T})
    assert is_error(late, "unknown_transfer", "late")
    await bob.close()


async def test_sessions_of_this_process_are_never_judged_by_presence(alice_bob):
    """A late heartbeat of our own process must not cancel a healthy transfer."""
    alice, bob = alice_bob
    await accepted(alice, bob, transfer=T)
    await offered(alice, bob, transfer=T2)
    cache.clear()  # presence forgets everyone
    await checked_twice()
    assert await alice.quiet() and await bob.quiet()
    await alice.chunk(0, b"still here")
    assert (await bob.next_chunk()).data == b"still here"


# --- the same-process path: both sessions in this process -----------------------------------------


def consumer_of(session: Peer):
    """The server's consumer of ``session`` (in this process's runtime)."""
    (consumer,) = [
        s
        for s in inprocess.RUNTIME.sessions.local_sessions()
        if s.session_id == session.conn.keys.session_id
    ]
    return consumer


async def items(session: Peer, count: int) -> list[Any]:
    """The next ``count`` chunks and messages (pushes aside), in the order they arrived."""
    arrived: list[Any] = []
    while len(arrived) < count:
        item = await session.recv_item()
        if isinstance(item, FileChunk):
            arrived.append(item.index)
        elif item["type"] not in PUSHES:
            arrived.append(item)
    return arrived


async def handled(session: Peer) -> None:
    """Everything ``session`` sent before this has been handled by its server consumer."""
    assert (await session.request({"type": "ping"}))["type"] == "pong"


async def test_chunks_between_sessions_of_one_process_never_cross_the_channel_layer(
    alice_bob, monkeypatch
):
    from chat import delivery

    through_layer: list[dict[str, Any]] = []
    for name in ("to_channel", "to_user"):
        send = getattr(delivery, name)

        async def spy(target, event, send=send):
            if event.get("type") == "chat.transfer":
                through_layer.append(event)
            await send(target, event)

        monkeypatch.setattr(delivery, name, spy)
    alice, bob = alice_bob
    data = os.urandom(2 * MAX_CHUNK_SIZE + 7)
    kept, received_sha = await run_transfer(alice, bob, data)
    assert kept and received_sha == hashlib.sha256(data).hexdigest()
    # Only what is user-wide goes to the layer too, for bob's sessions in other processes:
    # the offer, and the accept's answered_elsewhere to his other sessions.
    assert [(e["op"], e["message"]["type"], e["exclude"]) for e in through_layer] == [
        ("message", "file_offer", None),
        ("message", "file_cancel", consumer_of(bob).channel_name),
    ]
    assert registry_idle()


async def test_a_user_wide_send_reaches_each_local_session_once(create_users):
    """The offer reaches bob's sessions here directly; they skip the layer's copy."""
    await create_users("alice", "bob")
    alice = await logged_in("alice")
    bob_laptop, bob_phone = await logged_in("bob"), await logged_in("bob")
    await settled(alice, bob_laptop, bob_phone)
    await alice.request(offer())
    for session in (bob_laptop, bob_phone):
        assert (await session.next())["type"] == "file_offer"
        assert await session.quiet()
    await alice.send(cancel("cancelled"))
    for session in (bob_laptop, bob_phone):
        assert await session.next() == cancel("cancelled")
        assert await session.quiet()
    for session in (alice, bob_laptop, bob_phone):
        await session.close()
    assert registry_idle()


async def test_a_busy_recipient_gets_chunks_and_file_end_in_the_order_decided(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=300)
    bobs = consumer_of(bob)
    async with bobs.outbox.lock:  # bob's session is busy: what is decided for it waits
        for index in range(3):
            await alice.chunk(index, b"x" * 100)
        await alice.send({"type": "file_end", "transfer": T})
        await handled(alice)
        assert len(bobs.transfers.inbox) == 4
        assert await bob.nothing(0.1)
    assert await items(bob, 4) == [0, 1, 2, {"type": "file_end", "transfer": T}]
    assert bobs.transfers.inbox == []


async def test_a_cancel_decided_after_waiting_chunks_comes_after_them(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=1000)
    async with consumer_of(bob).outbox.lock:
        await alice.chunk(0, b"x" * 100)
        await alice.chunk(1, b"x" * 100)
        await alice.chunk(5, b"x" * 100)  # out of order: the transfer ends on both sides
        await handled(alice)
    assert await items(bob, 3) == [0, 1, cancel("chunk_out_of_order")]
    assert await alice.next() == cancel("chunk_out_of_order")
    assert await bob.quiet()
    assert registry_idle()


async def test_the_recipients_own_step_is_answered_after_what_waited_for_it(alice_bob):
    """Bob's step out of turn ends the transfer; his copy of the cancel (decided while he
    is the session at hand) still comes after the chunks decided for him before it."""
    alice, bob = alice_bob
    await accepted(alice, bob, size=1000)
    async with consumer_of(bob).outbox.lock:
        await bob.send({"type": "file_done", "transfer": T, "ok": True})  # before file_end
        await asyncio.sleep(0.05)  # bob's consumer waits for the lock first, with his step
        await alice.chunk(0, b"x" * 100)
        await alice.chunk(1, b"x" * 100)
        await handled(alice)
    assert await items(bob, 3) == [0, 1, cancel("chunk_out_of_order")]
    assert await alice.next() == cancel("chunk_out_of_order")
    assert registry_idle()


async def test_transfers_in_opposite_directions_run_at_once(alice_bob):
    """Each session relays to the other while the other relays to it: no deadlock, no loss."""
    alice, bob = alice_bob
    await accepted(alice, bob, size=100_000, transfer=T)
    await bob.request({**offer(to="alice", size=100_000, transfer=T2), "id": "o2"})
    assert (await alice.next())["type"] == "file_offer"
    await alice.send({"type": "file_accept", "transfer": T2})
    assert (await bob.next())["type"] == "file_accept"
    for _ in range(3):  # three windows each way, chunks and acks crossing
        for index in range(TRANSFER_WINDOW):
            await alice.chunk(len(bob.chunks) + index, b"a" * 1000, T)
            await bob.chunk(len(alice.chunks) + index, b"b" * 1000, T2)
        for receiver, transfer in ((bob, T), (alice, T2)):
            for _ in range(TRANSFER_WINDOW):
                chunk = await receiver.next_chunk()
                assert chunk.transfer_hex == transfer
                ack = {"type": "file_ack", "transfer": transfer, "index": chunk.index}
                await receiver.send(ack)
        for sender, transfer in ((alice, T), (bob, T2)):
            for _ in range(TRANSFER_WINDOW):
                assert (await sender.next())["transfer"] == transfer  # its file_ack
    assert [c.index for c in bob.chunks] == list(range(3 * TRANSFER_WINDOW))
    assert [c.index for c in alice.chunks] == list(range(3 * TRANSFER_WINDOW))


async def test_a_recipient_that_ends_with_chunks_waiting_for_it_ends_the_transfer(alice_bob):
    alice, bob = alice_bob
    await accepted(alice, bob, size=1000)
    bobs = consumer_of(bob)
    async with bobs.outbox.lock:
        await alice.chunk(0, b"x" * 100)
        await alice.chunk(1, b"x" * 100)
        await handled(alice)
        await bob.close()  # its end does not wait for the lock
        assert await alice.next() == cancel("disconnected")
        assert bobs.transfers.inbox == []
    assert registry_idle()
    await alice.chunk(2, b"x" * 100)  # in flight when she heard: dropped, not counted
    await handled(alice)
    assert await alice.quiet() and bad_requests_counted_for(alice) == 0
