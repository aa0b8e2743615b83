"""End-to-end encryption (issue 14, docs/protocol.md section 4): what it costs, beside
what the same thing costs without it, in the same run.

- **fan-out**: the same N receivers, in a private room receiving ``send`` with an ``e2e``
  object and in the public ``lobby`` receiving ``send`` with ``text``, saturated in turn
  (one window of each per run, alternating). The ``e2e`` object is fixed and
  valid-looking: a real Megolm ciphertext of a 100-character text, whose first bytes carry
  the run, the sequence number and the send time (the receivers do not decrypt; the server
  only checks the shape, 4.5). The figure is deliveries/s at the receivers and the
  server's CPU per delivery; the ratio says whether a delivery costs the server more;
- **sender**: this process's CPU for :meth:`E2EEngine.encrypt_for` once the conversation's
  room key is shared (steady state), plus sealing its ``send`` in the record layer, beside
  sealing the same ``send`` with ``text`` (chatproto's record layer alone); and the first
  message to a room of M member devices (device lists, one-time keys claimed, an Olm
  session and a ``room_key`` per device);
- **rotation**: a room of 100 members of one device each, the key shared; one member
  leaves, and the next message starts a new Megolm session: the ``to_device`` messages and
  bytes the sender produces, and its CPU for them; then, on the product after the fan-out,
  the time from sending that batch to its ``ok`` and the server's CPU to store and queue it.

The sender and rotation parts run real engines (vodozemac accounts) in this process, with
:class:`KeyDirectory` answering ``keys_query`` and ``keys_claim`` from the members' own
accounts as the server's key directory would: no server, no network.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
import traceback
from collections.abc import Sequence
from typing import Any

import vodozemac

from chatproto import crypto_utils
from chatproto.connection import ClientConnection, ServerConnection
from chatproto.e2e import ALGORITHM_MEGOLM, MEGOLM_TEXT, canonical_json, conversation_id
from tk_client.e2e.device import DeviceAccount
from tk_client.e2e.engine import E2EEngine, Output
from tk_client.e2e.identity import UserIdentity
from tk_client.e2e.store import CryptoStore

from .. import procs, product, stats
from ..config import Config
from ..loadgen import (
    STALL_S,
    CpuWindow,
    FanoutCounter,
    LoadGen,
    SessionError,
    Target,
    Worker,
    make_text,
    open_session,
    sleep_until,
)
from ..servers import KINDS, Context
from . import fanout

PUBLIC_ROOM = "lobby"
PRIVATE_ROOM = "bench-e2e"
TEXT_CHARS = 100  # the message both rooms carry: as text, or as its Megolm ciphertext
STAMP_BYTES = 36  # "run:seq monotonic " in the ciphertext's first 48 base64 characters
STAMP_CHARS = STAMP_BYTES // 3 * 4
NOW = 1_000.0  # the engines' clock: no rotation by age happens within a bench
STEADY_BATCH = 50  # steady-state messages per conversation (a session rotates at 100)


def run(ctx: Context, cfg: Config) -> dict[str, Any]:
    result: dict[str, Any] = {}
    private_key = crypto_utils.load_private_key(ctx.key_file)
    batch: list[dict[str, Any]] = []

    def rotate() -> dict[str, Any]:
        figures, messages = rotation(private_key, cfg.e2e_rotation_members)
        batch.extend(messages)
        return figures

    for part, measure in (
        ("sender", lambda: sender_costs(private_key, cfg.crypto_seconds, cfg.e2e_devices)),
        ("rotation", rotate),
        ("fanout", lambda: fanout_rooms(ctx, cfg, batch, result.get("rotation"))),
    ):
        print(f"[e2e] {part}", flush=True)
        try:  # one part's failure must not cost the others' figures
            result[part] = measure()
        except Exception as exc:
            traceback.print_exc()
            result[part] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
        print(f"[e2e] {part}: {_line(part, result[part])}", flush=True)
    return result


# --- the key directory, in process ---------------------------------------------------------


class Member:
    """One user with one signed device (the first device of 4.2), outside any server."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.store = CryptoStore.create(user, f"{user}-dev", NOW)
        self.store.identity = UserIdentity.generate(user)
        self._one_time_keys: list[dict[str, str]] = []

    def keys_entry(self) -> dict[str, Any]:
        """This user's entry of a ``keys`` answer (4.3)."""
        identity = self.store.identity
        assert identity is not None, "a member holds its user key"
        device = self.store.device
        return {
            "user_key": identity.published_by(device).to_wire(),
            "devices": [identity.sign_device(device.device_keys()).to_wire()],
            "version": 1,
        }

    def stock_one_time_keys(self, count: int) -> None:
        """Make and sign ``count`` one-time keys ahead, so that claiming costs nothing."""
        account = self.store.device
        account.account.generate_one_time_keys(count)
        self._one_time_keys += account.unpublished_one_time_keys()
        account.mark_published()

    def claim(self) -> dict[str, Any]:
        """One ``keys_claimed`` entry: an unclaimed one-time key, handed out once."""
        if not self._one_time_keys:
            self.stock_one_time_keys(1)
        key = self._one_time_keys.pop()
        return {"user": self.user, "device": self.store.device.device, **key, "fallback": False}


class KeyDirectory:
    """Answers an engine's ``keys_query`` and ``keys_claim`` as the server's directory
    would (4.3), from the members' own accounts; every other request is passed on."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = {m.user: m for m in members}
        self._entries = {m.user: m.keys_entry() for m in members}

    def answer(self, request: dict[str, Any]) -> dict[str, Any] | None:
        kind = request.get("type")
        if kind == "keys_query":
            users = {u: self._entries[u] for u in request["users"] if u in self._entries}
            return {"type": "keys", "ref": request["id"], "users": users}
        if kind == "keys_claim":
            keys = [
                self.members[d["user"]].claim()
                for d in request["devices"]
                if d["user"] in self.members
            ]
            return {"type": "keys_claimed", "ref": request["id"], "keys": keys}
        return None


def engine_of(member: Member) -> E2EEngine:
    ids = itertools.count(1)
    return E2EEngine(member.store, new_id=lambda: f"e{next(ids)}")


def complete(
    engine: E2EEngine, directory: KeyDirectory, first: Output
) -> tuple[list[dict[str, Any]], list[str], float]:
    """Feed the engine the directory's answers until only requests for the wire are left:
    those; the types of every request the engine made, in order; and the engine's CPU
    seconds in :meth:`E2EEngine.receive` (the directory's own work is not counted)."""
    pending = list(first.requests)
    to_send: list[dict[str, Any]] = []
    asked: list[str] = []
    cpu = 0.0
    while pending:
        request = pending.pop(0)
        asked.append(request["type"])
        answer = directory.answer(request)
        if answer is None:
            to_send.append(request)
            continue
        began = time.process_time()
        out = engine.receive(answer, NOW)
        cpu += time.process_time() - began
        pending.extend(out.requests)
    return to_send, asked, cpu


def record_connection(private_key: Any) -> ClientConnection:
    """A client connection past the handshake, in memory: the record layer the sender
    seals every request with."""
    server = ServerConnection(private_key)
    client = ClientConnection()
    client.receive_text(server.hello())
    server.receive_text(client.send_key())
    client.receive_bytes(server.send({"type": "greeting", "server": "bench", "text": "hi"}))
    return client


def _text(i: int = 0) -> str:
    head = f"message {i} "
    return head + "x" * (TEXT_CHARS - len(head))


def _room(members: int, tag: str) -> tuple[Member, list[Member], KeyDirectory]:
    sender = Member(f"{tag}-sender")
    others = [Member(f"{tag}-m{i}") for i in range(members - 1)]
    for member in others:
        member.stock_one_time_keys(2)
    return sender, others, KeyDirectory([sender, *others])


# --- the sender's cost ---------------------------------------------------------------------


def sender_costs(private_key: Any, seconds: float, devices: Sequence[int]) -> dict[str, Any]:
    """CPU per message without E2E and, the room key shared, with it for a private
    conversation (one other device) and rooms of ``devices`` member devices; and the first
    message to rooms of those sizes (member devices besides the sender's)."""
    plain = plain_send(private_key, seconds)
    steady = {str(m): steady_state(private_key, seconds, m) for m in (1, *devices)}
    for point in steady.values():
        point["ratio"] = point["us"] / plain["us"] if plain["us"] else None
    first = {str(m): first_message(private_key, m) for m in devices}
    return {"plain": plain, "steady": steady, "first": first}


def _cpu_loop(seconds: float, batch: Any) -> tuple[float, int]:
    """Run ``batch`` (which returns ``(cpu_s, count)``) until ``seconds`` of CPU, once at
    least; the total CPU and count."""
    cpu, count = 0.0, 0
    while cpu < seconds or count == 0:
        spent, done = batch()
        cpu += spent
        count += done
    return cpu, count


def plain_send(private_key: Any, seconds: float) -> dict[str, Any]:
    """Building and sealing a ``send`` with a :data:`TEXT_CHARS`-character ``text``."""
    conn = record_connection(private_key)
    texts = [_text(i) for i in range(STEADY_BATCH)]
    sizes = []

    def batch() -> tuple[float, int]:
        began = time.process_time()
        for i, text in enumerate(texts):
            sizes.append(len(conn.send({"type": "send", "id": f"r{i}", "room": "x", "text": text})))
        return time.process_time() - began, len(texts)

    cpu, count = _cpu_loop(seconds, batch)
    return {"text_chars": TEXT_CHARS, "us": cpu / count * 1e6, "record_bytes": sizes[-1]}


def steady_state(private_key: Any, seconds: float, devices: int) -> dict[str, Any]:
    """Per message to a conversation with ``devices`` other member devices (one per
    member) whose room key is shared: ``encrypt_for`` and sealing its ``send``; and the
    Megolm encryption alone, for scale. Each conversation carries :data:`STEADY_BATCH`
    timed messages after its untimed first one, so no session reaches the 100 messages
    that rotate it."""
    conn = record_connection(private_key)
    sender, others, directory = _room(devices + 1, f"steady{devices}")
    engine = engine_of(sender)
    members = [m.user for m in others]
    texts = [_text(i) for i in range(STEADY_BATCH)]
    conversations = itertools.count()
    totals = {"encrypt_for": 0.0, "megolm": 0.0, "record_bytes": 0}

    def batch() -> tuple[float, int]:
        conversation = conversation_id(room=f"steady-{next(conversations)}")
        complete(engine, directory, engine.encrypt_for(conversation, members, _text(), NOW))
        records: list[bytes] = []
        began = time.process_time()
        for text in texts:
            t0 = time.process_time()
            out = engine.encrypt_for(conversation, members, text, NOW)
            totals["encrypt_for"] += time.process_time() - t0
            records.extend(conn.send(request) for request in out.requests)
        spent = time.process_time() - began
        if len(records) != len(texts):
            raise RuntimeError("a steady-state message sent more than its send request")
        totals["record_bytes"] = len(records[-1])
        group = sender.store.groups.outbound[conversation]
        plaintext = canonical_json({"type": MEGOLM_TEXT, "text": texts[0], "conversation": ""})
        t0 = time.process_time()
        for _ in texts:
            group.session.encrypt(plaintext)
        totals["megolm"] += time.process_time() - t0
        return spent, len(texts)

    cpu, count = _cpu_loop(seconds, batch)
    return {
        "devices": devices,
        "us": cpu / count * 1e6,
        "encrypt_for_us": totals["encrypt_for"] / count * 1e6,
        "megolm_us": totals["megolm"] / count * 1e6,
        "record_bytes": totals["record_bytes"],
        "messages": count,
    }


def first_message(private_key: Any, devices: int) -> dict[str, Any]:
    """The first message to a room whose other members have ``devices`` devices (one
    each): the engine's CPU from ``encrypt_for`` to the last request, sealing included."""
    conn = record_connection(private_key)
    sender, others, directory = _room(devices + 1, f"first{devices}")
    engine = engine_of(sender)
    began = time.process_time()
    out = engine.encrypt_for(conversation_id(room="first"), [m.user for m in others], _text(), NOW)
    cpu = time.process_time() - began
    to_send, asked, receive_cpu = complete(engine, directory, out)
    began = time.process_time()
    records = [conn.send(request) for request in to_send]
    seal_cpu = time.process_time() - began
    return {
        "devices": devices,
        "cpu_ms": (cpu + receive_cpu + seal_cpu) * 1e3,
        "requests": asked,
        **_to_device(to_send, records),
    }


def _to_device(requests: list[dict[str, Any]], records: list[bytes]) -> dict[str, Any]:
    """The ``to_device`` messages among ``requests``: how many, their bodies' bytes (as
    canonical JSON, as the server counts them), and the sealed records that carry them."""
    pairs = [(r, rec) for r, rec in zip(requests, records, strict=True) if r["type"] == "to_device"]
    bodies = [m["body"] for r, _ in pairs for m in r["messages"]]
    return {
        "to_device_messages": len(bodies),
        "to_device_body_bytes": sum(len(canonical_json(b)) for b in bodies),
        "to_device_requests": len(pairs),
        "to_device_record_bytes": sum(len(rec) for _, rec in pairs),
        "pre_key_messages": sum(1 for b in bodies if b.get("type") == 0),
    }


# --- rotation ------------------------------------------------------------------------------


def rotation(private_key: Any, members: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A room of ``members`` members (the sender included), one device each, its key
    shared and a few messages sent; one member leaves; what the next message makes. The
    figures, and the ``to_device`` messages made (for :func:`queue_on_server`)."""
    conn = record_connection(private_key)
    sender, others, directory = _room(members, "rot")
    engine = engine_of(sender)
    conversation = conversation_id(room="rotating")
    everyone = [m.user for m in others]
    complete(engine, directory, engine.encrypt_for(conversation, everyone, _text(), NOW))
    for i in range(5):
        complete(engine, directory, engine.encrypt_for(conversation, everyone, _text(i), NOW))
    remaining = everyone[1:]  # the first member left the room
    began = time.process_time()
    out = engine.encrypt_for(conversation, remaining, _text(), NOW)
    cpu = time.process_time() - began
    to_send, asked, receive_cpu = complete(engine, directory, out)
    began = time.process_time()
    records = [conn.send(request) for request in to_send]
    seal_cpu = time.process_time() - began
    figures = {
        "members": members,
        "left": 1,
        "requests": asked,
        "sender_cpu_ms": (cpu + receive_cpu + seal_cpu) * 1e3,
        **_to_device(to_send, records),
    }
    messages = [m for r in to_send if r["type"] == "to_device" for m in r["messages"]]
    return figures, messages


# --- fan-out: a private room beside the public one -----------------------------------------


def sample_e2e(device: str) -> dict[str, Any]:
    """A valid-looking ``e2e`` object (4.5) of ``device``: a real Megolm ciphertext of a
    :data:`TEXT_CHARS`-character text, under a throwaway session."""
    group = vodozemac.GroupSession()
    plaintext = canonical_json(
        {
            "type": MEGOLM_TEXT,
            "text": _text(),
            "conversation": conversation_id(room=PRIVATE_ROOM),
            "sender": product.SENDER,
            "sender_device": device,
        }
    )
    return {
        "algorithm": ALGORITHM_MEGOLM,
        "sender_key": vodozemac.Account().curve25519_key.to_base64(),
        "device": device,
        "session_id": group.session_id,
        "ciphertext": group.encrypt(plaintext).to_base64(),
    }


def stamped(template: dict[str, Any], run: int, seq: int) -> dict[str, Any]:
    """``template`` whose ciphertext begins with this message's run, number and send time
    (the same size, still base64: the stamp is whole base64 quanta)."""
    head = f"{run}:{seq} {time.monotonic():.6f} ".encode().ljust(STAMP_BYTES, b"x")
    stamp = base64.b64encode(head[:STAMP_BYTES]).decode("ascii")
    return {**template, "ciphertext": stamp + template["ciphertext"][STAMP_CHARS:]}


def stamp_of(message: dict[str, Any]) -> str:
    """The ``"run:seq time ..."`` text of a room message, from its ``e2e`` or its ``text``."""
    sealed = message.get("e2e")
    if sealed is None:
        return message["text"]
    return base64.b64decode(sealed["ciphertext"][:STAMP_CHARS]).decode("ascii", "replace")


class _Counter(FanoutCounter):
    """:class:`FanoutCounter` that reads the stamp of an ``e2e`` message as its text."""

    def on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "message" and "e2e" in message:
            message = {"type": "message", "text": stamp_of(message)}
        super().on_message(message)


class E2EWorker(Worker):
    """The load generator's worker, with a sender that logs in with a device (4.2) and
    sends either kind of message, and receivers that count both."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.counter = _Counter()

    async def cmd_e2e_sender(
        self, target: Target, user: str, password: str, room: str, members: list[str]
    ) -> dict[str, Any]:
        """Log the sender in with ``remember`` (an E2E device) and make the private room."""
        await self.cmd_close_all()
        session = await open_session(target, user, password, remember="bench-e2e")
        self.sessions.append(session)
        self.sender = session
        answer = await session.request(
            {"type": "create_room", "room": room, "private": True, "members": members}
        )
        if answer.get("type") != "rooms" and answer.get("code") != "room_exists":
            raise SessionError(f"create_room: {answer.get('type')} {answer.get('code')}")
        return {"device": session.device}

    async def cmd_e2e_devices(
        self, target: Target, accounts: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """A device with keys on the server for each account (4.2: login with ``remember``,
        then ``keys_upload``): ``(user, device)`` pairs. The sessions are closed again."""
        devices = []
        for user, password in accounts:
            session = await open_session(target, user, password, remember="bench-e2e-member")
            try:
                keys = DeviceAccount.create(user, session.device).device_keys()
                answer = await session.request(
                    {"type": "keys_upload", "device_keys": keys.to_wire()}
                )
                if answer.get("type") != "keys_uploaded":
                    raise SessionError(f"keys_upload: {answer.get('type')} {answer.get('code')}")
                devices.append((user, session.device))
            finally:
                await session.close()
        return devices

    async def cmd_e2e_request(self, message: dict[str, Any], repeat: int) -> dict[str, Any]:
        """Send ``message`` from the sender ``repeat`` times, one at a time: the seconds from
        sending each to its answer, and the error codes of any refused."""
        session = self.sender
        if session is None:
            raise SessionError("no sender session: run e2e_sender first")
        seconds, errors = [], []
        for _ in range(repeat):
            began = time.monotonic()
            answer = await session.request(message)
            seconds.append(time.monotonic() - began)
            if answer.get("type") == "error":
                errors.append(f"{answer.get('code')}: {answer.get('message')}")
        return {"seconds": seconds, "errors": errors}

    async def cmd_e2e_fanout(
        self, run: int, t_start: float, t_end: float, settle: float
    ) -> dict[str, Any]:
        """:meth:`Worker.cmd_fanout` counting with :class:`_Counter` (no latencies)."""
        self.counter = counter = _Counter(run=run, t_start=t_start, t_end=t_end)
        for session in self.sessions:
            if session is not self.sender:
                session.on_message = counter.on_message
        cpu = CpuWindow()
        await cpu.measure(t_start, t_end)
        last, quiet_since, give_up = -1, time.monotonic(), time.monotonic() + 20.0
        while time.monotonic() < give_up:
            if counter.of_run != last:
                last, quiet_since = counter.of_run, time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                break
            await asyncio.sleep(0.1)
        return {
            "in_window": counter.in_window,
            "of_run": counter.of_run,
            "receivers": sum(1 for s in self.sessions if s is not self.sender),
            "cpu": cpu.result(t_end - t_start),
        }

    async def cmd_e2e_send(
        self,
        run: int,
        room: str,
        t_begin: float,
        t_start: float,
        t_end: float,
        window: int,
        e2e: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """:meth:`Worker.cmd_send` at saturation, with ``text`` or with ``e2e``."""
        session = self.sender
        if session is None:
            raise SessionError("no sender session: run e2e_sender first")
        slots = asyncio.Semaphore(window)
        state = {"sent": 0, "echoed": 0, "stalls": 0}
        error_codes: dict[str, int] = {}

        def on_message(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "message" and message.get("from") == session.username:
                if int(stamp_of(message).partition(":")[0]) == run:
                    state["echoed"] += 1
                    slots.release()
            elif kind == "error":
                code = str(message.get("code"))
                error_codes[code] = error_codes.get(code, 0) + 1
                slots.release()

        session.on_message = on_message
        cpu = CpuWindow()
        cpu_task = asyncio.get_running_loop().create_task(cpu.measure(t_start, t_end))
        await sleep_until(t_begin)
        seq = 0
        while time.monotonic() < t_end and not session.closed.done():
            remaining = t_end - time.monotonic()
            try:
                await asyncio.wait_for(slots.acquire(), max(0.01, min(STALL_S, remaining)))
            except TimeoutError:
                if remaining <= STALL_S:
                    break
                state["stalls"] += 1
            message: dict[str, Any] = {"type": "send", "room": room}
            if e2e is None:
                message["text"] = make_text(run, seq, TEXT_CHARS)
            else:
                message["e2e"] = stamped(e2e, run, seq)
            await session.ws.send(session.encode(message))
            seq += 1
            state["sent"] = seq
        await cpu_task
        await asyncio.sleep(0.5)
        return {**state, "error_codes": error_codes, "cpu": cpu.result(t_end - t_start)}


class E2ELoadGen(LoadGen):
    """:class:`LoadGen` whose processes run :class:`E2EWorker`."""

    def __init__(self, count: int, nofile: int = 4096) -> None:
        super().__init__(count, nofile, worker=E2EWorker)


def fanout_rooms(
    ctx: Context,
    cfg: Config,
    batch: list[dict[str, Any]] | None = None,
    rotation_result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every N of ``cfg.e2e_n`` on the product: the public room and the private room in
    turn, ``cfg.runs`` windows each. Then, on the same server, the rotation's ``to_device``
    ``batch`` is sent and queued (:func:`queue_on_server`), its figures added to
    ``rotation_result``."""
    if not isinstance(ctx.product, product.Product):
        return {"error": "the product server could not be prepared"}
    accounts = ctx.product.receiver_accounts()
    kind = KINDS["product"]
    receivers = [name for name, _ in accounts]
    out: dict[str, Any] = {
        "n_values": list(cfg.e2e_n),
        "config": {"runs": cfg.runs, "duration_s": cfg.duration, "window": cfg.window},
        "points": {},
    }
    with (
        procs.running([kind.make(ctx)]) as group,
        E2ELoadGen(cfg.workers + 1, nofile=8192) as lg,
    ):
        target = kind.target(group.servers[0])
        device = lg.call(
            fanout.SENDER_WORKER,
            "e2e_sender",
            timeout=120,
            target=target,
            user=product.SENDER,
            password=product.PASSWORD,
            room=PRIVATE_ROOM,
            members=receivers,
        )["device"]
        template = sample_e2e(device)
        out["sizes"] = {
            "text_chars": TEXT_CHARS,
            "e2e_bytes": len(canonical_json(template)),
            "ciphertext_chars": len(template["ciphertext"]),
        }
        connected = 0
        for n in sorted(cfg.e2e_n):
            if n > connected:
                fanout._connect_receivers(ctx, cfg, kind, group, lg, connected, n - connected)
                connected = n
            windows: dict[str, list[dict[str, Any]]] = {"public": [], "e2e": []}
            for _ in range(cfg.runs):
                for room in windows:
                    fanout._drain(lg)
                    windows[room].append(
                        _saturation(cfg, group, lg, room, None if room == "public" else template)
                    )
            point: dict[str, Any] = {room: _summary(runs) for room, runs in windows.items()}
            public, private = point["public"], point["e2e"]
            point["ratio"] = _ratio(private["deliveries_per_s"], public["deliveries_per_s"])
            point["cpu_ratio"] = _ratio(
                private["server_us_per_delivery"], public["server_us_per_delivery"]
            )
            out["points"][str(n)] = point
            print(f"[e2e] fan-out N={n}: {_point_line(point)}", flush=True)
        if batch and rotation_result is not None and "error" not in rotation_result:
            try:
                rotation_result["server"] = queue_on_server(
                    group, lg, target, accounts[: len(batch)], batch
                )
            except Exception as exc:
                traceback.print_exc()
                rotation_result["server"] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
            print(f"[e2e] rotation on the server: {rotation_result['server']}", flush=True)
    return out


QUEUE_REPEATS = 5  # the rotation's batch sent this many times (each queues every message)


def queue_on_server(
    group: procs.ServerGroup,
    lg: LoadGen,
    target: Target,
    accounts: list[tuple[str, str]],
    batch: list[dict[str, Any]],
) -> dict[str, Any]:
    """Send the rotation's ``to_device`` messages as one request from the sender's device,
    readdressed to devices with keys on the server (one made here for each of
    ``accounts``, cycled over if fewer), :data:`QUEUE_REPEATS` times: the wall time
    from sending the request to its ``ok``, and the server's CPU over those requests. The
    target devices are offline: every message is accepted, stored and queued, no push."""
    devices = lg.call(
        1, "e2e_devices", timeout=120 + 2 * len(accounts), target=target, accounts=accounts
    )
    messages = [
        {"user": user, "device": device, "body": m["body"]}
        for m, (user, device) in zip(batch, itertools.cycle(devices), strict=False)
    ]
    before = group.sample()
    answer = lg.call(
        fanout.SENDER_WORKER,
        "e2e_request",
        timeout=300,
        message={"type": "to_device", "messages": messages},
        repeat=QUEUE_REPEATS,
    )
    cpu = procs.cpu_between(before, group.sample())
    if answer["errors"]:
        raise RuntimeError(f"to_device refused: {answer['errors'][:3]}")
    return {
        "messages": len(messages),
        "target_devices": len(devices),
        "repeats": QUEUE_REPEATS,
        "ms": stats.median(answer["seconds"]) * 1e3,
        "server_cpu_ms": cpu["server_cpu_s"] / QUEUE_REPEATS * 1e3,
    }


_run_ids = itertools.count(1)


def _saturation(
    cfg: Config, group: procs.ServerGroup, lg: LoadGen, room: str, e2e: dict[str, Any] | None
) -> dict[str, Any]:
    run_id = next(_run_ids)
    begin = time.monotonic() + 0.3 + 0.05 * len(lg)
    t_start, t_end = begin + cfg.warmup, begin + cfg.warmup + cfg.duration
    calls = [
        (
            fanout.SENDER_WORKER,
            "e2e_send",
            {
                "run": run_id,
                "room": PRIVATE_ROOM if e2e is not None else PUBLIC_ROOM,
                "t_begin": begin,
                "t_start": t_start,
                "t_end": t_end,
                "window": cfg.window,
                "e2e": e2e,
            },
        )
    ]
    calls += [
        (w, "e2e_fanout", {"run": run_id, "t_start": t_start, "t_end": t_end, "settle": cfg.settle})
        for w in range(1, len(lg))
    ]
    results, cpu = stats.windowed(lg, group, calls, t_start, t_end, timeout=60 + cfg.duration)
    sender, receivers = results[0], results[1:]
    delivered = sum(r["in_window"] for r in receivers)
    expected = sender["sent"] * sum(r["receivers"] for r in receivers)
    of_run = sum(r["of_run"] for r in receivers)
    utils = [sender["cpu"]["util"]] + [r["cpu"]["util"] for r in receivers]
    return {
        "deliveries_per_s": delivered / cpu["seconds"],
        "server_us_per_delivery": cpu["server_cpu_s"] / delivered * 1e6 if delivered else None,
        "sent": sender["sent"],
        "sender_errors": sender["error_codes"],
        "loss": 1 - of_run / expected if expected else 0.0,
        "loadgen": stats.loadgen_verdict(utils, cpu),
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "deliveries_per_s": stats.median(r["deliveries_per_s"] for r in runs),
        "server_us_per_delivery": stats.median(r["server_us_per_delivery"] for r in runs),
        "loss": max(r["loss"] for r in runs),
        "sender_errors": {k: v for r in runs for k, v in r["sender_errors"].items()},
        "loadgen_bound": any(r["loadgen"]["bound"] for r in runs),
        "runs": runs,
    }


def _ratio(a: Any, b: Any) -> float | None:
    try:
        return a / b if a and b else None
    except TypeError:
        return None


def _point_line(point: dict[str, Any]) -> str:
    public, private = point["public"], point["e2e"]
    return (
        f"public {public['deliveries_per_s']:,.0f}/s, e2e {private['deliveries_per_s']:,.0f}/s "
        f"(ratio {point['ratio'] or 0:.2f}; "
        f"server CPU per delivery ratio {point['cpu_ratio'] or 0:.2f})"
    )


def _line(part: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return result["error"]
    if part == "sender":
        steady = ", ".join(
            f"{m} device(s) {p['us']:.0f} us (x{p['ratio']:.0f})"
            for m, p in result["steady"].items()
        )
        firsts = ", ".join(
            f"M={m}: {f['cpu_ms']:.1f} ms, {f['to_device_messages']} to_device"
            for m, f in result["first"].items()
        )
        return (
            f"plain send {result['plain']['us']:.1f} us; with E2E {steady}; first message {firsts}"
        )
    if part == "rotation":
        return (
            f"{result['to_device_messages']} to_device messages, "
            f"{result['to_device_record_bytes']:,} bytes in {result['to_device_requests']} "
            f"record(s), sender CPU {result['sender_cpu_ms']:.1f} ms"
        )
    return f"{len(result.get('points', {}))} point(s)"
