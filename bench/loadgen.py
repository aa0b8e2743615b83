"""The load generator: protocol clients in worker processes, driven over a pipe.

Two client flavours share one session class:

- ``plain``: JSON text messages, the baselines without encryption;
- ``secure``: the product's protocol through the tests' protocol client
  (:class:`tests.protocol_client.core.ClientProtocol`, around chatproto's
  ``ClientConnection``: hello, key, greeting as key confirmation, login); after
  the greeting every record is opened with its ``fast_opener`` (MAC checked,
  then decrypted) and parsed with ``json.loads``, skipping the client's strict
  I-JSON checks so that the load generator costs as little as a correct client can.

Each worker process runs one asyncio loop and serves commands from the bench
(``connect``, ``fanout``, ``send``, ``hold``, ``churn``, ``ping``, file transfer ...).
Every command that measures a time window also reports the worker's own CPU
over that window: a worker near 100% of a core means the figure is bounded by
the load generator, and the report says so.

Time is ``time.monotonic()`` everywhere: on Linux it is one clock for every
process on the machine, so a receiver in one process can subtract the send
time written by a sender in another.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import hashlib
import itertools
import json
import multiprocessing
import os
import struct
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection as WsConnection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chatproto.connection import ClientConnection
from chatproto.e2e_files import NOT_VERIFIED
from chatproto.framing import KIND_CHUNK, KIND_JSON
from chatproto.limits import MAX_RECORD_SIZE, TRANSFER_WINDOW
from chatproto.records import RecordOpener
from tests.protocol_client.core import ClientProtocol, ProtocolViolation

OPEN_TIMEOUT = 60.0  # a server busy with thousands of handshakes answers slowly
REPLY_TIMEOUT = 60.0
BUSY_CORE = 0.9  # a worker above this share of one core is the bottleneck
MAX_SETTLE = 20.0  # seconds a backlogged server gets to deliver a run's last messages
STALL_S = 2.0  # a saturating sender waits this long for an echo before sending anyway
_CHUNK_HEADER = struct.Struct(">B16sI")


# --- targets and sessions ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where and how to connect: one server endpoint and its protocol flavour."""

    url: str  # ws://127.0.0.1:PORT/ws/chat/
    origin: str  # http://127.0.0.1:PORT, the server's own origin
    secure: bool  # the product's handshake and records, or plain JSON text
    login: bool = True  # send login first (plain baselines take any name; bare connections do not)


class SessionError(RuntimeError):
    """A session could not be set up (refused, closed, login failed)."""


class Session:
    """One WebSocket session of either flavour, with a reader task.

    Messages answering a pending request (by ``ref``) resolve its future;
    everything else goes to ``on_message`` (dicts) or ``on_chunk`` (secure
    file chunks, as ``(transfer, index, data)``).
    """

    def __init__(self, ws: WsConnection, conn: ClientConnection | None) -> None:
        self.ws = ws
        self.conn = conn
        self.opener: RecordOpener | None = None
        self.on_message: Callable[[dict[str, Any]], None] = _ignore
        self.on_chunk: Callable[[bytes, int, bytes], None] = _ignore_chunk
        self.username = ""
        self.device = self.token = ""  # after a login with remember (PROTOCOL.md 3.4)
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    # encoding
    def encode(self, message: dict[str, Any]) -> str | bytes:
        if self.conn is None:
            return json.dumps(message, separators=(",", ":"))
        return self.conn.send(message)

    def decode(self, data: str | bytes) -> dict[str, Any] | tuple[bytes, int, bytes]:
        if self.opener is None:
            return json.loads(data)
        plaintext = self.opener.open(data)  # type: ignore[arg-type]  # records are binary frames
        if plaintext[0] == KIND_JSON:
            return json.loads(plaintext[1:])
        if plaintext[0] == KIND_CHUNK:
            _, transfer, index = _CHUNK_HEADER.unpack_from(plaintext)
            return (transfer, index, plaintext[_CHUNK_HEADER.size :])
        raise SessionError("unknown plaintext kind from server")

    # I/O
    def start_reader(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        reason = "closed"
        try:
            async for data in self.ws:
                item = self.decode(data)
                if type(item) is dict:
                    ref = item.get("ref")
                    if ref is not None and ref in self._waiters:
                        future = self._waiters.pop(ref)
                        if not future.done():
                            future.set_result(item)
                        continue
                    self.on_message(item)
                else:
                    self.on_chunk(*item)  # type: ignore[misc]  # the queue holds (transfer, index, data) for chunks
        except ConnectionClosed as exc:
            reason = f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"
        except Exception as exc:  # a broken record or message: report, do not hang
            reason = f"{type(exc).__name__}: {exc}"
            await self.ws.close()
        finally:
            if self.ws.close_code is not None:
                reason = f"{reason} (code {self.ws.close_code})"
            for future in self._waiters.values():
                if not future.done():
                    future.set_exception(SessionError(reason))
            self._waiters.clear()
            if not self.closed.done():
                self.closed.set_result(reason)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(self.encode(message))

    async def request(self, message: dict[str, Any], timeout: float = REPLY_TIMEOUT) -> dict:
        """Send with a fresh ``id`` and wait for the direct answer (matched by ``ref``)."""
        ref = f"r{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[ref] = future
        await self.send({**message, "id": ref})
        return await asyncio.wait_for(future, timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


def _ignore(message: dict[str, Any]) -> None:
    pass


def _ignore_chunk(transfer: bytes, index: int, data: bytes) -> None:
    pass


async def _ws_connect(target: Target, local_addr: str | None) -> WsConnection:
    kwargs: dict[str, Any] = {}
    if local_addr:
        kwargs["local_addr"] = (local_addr, 0)
    return await connect(
        target.url,
        origin=target.origin,  # type: ignore[arg-type]  # websockets types Origin as a NewType of str
        compression=None,
        proxy=None,
        open_timeout=OPEN_TIMEOUT,
        ping_interval=None,  # idle cost is the server's pings; clients stay quiet
        close_timeout=5,
        max_size=MAX_RECORD_SIZE,
        max_queue=256,
        **kwargs,
    )


def login_request(
    username: str, secret: str, *, resume: bool = False, remember: str | None = None
) -> dict[str, Any]:
    """The request that logs a bench session in (PROTOCOL.md 3.4), without its ``id``.

    ``resume``: ``secret`` is a remembered device's token and the request is a ``resume``
    (no password hash on the server); otherwise a ``login`` with ``secret`` as the password,
    asking the server to remember a device named ``remember`` if given (its ``login_ok``
    then carries ``device`` and ``token``: :func:`remembered`)."""
    if resume:
        if remember is not None:
            raise ValueError("a resume remembers nothing new: give remember only to a login")
        return {"type": "resume", "username": username, "token": secret}
    message: dict[str, Any] = {"type": "login", "username": username, "password": secret}
    if remember is not None:
        message["remember"] = remember
    return message


def remembered(answer: dict[str, Any]) -> tuple[str, str]:
    """``(device, token)`` of a ``login_ok`` to a login with ``remember``."""
    device, token = answer.get("device"), answer.get("token")
    if answer.get("type") != "login_ok" or not isinstance(token, str) or not token:
        raise SessionError(
            f"no device token in the answer ({answer.get('type')}): does the server serve "
            "PROTOCOL.md 3.4 (login with remember)?"
        )
    return str(device), token


async def open_session(
    target: Target,
    username: str = "",
    password: str = "",
    *,
    local_addr: str | None = None,
    stop_after_greeting: bool = False,
    on_message: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
    remember: str | None = None,
) -> Session:
    """Connect; for ``secure``, run the handshake (trusting the server key, as a
    benchmark may) and log in. Returns a session whose reader is running; ``on_message``,
    if given, is in place before the login, so it sees what follows ``login_ok`` at once.

    ``resume``: ``password`` is a device token and the session logs in with ``resume``;
    ``remember``: the login asks for a device token, kept in ``session.token``
    (:func:`login_request`)."""
    ws = await _ws_connect(target, local_addr)
    try:
        if not target.secure:
            session = Session(ws, None)
            session.username = username
            session.start_reader()
            if target.login:  # the plain baselines take any name: it labels the echo
                await session.request({"type": "login", "username": username, "password": ""})
            return session
        protocol = ClientProtocol(expected_fingerprint=None)  # a benchmark trusts the key
        try:
            hello = await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT)
            await ws.send(protocol.receive_hello(hello))  # type: ignore[arg-type]  # after the hello, the server sends text
            first = await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT)
            protocol.receive_greeting(first)  # type: ignore[arg-type]  # the greeting is a binary record
        except ProtocolViolation as exc:
            raise SessionError(str(exc)) from None
        session = Session(ws, protocol.conn)
        session.opener = protocol.fast_opener()
        session.username = username
        if on_message is not None:
            session.on_message = on_message
        session.start_reader()
        if stop_after_greeting or not target.login:
            return session
        answer = await session.request(
            login_request(username, password, resume=resume, remember=remember)
        )
        if answer.get("type") != "login_ok":
            how = "resume" if resume else "login"
            raise SessionError(
                f"{how} as {username!r}: {answer.get('type')} "
                f"{answer.get('reason') or answer.get('code') or ''}".rstrip()
            )
        if remember is not None:
            session.device, session.token = remembered(answer)
        return session
    except BaseException:
        with contextlib.suppress(Exception):
            await ws.close()
        raise


# --- file transfers: what differs between 3.3 and 4.12 ---------------------------------------


@dataclass(frozen=True)
class Incoming:
    """What a receiver expects of an offered file, and how it reads chunk ``i`` into the
    file's own bytes (raising if the chunk fails its checks)."""

    size: int
    sha256: str
    read: Callable[[int, bytes], bytes]


# An offer: (transfer, file size, file SHA-256) -> the offer's fields after ``type``,
# ``transfer`` and ``to``, and what turns piece ``i`` into chunk ``i``.
Offer = Callable[[bytes, int, str], tuple[dict[str, Any], Callable[[int, bytes], bytes]]]


def _as_is(index: int, data: bytes) -> bytes:
    return data


def plain_offer(transfer: bytes, size: int, sha256: str) -> tuple[dict[str, Any], Any]:
    """A 3.3 offer: name, size and hash in the clear; the chunks are the file's bytes."""
    return {"name": "bench.bin", "size": size, "sha256": sha256}, _as_is


def plain_incoming(offer: dict[str, Any]) -> Incoming:
    """A 3.3 offer read as it came."""
    return Incoming(size=offer["size"], sha256=offer["sha256"], read=_as_is)


# --- fan-out traffic -----------------------------------------------------------------------


def make_text(run: int, seq: int, size: int) -> str:
    """``"run:seq monotonic "`` padded to ``size`` characters: the receiver's latency clock."""
    head = f"{run}:{seq} {time.monotonic():.6f} "
    return head + "x" * max(1, size - len(head))


@dataclass
class FanoutCounter:
    """Deliveries seen by every receiver of one worker, for the current run."""

    run: int = -1
    t_start: float = 0.0
    t_end: float = 0.0
    record_latency: bool = False
    in_window: int = 0
    of_run: int = 0
    other: int = 0
    latencies: array.array = field(default_factory=lambda: array.array("d"))
    last_seen: float = 0.0

    def on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        now = self.last_seen = time.monotonic()
        head, sent, _ = message["text"].split(" ", 2)
        if int(head.partition(":")[0]) != self.run:
            self.other += 1
            return
        self.of_run += 1
        if self.t_start <= now < self.t_end:
            self.in_window += 1
            if self.record_latency:
                self.latencies.append(now - float(sent))


class CpuWindow:
    """This process's CPU seconds between two instants of the loop's clock."""

    def __init__(self) -> None:
        self.start = self.end = 0.0

    async def measure(self, t_start: float, t_end: float) -> None:
        await sleep_until(t_start)
        self.start = time.process_time()
        await sleep_until(t_end)
        self.end = time.process_time()

    def result(self, wall: float) -> dict[str, float]:
        cpu = self.end - self.start
        return {"cpu_s": cpu, "util": cpu / wall if wall > 0 else 0.0}


async def sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# --- the worker ----------------------------------------------------------------------------


class Worker:
    """The state of one load-generator process: its sessions and the current counters."""

    _file_writer: asyncio.Task[None] | None = None  # the receiver's answers to one transfer
    _file_done: asyncio.Future[dict[str, Any]]

    def __init__(self, index: int) -> None:
        self.index = index
        self.sessions: list[Session] = []
        self.counter = FanoutCounter()
        self.sender: Session | None = None

    # -- sessions
    async def cmd_connect(
        self,
        target: Target,
        accounts: Sequence[tuple[str, str]],
        count: int,
        concurrency: int = 32,
        local_addrs: Sequence[str] = (),
        role: str = "receiver",
        attempts: int = 3,
        deadline: float | None = None,
        resume: bool = False,
    ) -> dict[str, Any]:
        """Open ``count`` sessions, cycling over ``accounts`` and source addresses; a session
        that fails is tried again (``attempts`` in all) and counted in ``retried``. No new
        attempt starts after ``deadline`` (monotonic): those are counted in ``skipped``.
        ``resume``: the accounts hold device tokens (PROTOCOL.md 3.4)."""
        semaphore = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        retried = [0]
        skipped = [0]
        opened: list[Session] = []
        started = time.monotonic()

        async def one(i: int) -> None:
            user, password = accounts[i % len(accounts)] if accounts else ("", "")
            addr = local_addrs[i % len(local_addrs)] if local_addrs else None
            for attempt in range(attempts):
                async with semaphore:
                    if deadline is not None and time.monotonic() > deadline:
                        skipped[0] += 1
                        return
                    try:
                        session = await open_session(
                            target, user, password, local_addr=addr, resume=resume
                        )
                        break
                    except Exception as exc:
                        failure = _describe(exc)
                await asyncio.sleep(0.5 * (attempt + 1))  # a busy server: come back later
            else:
                errors.append(failure)
                return
            retried[0] += attempt
            if role == "receiver":
                session.on_message = self.counter.on_message
            opened.append(session)

        await asyncio.gather(*(one(i) for i in range(count)))
        if role == "sender" and opened:
            self.sender = opened[0]
        self.sessions.extend(opened)
        return {
            "opened": len(opened),
            "failed": len(errors),
            "retried": retried[0],
            "skipped": skipped[0],
            "errors": sorted(set(errors))[:5],
            "seconds": time.monotonic() - started,
        }

    async def cmd_close_all(self) -> dict[str, Any]:
        sessions, self.sessions, self.sender = self.sessions, [], None
        for chunk in _chunks(sessions, 256):
            await asyncio.gather(*(s.close() for s in chunk))
        return {"closed": len(sessions)}

    async def cmd_status(self) -> dict[str, Any]:
        closed = [s.closed.result() for s in self.sessions if s.closed.done()]
        return {"sessions": len(self.sessions), "closed": len(closed), "reasons": closed[:5]}

    # -- fan-out
    async def cmd_fanout(
        self,
        run: int,
        t_start: float,
        t_end: float,
        settle: float,
        record_latency: bool,
        max_samples: int = 200_000,
    ) -> dict[str, Any]:
        """Count deliveries of run ``run`` in [t_start, t_end) on every receiver here."""
        self.counter = counter = FanoutCounter(
            run=run, t_start=t_start, t_end=t_end, record_latency=record_latency
        )
        for session in self.sessions:
            if session is not self.sender:
                session.on_message = counter.on_message
        cpu = CpuWindow()
        await cpu.measure(t_start, t_end)
        # Late deliveries still count as delivered, not lost: wait until none has come for
        # ``settle`` seconds (a server with a backlog drains it), up to MAX_SETTLE.
        last, quiet_since, give_up = -1, time.monotonic(), time.monotonic() + MAX_SETTLE
        while time.monotonic() < give_up:
            if counter.of_run != last:
                last, quiet_since = counter.of_run, time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                break
            await asyncio.sleep(0.1)
        latencies = sorted(counter.latencies)
        if len(latencies) > max_samples:  # keep the shape, bound the pipe
            step = len(latencies) / max_samples
            latencies = [latencies[int(i * step)] for i in range(max_samples)]
        return {
            "in_window": counter.in_window,
            "of_run": counter.of_run,
            "stale": counter.other,
            "latencies": latencies,
            "receivers": sum(1 for s in self.sessions if s is not self.sender),
            "cpu": cpu.result(t_end - t_start),
        }

    async def cmd_drain(self, quiet_s: float, max_s: float) -> dict[str, Any]:
        """Wait until no room message has reached this process's receivers for ``quiet_s``
        (a backlogged server finishing an earlier run), at most ``max_s``; report the wait."""
        began = time.monotonic()
        counter = self.counter
        counter.last_seen = max(counter.last_seen, began)
        while time.monotonic() - began < max_s:
            if time.monotonic() - counter.last_seen >= quiet_s:
                break
            await asyncio.sleep(0.1)
        return {"waited_s": time.monotonic() - began, "stale": counter.other}

    async def cmd_send(
        self,
        run: int,
        room: str,
        t_begin: float,
        t_start: float,
        t_end: float,
        size: int,
        rate: float | None = None,
        window: int = 16,
    ) -> dict[str, Any]:
        """Send ``send`` requests from t_begin to t_end: at ``rate`` per second, or as fast
        as the server echoes them back to this session (``window`` in flight)."""
        session = self.sender
        if session is None:
            raise SessionError("no sender session: connect one with role='sender' first")
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(window)
        state = {"sent": 0, "echoed": 0, "errors": 0, "acks": 0, "stalls": 0}
        error_codes: dict[str, int] = {}
        echo_latency = array.array("d")

        def on_message(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "message" and message.get("from") == session.username:
                head, sent, _ = message["text"].split(" ", 2)
                if int(head.partition(":")[0]) == run:
                    state["echoed"] += 1
                    echo_latency.append(time.monotonic() - float(sent))
                    if rate is None:
                        slots.release()
            elif kind == "ack":
                state["acks"] += 1
            elif kind == "error":
                state["errors"] += 1
                code = str(message.get("code"))
                error_codes[code] = error_codes.get(code, 0) + 1
                if rate is None:
                    slots.release()

        session.on_message = on_message
        cpu = CpuWindow()
        cpu_task = loop.create_task(cpu.measure(t_start, t_end))
        await sleep_until(t_begin)
        seq = 0
        next_at = time.monotonic()
        while time.monotonic() < t_end and not session.closed.done():
            if rate is None:
                remaining = t_end - time.monotonic()
                try:
                    await asyncio.wait_for(slots.acquire(), max(0.01, min(STALL_S, remaining)))
                except TimeoutError:
                    if remaining <= STALL_S:
                        break
                    state["stalls"] += 1  # an echo that never came: go on without it
            else:
                next_at += 1.0 / rate
                await sleep_until(next_at)
            # no id: the ack is not awaited, only counted; the echo paces the sender
            text = make_text(run, seq, size)
            await session.ws.send(session.encode({"type": "send", "room": room, "text": text}))
            seq += 1
            state["sent"] = seq
            if "rate_limited" in error_codes:
                break
        await cpu_task
        await asyncio.sleep(0.5)
        return {
            **state,
            "error_codes": error_codes,
            "closed": session.closed.result() if session.closed.done() else None,
            "echo_latency_s": sorted(echo_latency)[len(echo_latency) // 2]
            if echo_latency
            else None,
            "cpu": cpu.result(t_end - t_start),
        }

    # -- idle sessions
    async def cmd_hold(self, t_start: float, t_end: float) -> dict[str, Any]:
        """Keep the sessions open and quiet; report messages received and this CPU."""
        counts = {"messages": 0}

        def on_message(message: dict[str, Any]) -> None:
            counts["messages"] += 1

        for session in self.sessions:
            session.on_message = on_message
        cpu = CpuWindow()
        await cpu.measure(t_start, t_end)
        alive = sum(1 for s in self.sessions if not s.closed.done())
        reasons = sorted({s.closed.result() for s in self.sessions if s.closed.done()})
        return {
            **counts,
            "alive": alive,
            "closed_reasons": reasons[:5],
            "cpu": cpu.result(t_end - t_start),
        }

    # -- login storm
    async def cmd_storm(
        self,
        targets: Sequence[Target],
        accounts: Sequence[tuple[str, str]],
        first: int,
        t_start: float,
        concurrency: int,
        local_addrs: Sequence[str] = (),
        attempts: int = 3,
        deadline: float | None = None,
        resume: bool = False,
    ) -> dict[str, Any]:
        """Log in every account once (``concurrency`` logins in flight) and keep the sessions.
        ``resume``: the accounts hold device tokens, and sessions log in with ``resume``.

        Account ``k`` is the storm's session ``first + k``, which goes to
        ``targets[(first + k) % len(targets)]``. Each session counts what it receives in
        small per-slot arrays (no message is kept): ``users`` snapshots, ``presence``
        messages and the usernames they list. Returns the instant each login completed and
        how long it took; the counts come from :meth:`cmd_storm_hold`.
        """
        count = len(accounts)
        self.storm_users = users = array.array("I", [0]) * count
        self.storm_presence = presence = array.array("I", [0]) * count
        self.storm_names = names = array.array("I", [0]) * count
        self.storm_interval = 0
        self.storm_slots = slots = array.array("I")
        done = array.array("d")
        took = array.array("d")
        errors: list[str] = []
        retried = skipped = 0
        pending = iter(range(count))

        def counter(slot: int) -> Callable[[dict[str, Any]], None]:
            def on_message(message: dict[str, Any]) -> None:
                kind = message.get("type")
                if kind == "presence":
                    presence[slot] += 1
                    names[slot] += sum(
                        len(message.get(key) or ())
                        for key in ("online", "offline", "added", "removed")
                    )
                elif kind == "users":
                    users[slot] += 1
                    self.storm_interval = max(
                        self.storm_interval, int(message.get("presence_interval") or 0)
                    )

            return on_message

        async def runner() -> None:
            nonlocal retried, skipped
            for slot in pending:
                index = first + slot
                user, password = accounts[slot]
                target = targets[index % len(targets)]
                addr = local_addrs[index % len(local_addrs)] if local_addrs else None
                failure = ""
                for attempt in range(attempts):
                    if deadline is not None and time.monotonic() > deadline:
                        skipped += 1
                        break
                    began = time.monotonic()
                    try:
                        session = await open_session(
                            target,
                            user,
                            password,
                            local_addr=addr,
                            on_message=counter(slot),
                            resume=resume,
                        )
                    except Exception as exc:
                        failure = _describe(exc)
                        await asyncio.sleep(0.5 * (attempt + 1))  # a busy server: later
                        continue
                    now = time.monotonic()
                    done.append(now)
                    took.append(now - began)
                    slots.append(slot)
                    retried += attempt
                    self.sessions.append(session)
                    break
                else:
                    errors.append(failure)

        await sleep_until(t_start)
        cpu_began = time.process_time()
        await asyncio.gather(*(runner() for _ in range(concurrency)))
        cpu_s = time.process_time() - cpu_began
        wall = time.monotonic() - t_start
        return {
            "opened": len(done),
            "failed": len(errors),
            "retried": retried,
            "skipped": skipped,
            "errors": sorted(set(errors))[:5],
            "done": list(done),
            "took": list(took),
            "cpu": {"cpu_s": cpu_s, "util": cpu_s / wall if wall > 0 else 0.0},
        }

    async def cmd_storm_hold(self, t_end: float) -> dict[str, Any]:
        """Keep the storm's sessions until ``t_end``; then what each opened one received."""
        await sleep_until(t_end)
        reasons = sorted({s.closed.result() for s in self.sessions if s.closed.done()})
        slots = self.storm_slots
        return {
            "alive": sum(1 for s in self.sessions if not s.closed.done()),
            "closed_reasons": reasons[:5],
            "users": [self.storm_users[i] for i in slots],
            "presence": [self.storm_presence[i] for i in slots],
            "names": [self.storm_names[i] for i in slots],
            "presence_interval": self.storm_interval,
        }

    # -- handshakes and logins
    async def cmd_remember(
        self, target: Target, accounts: Sequence[tuple[str, str]], device_name: str
    ) -> dict[str, Any]:
        """Log each account in once with ``remember`` and close: ``(username, token)`` pairs
        for sessions that then ``resume`` (PROTOCOL.md 3.4)."""
        tokens: list[tuple[str, str]] = []
        for user, password in accounts:
            session = await open_session(target, user, password, remember=device_name)
            tokens.append((user, session.token))
            await session.close()
        return {"tokens": tokens}

    async def cmd_churn(
        self,
        target: Target,
        accounts: Sequence[tuple[str, str]],
        t_start: float,
        t_end: float,
        concurrency: int,
        login: bool,
        local_addrs: Sequence[str] = (),
        resume: bool = False,
    ) -> dict[str, Any]:
        """Open sessions back to back (``concurrency`` at a time) until t_end; each is
        timed from the TCP connect to the greeting (or to ``login_ok``), then closed.
        ``resume``: the accounts hold device tokens, and sessions log in with ``resume``."""
        times = array.array("d")
        errors: list[str] = []
        addr_cycle = itertools.cycle(local_addrs or [None])  # type: ignore[list-item]  # None: the system picks the source address
        account_cycle = itertools.cycle(accounts or [("", "")])

        async def loop_one() -> None:
            await sleep_until(t_start)
            while time.monotonic() < t_end:
                user, password = next(account_cycle)
                began = time.monotonic()
                try:
                    session = await asyncio.wait_for(
                        open_session(
                            target,
                            user,
                            password,
                            local_addr=next(addr_cycle),
                            stop_after_greeting=not login,
                            resume=resume,
                        ),
                        OPEN_TIMEOUT,
                    )
                except Exception as exc:
                    errors.append(_describe(exc))
                    await asyncio.sleep(0.05)
                    continue
                done = time.monotonic()
                if done < t_end:
                    times.append(done - began)
                await session.close()

        cpu = CpuWindow()
        await asyncio.gather(cpu.measure(t_start, t_end), *(loop_one() for _ in range(concurrency)))
        return {
            "completed": len(times),
            "times": sorted(times),
            "failed": len(errors),
            "errors": sorted(set(errors))[:5],
            "cpu": cpu.result(t_end - t_start),
        }

    async def cmd_ping(self, t_start: float, t_end: float, rate: float) -> dict[str, Any]:
        """Ping round trips of the first session, at ``rate`` per second, in the window."""
        session = self.sessions[0]
        rtts = array.array("d")
        failures = 0
        await sleep_until(t_start)
        next_at = time.monotonic()
        while time.monotonic() < t_end:
            began = time.monotonic()
            try:
                answer = await session.request({"type": "ping"}, timeout=max(1.0, t_end - began))
                if answer.get("type") == "pong":
                    rtts.append(time.monotonic() - began)
                else:
                    failures += 1
            except (TimeoutError, SessionError):
                failures += 1
            next_at += 1.0 / rate
            await sleep_until(next_at)
        return {"rtts": sorted(rtts), "failures": failures}

    # -- file transfer (product protocol, section 3.3; 4.12 through the hooks below)
    async def cmd_file_receive_prepare(self) -> dict[str, Any]:
        """Accept the next offer (3.3) on the first session; hash and acknowledge its chunks."""
        return self.receive_file(plain_incoming)

    def receive_file(self, accept: Callable[[dict[str, Any]], Incoming]) -> dict[str, Any]:
        """Accept the next offer on the first session; read, hash and acknowledge its chunks.

        ``accept`` turns the offer into what is expected of the file and how a chunk
        is read (:class:`Incoming`); an offer it refuses (it raises), or a chunk that
        ``Incoming.read`` refuses, ends the transfer with ``file_cancel`` reason
        ``not_verified``, as a client does (4.12)."""
        session = self.sessions[0]
        loop = asyncio.get_running_loop()
        if self._file_writer is not None:
            self._file_writer.cancel()  # an earlier transfer whose offer never came
        self._file_done = loop.create_future()
        state: dict[str, Any] = {"bytes": 0, "hash": hashlib.sha256(), "offer": None}
        cpu = {"began": 0.0}
        incoming: list[Incoming] = []
        # One writer keeps the answers in the order they were sealed.
        outgoing: asyncio.Queue[str | bytes] = asyncio.Queue()

        async def writer() -> None:
            while not self._file_done.done() or not outgoing.empty():
                record = await outgoing.get()
                await session.ws.send(record)

        def answer(message: dict[str, Any]) -> None:
            outgoing.put_nowait(session.encode(message))

        def finish(result: dict[str, Any]) -> None:
            if not self._file_done.done():
                result["cpu_s"] = time.process_time() - cpu["began"] if cpu["began"] else 0.0
                self._file_done.set_result(result)

        def refuse(transfer: str, why: BaseException) -> None:
            answer({"type": "file_cancel", "transfer": transfer, "reason": NOT_VERIFIED})
            finish({"bytes": state["bytes"], "ok": False, "refused": type(why).__name__})

        def on_message(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "file_offer" and state["offer"] is None:
                state["offer"] = message
                try:
                    incoming.append(accept(message))
                except Exception as exc:  # the offer failed its checks: refuse it (4.12)
                    refuse(message["transfer"], exc)
                    return
                answer({"type": "file_accept", "transfer": message["transfer"]})
            elif kind == "file_end" and incoming:
                expected = incoming[0]
                ok = (
                    state["bytes"] == expected.size and state["hash"].hexdigest() == expected.sha256
                )
                answer({"type": "file_done", "transfer": message["transfer"], "ok": ok})
                finish({"bytes": state["bytes"], "ok": ok})
            elif kind == "file_cancel":
                finish({"bytes": state["bytes"], "ok": False, "cancelled": message.get("reason")})

        def on_chunk(transfer: bytes, index: int, data: bytes) -> None:
            if self._file_done.done():
                return
            if not cpu["began"]:
                cpu["began"] = time.process_time()
            try:
                piece = incoming[0].read(index, data)
            except Exception as exc:  # altered, replayed, out of place: refuse (4.12)
                refuse(transfer.hex(), exc)
                return
            state["bytes"] += len(piece)
            state["hash"].update(piece)
            answer({"type": "file_ack", "transfer": transfer.hex(), "index": index})

        session.on_message = on_message
        session.on_chunk = on_chunk
        self._file_writer = loop.create_task(writer())
        return {"ready": True}

    async def cmd_file_receive_wait(self, wait_s: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(asyncio.shield(self._file_done), wait_s)
        finally:
            await asyncio.sleep(0.2)  # let the writer flush file_done
            if self._file_writer is not None:
                self._file_writer.cancel()

    async def cmd_file_send(
        self, to: str, size: int, chunk_size: int, wait_s: float
    ) -> dict[str, Any]:
        """Offer (3.3) and stream ``size`` bytes in chunks of ``chunk_size``."""
        return await self.send_file(to, size, chunk_size, wait_s, plain_offer)

    async def send_file(
        self, to: str, size: int, piece_size: int, wait_s: float, offer: Offer
    ) -> dict[str, Any]:
        """Offer and stream ``size`` bytes (one random block of ``piece_size`` repeated) with
        the window of 16. ``offer`` gives the offer's fields and what turns piece ``i`` into
        chunk ``i``; it runs before the clock starts, as the file's hash does."""
        session = self.sessions[0]
        block = os.urandom(piece_size)
        digest = hashlib.sha256()
        full, rest = divmod(size, piece_size)
        for _ in range(full):
            digest.update(block)
        digest.update(block[:rest])
        transfer = os.urandom(16)
        fields, seal = offer(transfer, size, digest.hexdigest())
        loop = asyncio.get_running_loop()
        acked: asyncio.Queue[Any] = asyncio.Queue()
        outcome: asyncio.Future[dict[str, Any]] = loop.create_future()
        accepted: asyncio.Future[dict[str, Any]] = loop.create_future()

        def on_message(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "file_ack":
                acked.put_nowait(message.get("index"))
            elif kind in ("file_accept", "file_reject") and not accepted.done():
                accepted.set_result(message)
            elif kind in ("file_done", "file_cancel"):
                if not accepted.done():
                    accepted.set_result(message)
                if not outcome.done():
                    outcome.set_result(message)

        session.on_message = on_message
        answer = await session.request(
            {"type": "file_offer", "transfer": transfer.hex(), "to": to, **fields}
        )
        if answer.get("type") != "ok":
            return {"unavailable": True, "answer": answer}
        reply = await asyncio.wait_for(accepted, wait_s)
        if reply.get("type") != "file_accept":
            return {"unavailable": False, "failed": reply}
        chunks = -(-size // piece_size)
        began = time.monotonic()
        cpu_began = time.process_time()
        in_flight = 0
        for index in range(chunks):
            while in_flight >= TRANSFER_WINDOW:
                await asyncio.wait_for(acked.get(), wait_s)
                in_flight -= 1
            data = seal(index, block if index < full else block[:rest])
            await session.ws.send(session.conn.send_chunk(transfer, index, data))  # type: ignore[union-attr]  # a transfer's sessions are connected
            in_flight += 1
            if outcome.done():
                break
        await session.send({"type": "file_end", "transfer": transfer.hex()})
        result = await asyncio.wait_for(outcome, wait_s)
        elapsed = time.monotonic() - began
        return {
            "unavailable": False,
            "seconds": elapsed,
            "bytes": size,
            "chunks": chunks,
            "result": result,
            "cpu": {"cpu_s": time.process_time() - cpu_began},
        }

    # -- bare relay (plain websockets, no protocol): binary chunks one way, text acks back
    async def cmd_relay_receive(self, url: str, origin: str, size: int) -> dict[str, Any]:
        ws = await _ws_connect(Target(url + "recv", origin, secure=False), None)
        received = 0
        digest = hashlib.sha256()
        index = 0
        try:
            while received < size:
                data = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT)
                received += len(data)
                digest.update(data)
                await ws.send(str(index))
                index += 1
        finally:
            await ws.close()
        return {"bytes": received, "sha256": digest.hexdigest()}

    async def cmd_relay_send(
        self, url: str, origin: str, size: int, chunk_size: int
    ) -> dict[str, Any]:
        ws = await _ws_connect(Target(url + "send", origin, secure=False), None)
        block = os.urandom(chunk_size)
        full, rest = divmod(size, chunk_size)
        chunks = -(-size // chunk_size)
        digest = hashlib.sha256()  # before the clock starts, as the product's sender does
        for index in range(chunks):
            digest.update(block if index < full else block[:rest])
        in_flight = 0
        try:
            await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT)  # "go": the receiver is there
            began = time.monotonic()
            cpu_began = time.process_time()
            for index in range(chunks):
                while in_flight >= TRANSFER_WINDOW:
                    await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT)
                    in_flight -= 1
                await ws.send(block if index < full else block[:rest])
                in_flight += 1
            while in_flight:
                await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT)
                in_flight -= 1
            elapsed = time.monotonic() - began
        finally:
            await ws.close()
        return {
            "seconds": elapsed,
            "bytes": size,
            "sha256": digest.hexdigest(),
            "cpu": {"cpu_s": time.process_time() - cpu_began},
        }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"
    return f"{type(exc).__name__}: {exc}"[:200]


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _serve(index: int, pipe: Any, worker_class: type[Worker] = Worker) -> None:
    loop = asyncio.get_running_loop()
    worker = worker_class(index)
    while True:
        readable = loop.create_future()
        loop.add_reader(pipe.fileno(), lambda f=readable: f.done() or f.set_result(None))
        try:
            await readable
        finally:
            loop.remove_reader(pipe.fileno())
        name, kwargs = pipe.recv()
        if name == "exit":
            await worker.cmd_close_all()
            pipe.send((True, None))
            return
        try:
            result = await getattr(worker, f"cmd_{name}")(**kwargs)
            pipe.send((True, result))
        except Exception:
            pipe.send((False, traceback.format_exc(limit=8)))


def _worker_main(index: int, pipe: Any, nofile: int, worker_class: type[Worker]) -> None:
    from .procs import raise_nofile_limit

    raise_nofile_limit(nofile)
    asyncio.run(_serve(index, pipe, worker_class))


# --- the bench's side ----------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A command failed in a load-generator process; the message holds its traceback."""


class LoadGen:
    """A pool of load-generator processes. Use as a context manager; every call is bounded.

    ``worker``: the class each process serves commands with (a :class:`Worker` with a
    scenario's own commands; module-level, so that a spawned process can import it)."""

    def __init__(self, count: int, nofile: int = 4096, worker: type[Worker] = Worker) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes = []
        self._procs = []
        for index in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(index, child, nofile, worker),
                name=f"loadgen-{index}",
            )
            proc.daemon = True
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def __len__(self) -> int:
        return len(self._procs)

    def __enter__(self) -> LoadGen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, index: int, name: str, **kwargs: Any) -> None:
        self._pipes[index].send((name, kwargs))

    def result(self, index: int, timeout: float) -> Any:
        pipe = self._pipes[index]
        if not pipe.poll(timeout):
            raise WorkerError(f"load generator {index} did not answer within {timeout:.0f} s")
        ok, value = pipe.recv()
        if not ok:
            raise WorkerError(f"load generator {index} failed:\n{value}")
        return value

    def call(self, index: int, name: str, timeout: float, **kwargs: Any) -> Any:
        self.submit(index, name, **kwargs)
        return self.result(index, timeout)

    def call_many(
        self, calls: Sequence[tuple[int, str, dict[str, Any]]], timeout: float
    ) -> list[Any]:
        """Run commands on several workers at once; results in the order given."""
        for index, name, kwargs in calls:
            self.submit(index, name, **kwargs)
        deadline = time.monotonic() + timeout
        return [self.result(index, max(0.1, deadline - time.monotonic())) for index, _, _ in calls]

    def close(self) -> None:
        for pipe, proc in zip(self._pipes, self._procs, strict=True):
            if proc.is_alive():
                with contextlib.suppress(OSError, EOFError, BrokenPipeError):
                    pipe.send(("exit", {}))
                    if pipe.poll(20):
                        pipe.recv()
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            pipe.close()


def loopback_addresses(count: int, offset: int = 0) -> list[str]:
    """Distinct source addresses in 127.0.0.0/8 (Linux routes all of it to ``lo``), so
    per-address limits of the server see many clients, as in real use."""
    return [f"127.0.{(offset + i) // 250}.{(offset + i) % 250 + 2}" for i in range(count)]
