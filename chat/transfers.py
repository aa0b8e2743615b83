"""File transfers (PROTOCOL.md 3.3) in the server: the consumer's glue to the relay rules.

(Over 800 lines on purpose: a fifth of it is the routing described below, which the
two classes here, the per-session :class:`TransferSession` and the per-process
:class:`TransferRelay`, both carry out through the same layer events and inboxes;
split, each half would need the whole description.)

:class:`chatproto.transfer.TransferRegistry` decides everything (who may send
what, the order, the window, the size, the cancels) without I/O; this module
carries its decisions out, across server processes, and keeps nothing of a
file: a chunk is forwarded the moment it is read.

Where a transfer lives
----------------------
One registry per server process (:attr:`TransferRelay.registry`; the relay is owned by
the process's ``chat.runtime.ChatRuntime``). A transfer belongs to the
registry of the process holding the **sender's** session (its *owner*): the
offer is made there and every chunk arrives there, so the sender's side of
the hot path never waits for another process.

Routing
-------
Sessions are named by their channel names. An action for a session of this
process is done in this process (next section); one for a session of another
process goes through the channel layer (``chat.transfer`` events, below), and
one for "every session of the recipient" through the recipient's group
(:func:`chat.delivery.to_user`) and, for the recipient's sessions here, in this
process too (the layer's copy is marked ``relay`` and skipped by them). The
relayed offer carries, in the layer event and never on the wire, the owner's
channel name: each of the recipient's sessions keeps ``transfer -> owner``
(:attr:`TransferSession.routes`) and forwards its accept, reject, acks, done
and cancel there; the owner's consumer hands them to the registry with the
recipient's session and user, and the registry's answers come back by
session. A final message (the transfer is over for that session) drops the
route. A request about a transfer that is neither routed from this session
nor owned in its process is answered ``unknown_transfer`` on the spot; a
chunk about a transfer not owned in the sender's process likewise (only the
sender sends chunks, and the sender's process is the owner), except the chunks
that its sender still had in flight when the transfer ended, which the registry
drops silently for a short while (:mod:`chatproto.transfer.relay`; every call that
can end a transfer passes the registry ``now`` for that).

When a session ends, the registry of its process drops it (``disconnected``
to the other side), and each other process whose transfers the session had
routes to is told (``gone``) and drops it there. When the session was its
user's last, unanswered offers to the user end too (``disconnected`` to the
sender): in this process for every offer, elsewhere for the offers this
session had been shown. A process that dies tells nobody: while transfers are
open, each process checks every heartbeat whether their peers in other
processes are still present (:meth:`TransferRelay.check_peers`), and ends those whose peer
is gone, within about three heartbeats of the death (this also ends an offer
whose recipient's last session had logged in after it, never saw it, and so
sent no ``gone``). Offers not answered in time end from a timer per process
(:meth:`TransferRelay.expire_offers`).

Layer events: ``{"type": "chat.transfer", "op": ...}``, handled by
``ChatConsumer.chat_transfer`` under the consumer's lock:

``message``  ``message`` (a protocol message to send), ``final`` (drop the route),
             ``owner`` (the owning channel: keep a route), ``exclude`` (a channel not
             to send it to; user-wide sends), ``relay`` (user-wide sends: the sending
             process's :attr:`TransferRelay.ident`; its own sessions had it directly)
``chunk``    ``transfer`` (16 bytes), ``index``, ``data`` (raw bytes: channels_redis
             packs messages with msgpack, which carries bytes as they are; a full
             64 KiB chunk is 65,621 bytes packed, 87,576 with the layer's Fernet
             encryption, far below any limit of Redis or channels_redis)
``refuse``   ``code``, ``message``, ``ref``: an ``error`` through ``reply_error`` there
             (so ``bad_request`` counts toward that session's 4008); ``transfer``
``request``  for the owner: ``request`` (the step's fields), ``session``, ``user``
``gone``     for the owner: ``session`` ended; ``offline``: its ``user`` has none left

Order: the registry's actions are carried out in order; events from one
process to one channel arrive in the order sent (the in-memory layer is a
queue; channels_redis orders a channel by send time, and a transfer's events
to a session are all sent by one consumer, one after the other).

The same-process path
---------------------
When both sessions of a transfer are in one process (the sender's, the owner),
nothing of it crosses the channel layer: a layer hop per chunk and per ack (a
copy, a wake-up of the recipient's consumer, a dispatch) was about a tenth of
the server's CPU per chunk (``bench/NOTES.md``). Every action of the registry
for a session of this process (chunks, messages, refusals; the session at hand
included) is appended to that session's :attr:`TransferSession.inbox` in the
same synchronous step as the registry's decision, before anything is awaited;
the inbox is then sent in order under that session's lock: at once when the
lock is free or is the caller's, else by a task that waits for it
(:meth:`TransferSession.hand_over`). A session busy with its own request or
event first sends its inbox (:meth:`TransferSession.flush`), so nothing it
answers overtakes what was decided for it earlier. Hence, per session, the
order of the registry's decisions is the order on the wire: a chunk never
overtakes an earlier message of its transfer, nor a message an earlier chunk.
All of a transfer's events to one session come from its owner, so one path per
session and transfer is used throughout: the layer for a session elsewhere,
the inbox for one here (a user-wide send before the accept goes both ways, to
different sessions). Only the session's own registry calls and this process's
inboxes are involved: no session ever waits for another's lock while holding
its own, so two transfers in opposite directions cannot deadlock. Every check
of the registry is the same on both paths; only the carrying differs.

Memory and backpressure
-----------------------
The server holds, per transfer, a few counters here, and file data only while
it passes through: at most the window of 16 chunks (about 1 MiB), wherever
they sit (daphne's input queue, the channel layer, daphne's and the kernel's
send buffers). The reason is the window: the registry forwards a chunk only
while fewer than 16 are unacknowledged (a 17th ends the transfer with
``window_exceeded``, unforwarded), and an honest recipient acknowledges a
chunk only after it has read it off its socket, so every unacknowledged chunk
is one the recipient has not yet taken from the server. A slow recipient thus
slows the sender down to its own pace; nothing grows.

What the window cannot bound: daphne gives an ASGI application no write
backpressure (``websocket.send`` returns once the frame is queued in
Twisted's transport), so a *dishonest* recipient that acknowledges chunks
without reading them, together with a sender that keeps sending, makes the
server queue what the recipient does not read. That needs two cooperating
accounts and is the same exposure as any client that sends requests and
never reads the answers; bounding it needs a per-connection send-buffer limit
in the server (daphne has none), not a transfer rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from accounts.models import User
from chatproto.codes import ErrorCode
from chatproto.errors import MessageError
from chatproto.framing import FileChunk
from chatproto.messages import Request, validate_request
from chatproto.transfer import (
    UNKNOWN_TRANSFER_MESSAGE,
    Action,
    CancelReason,
    Deliver,
    DeliverChunk,
    RecipientStatus,
    Refuse,
    ToSession,
    ToUser,
    TransferRegistry,
    file_cancel,
)

from . import delivery, e2e_services, presence
from .workers import Workers

log = logging.getLogger("chat.transfers")

EVENT = "chat.transfer"

# What the relay left in a session's inbox: the action, and beside it the owning channel
# (a Deliver) or the transfer the call was about (a Refuse).
Handed = tuple[Action, str | None]


def recipient_status(username: str) -> tuple[RecipientStatus, int | None]:
    """What the server knows of an offer's ``to``, and the account's id.

    ``UNKNOWN`` for no such account or an inactive one, ``OFFLINE`` for an
    account with no logged-in session on a live process (presence is shared
    by every process), else ``ONLINE``. Synchronous: database and cache.
    """
    user_id = (
        User.objects.filter(username=username, is_active=True).values_list("pk", flat=True).first()
    )
    if user_id is None:
        return RecipientStatus.UNKNOWN, None
    if not presence.online([username]):
        return RecipientStatus.OFFLINE, user_id
    return RecipientStatus.ONLINE, user_id


class _Outbox(Protocol):
    lock: asyncio.Lock  # the session's lock (``chat.outbox.SessionLock``)


class Consumer(Protocol):
    """What :class:`TransferSession` needs of its consumer (``chat.consumers.ChatConsumer``)."""

    channel_name: str
    username: str
    device: str | None  # the remembered device the session logged in as, if any
    outbox: _Outbox

    def listening(self) -> bool: ...

    async def send_message(self, message: dict[str, Any]) -> None: ...

    async def send_chunk(self, chunk: FileChunk) -> None: ...

    async def reply_error(
        self,
        code: ErrorCode,
        message: str,
        ref: str | None = None,
        retry_after: int | None = None,
        *,
        bad_request: bool = False,
    ) -> None: ...


class TransferSession:
    """One session's part in file transfers: what the consumer calls, and the session's routes.

    The consumer calls :meth:`handle_request` and :meth:`handle_chunk` for what
    its client sent, :meth:`on_event` for ``chat.transfer`` layer events, and
    :meth:`session_closed` once the session is over; always under its lock.

    ``inbox``: what the relay of this process decided for this session and has not
    sent yet (see "The same-process path" in the module docstring), in the order
    decided; :meth:`flush` sends it, under the session's lock.
    """

    # One per session, idle sessions included: slotted (weakly referenced by the relay).
    __slots__ = ("__weakref__", "_drainer", "consumer", "inbox", "relay", "routes", "senders")

    def __init__(self, consumer: Consumer, relay: TransferRelay) -> None:
        self.consumer = consumer
        self.relay = relay
        self.routes: dict[str, str] = {}  # transfer -> owner's channel, for offers made to us
        self.senders: dict[str, str] = {}  # transfer -> the offering user, for offers made to us
        self.inbox: list[Handed] = []  # (a list: an empty deque costs 760 bytes a session)
        self._drainer: asyncio.Task[None] | None = None
        channel = getattr(consumer, "channel_name", None)  # None without a channel layer
        if channel is not None:
            self.relay.local[channel] = self

    @property
    def session(self) -> str:
        return self.consumer.channel_name

    # --- from the client ----------------------------------------------------------------------

    async def handle_request(self, request: Request) -> None:
        """A validated ``file_*`` request of this (logged-in) session."""
        if self.inbox:
            await self.flush()  # what was decided for this session before this request
        if request.type == "file_offer":
            await self._offer(request)
            return
        transfer_id: str = request.transfer  # type: ignore[attr-defined]  # every transfer step's class has `transfer`
        reg = self.relay.registry
        owned = reg.get(transfer_id)
        owner = self.routes.get(transfer_id)
        if owned is not None and owner in (None, owned.sender_session):
            actions = reg.receive(
                request, session=self.session, user=self.consumer.username, now=time.monotonic()
            )
            await self.relay.carry_out(actions, here=self, about=transfer_id)
        elif owner is not None:
            event = {
                "type": EVENT,
                "op": "request",
                "request": _request_fields(request),
                "session": self.session,
                "user": self.consumer.username,
            }
            if not await _layer_send(owner, event):
                self.routes.pop(transfer_id, None)
                await self.consumer.reply_error(
                    ErrorCode.INTERNAL,
                    "the server could not reach this transfer; it has probably ended",
                    request.id,
                )
        else:
            await self.consumer.reply_error(
                ErrorCode.UNKNOWN_TRANSFER, UNKNOWN_TRANSFER_MESSAGE, request.id
            )

    async def _offer(self, request: Request) -> None:
        """A 3.3 offer, or an end-to-end one (docs/protocol.md 4.12): its ``e2e`` is checked
        as a message's (a session without a device: ``device_required``); the relay's rules
        are the same for both (``size`` is then the encrypted stream's)."""
        req: Any = request
        e2e_services.check_e2e_device(req.e2e, self.consumer.device)
        user = self.consumer.username
        if req.to == user:
            status, recipient_id = RecipientStatus.ONLINE, None  # refused as bad_request anyway
        else:
            status, recipient_id = await self.relay.workers.database(recipient_status)(req.to)
        reg = self.relay.registry
        was_open = req.transfer in reg
        actions = reg.offer(
            request, session=self.session, user=user, now=time.monotonic(), recipient=status
        )
        if not was_open and req.transfer in reg and recipient_id is not None:
            self.relay.recipient_ids[req.transfer] = recipient_id
            log.info(
                "transfer %s offered: %s to %s, %d bytes",
                _short(req.transfer),
                user,
                req.to,
                req.size,
            )
            self.relay.schedule_expiry()
            self.relay.schedule_watch()
        await self.relay.carry_out(actions, here=self, about=req.transfer)

    async def handle_chunk(self, chunk: FileChunk) -> None:
        """A chunk record from this session: forwarded, refused, or the end of the transfer."""
        if self.inbox:
            await self.flush()
        actions = self.relay.registry.receive_chunk(
            chunk, session=self.session, now=time.monotonic()
        )
        await self.relay.carry_out(actions, here=self, about=chunk.transfer_hex)

    async def session_closed(self, *, went_offline: bool) -> None:
        """The session ended; ``went_offline``: it was its user's last session."""
        reg = self.relay.registry
        now = time.monotonic()
        self.inbox.clear()  # nothing more reaches this client
        if self.relay.local.get(self.session) is self:
            del self.relay.local[self.session]
        actions = reg.drop_session(self.session, now=now)
        if went_offline:
            actions += reg.recipient_offline(self.consumer.username, now=now)
        await self.relay.carry_out(actions)
        owners = set()
        for transfer_id, owner in self.routes.items():
            owned = reg.get(transfer_id)
            if owned is None or owned.sender_session != owner:
                owners.add(owner)
        self.routes.clear()
        self.senders.clear()
        self.relay.routed.discard(self)
        event = {
            "type": EVENT,
            "op": "gone",
            "session": self.session,
            "user": self.consumer.username,
            "offline": went_offline,
        }
        for owner in sorted(owners):
            await _layer_send(owner, event)

    # --- from the channel layer ---------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> None:
        """A ``chat.transfer`` layer event for this session (see the module docstring)."""
        if self.inbox:
            await self.flush()
        op = event.get("op")
        if op == "request":
            await self._owner_request(event)
        elif op == "gone":
            reg = self.relay.registry
            now = time.monotonic()
            actions = reg.drop_session(event["session"], now=now)
            if event.get("offline"):
                actions += reg.recipient_offline(event["user"], now=now)
            await self.relay.carry_out(actions, here=self)
        elif op == "message":
            # A user-wide send of this process's relay reached this session directly.
            mine = event.get("relay") == self.relay.ident
            if event.get("exclude") != self.session and not mine:
                await self.deliver(event["message"], final=event["final"], owner=event["owner"])
        elif op == "chunk":
            if self.consumer.listening():
                await self.consumer.send_chunk(
                    FileChunk(event["transfer"], event["index"], event["data"])
                )
        elif op == "refuse":
            await self.refuse(
                ErrorCode(event["code"]), event["message"], event["ref"], event.get("transfer")
            )
        else:
            log.warning("session %s: unknown transfer event %r", self.session, op)

    async def _owner_request(self, event: dict[str, Any]) -> None:
        try:
            request = validate_request(event["request"])
        except MessageError:
            log.warning("a forwarded transfer request did not validate; dropped")
            return
        actions = self.relay.registry.receive(
            request, session=event["session"], user=event["user"], now=time.monotonic()
        )
        await self.relay.carry_out(actions, here=self, about=request.transfer)  # type: ignore[attr-defined]  # every transfer step's class has `transfer`

    # --- to the client ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Send the inbox, in order; the caller holds the session's lock."""
        while self.inbox:
            handed, self.inbox = self.inbox, []
            for action, extra in handed:
                if isinstance(action, DeliverChunk):
                    if self.consumer.listening():
                        await self.consumer.send_chunk(action.chunk)
                elif isinstance(action, Deliver):
                    await self.deliver(action.message, final=action.final, owner=extra)
                else:
                    await self.refuse(
                        action.code, action.message, action.ref, extra, counts=action.counts
                    )

    async def hand_over(self) -> None:
        """Send the inbox now if the session's lock is free, else as soon as it is.

        Never waits for the lock while its caller holds another session's: a
        session busy with its own request or event gets a task that waits for it
        (one at a time), so two sessions relaying to each other cannot deadlock.
        """
        lock = self.consumer.outbox.lock
        if not lock.locked():
            async with lock:
                await self.flush()
        elif self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async with self.consumer.outbox.lock:
            await self.flush()

    async def deliver(self, message: dict[str, Any], *, final: bool, owner: str | None) -> None:
        """Send a transfer's message to the client, keeping the session's route up to date."""
        transfer_id = message.get("transfer")
        if isinstance(transfer_id, str):
            if final:
                self.routes.pop(transfer_id, None)
                self.senders.pop(transfer_id, None)
                if not self.routes:
                    self.relay.routed.discard(self)
            elif owner is not None and owner != self.session:
                self.routes[transfer_id] = owner
                if message.get("type") == "file_offer":
                    self.senders[transfer_id] = message["from"]
                self.relay.routed.add(self)
                self.relay.schedule_watch()
        if self.consumer.listening():
            await self.consumer.send_message(message)

    async def refuse(
        self,
        code: ErrorCode,
        message: str,
        ref: str | None,
        transfer_id: str | None,
        *,
        counts: bool = False,
    ) -> None:
        """An ``error`` answer; ``unknown_transfer`` from the owner also drops the route.
        ``counts``: a bad request of the session whatever the code (a stray chunk)."""
        if code is ErrorCode.UNKNOWN_TRANSFER and transfer_id is not None:
            self.routes.pop(transfer_id, None)
            self.senders.pop(transfer_id, None)
        if self.consumer.listening():
            await self.consumer.reply_error(code, message, ref, bad_request=counts)


class TransferRelay:
    """This process's file-transfer relay: the registry, what is kept beside it, its timers.

    One per :class:`chat.runtime.ChatRuntime`. ``local``: every session of this
    process, by channel name; ``routed``: those holding routes (offers made to them);
    ``recipient_ids``: transfer -> the recipient's user id, while the transfer is
    open in this registry (user-wide sends go to the recipient's group, named by id).
    ``ident``: marks the user-wide sends of this relay on the layer, which its own
    sessions have had directly.
    """

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self._registry: TransferRegistry | None = None
        self.timer: asyncio.Task | None = None
        self.watch: asyncio.Task | None = None
        self.suspects: set[tuple[str, str | None]] = set()  # peers the last check found gone
        self.local: weakref.WeakValueDictionary[str, TransferSession] = (
            weakref.WeakValueDictionary()
        )
        self.ident = secrets.token_hex(8)
        self.routed: weakref.WeakSet[TransferSession] = weakref.WeakSet()
        self.recipient_ids: dict[str, int] = {}

    @property
    def registry(self) -> TransferRegistry:
        """This process's registry (created on first use from the settings)."""
        if self._registry is None:
            self._registry = TransferRegistry(
                max_file_size=settings.CHAT_MAX_FILE_SIZE,
                max_open_per_user=settings.CHAT_MAX_OPEN_TRANSFERS,
                offer_timeout=settings.CHAT_TRANSFER_OFFER_TIMEOUT,
            )
        return self._registry

    @property
    def idle(self) -> bool:
        """True when no transfer or offer is open here and nothing is kept for one."""
        return self.registry.idle and not self.recipient_ids

    def session_of(self, username: str) -> str | None:
        """The channel name of a logged-in session of ``username`` on this process, if any."""
        for session in list(self.local.values()):
            if session.consumer.username == username:
                return session.session
        return None

    def close(self) -> None:
        """Stop the timers (a runtime that is over); open transfers are forgotten with it."""
        for task in (self.timer, self.watch):
            if task is not None and not task.done():
                with contextlib.suppress(RuntimeError):  # its event loop may be closed already
                    task.cancel()
        self.timer = self.watch = None

    # --- carrying out the registry's actions --------------------------------------------------

    async def carry_out(
        self,
        actions: list[Action],
        *,
        here: TransferSession | None = None,
        about: str | None = None,
    ) -> None:
        """Do the registry's ``actions`` in order; ``here`` is the session at hand, if any
        (the caller holds its lock).

        ``about`` is the transfer the call was about (refusals do not name it).
        What goes to sessions of this process joins their inboxes before anything
        is awaited, so that each session gets what the registry decided for it in
        the order decided, whatever other calls run meanwhile (see "The
        same-process path"); then the layer's sends; then the inboxes are sent.
        A session that the channel layer cannot reach (a full channel, Redis
        gone) is dropped from this process's transfers, which tells the other
        side ``disconnected`` instead of leaving it waiting for ever.
        """
        if not actions:
            return
        # Before anything is sent: whoever hears that a transfer is over finds it gone here too.
        ended = self._settle(actions, about)
        given: dict[str, TransferSession] = {}
        remote: list[tuple[Action, str | None]] = []
        for action in actions:
            extra: str | None
            if isinstance(action, DeliverChunk):
                target: str | None = action.session
                extra = None
            elif isinstance(action, Deliver):
                extra = self._owner_of(action.message)
                if isinstance(action.to, ToUser):
                    self._hand_to_user(action, extra, given)
                    remote.append((action, extra))
                    continue
                target = action.to.session
            else:
                target, extra = action.session, about
            session = self.local.get(target) if target is not None else None
            if session is None:
                remote.append((action, extra))
            else:
                session.inbox.append((action, extra))
                given[session.session] = session
        lost: set[str] = set()
        for action, extra in remote:
            if isinstance(action, DeliverChunk):
                if not await self._deliver_chunk(action):
                    lost.add(action.session)
            elif isinstance(action, Deliver):
                if not await self._deliver(action, extra, ended) and isinstance(
                    action.to, ToSession
                ):
                    lost.add(action.to.session)
            elif not await self._refuse(action, extra):
                lost.add(action.session)
        for session in given.values():
            if session is here:
                await session.flush()
            else:
                await session.hand_over()
        for gone in sorted(lost):
            actions = self.registry.drop_session(gone, now=time.monotonic())
            await self.carry_out(actions, here=here)

    def _owner_of(self, message: dict[str, Any]) -> str | None:
        """The owning channel of the message's transfer, while it is open here."""
        transfer_id = message.get("transfer")
        owned = self.registry.get(transfer_id) if isinstance(transfer_id, str) else None
        return owned.sender_session if owned is not None else None

    def _hand_to_user(
        self, action: Deliver, owner: str | None, given: dict[str, TransferSession]
    ) -> None:
        """A user-wide send, to the user's sessions of this process (their part of the group).

        By username, which a session has from its login on, before it joins the
        user's group; the layer's copy is marked (``relay``) so that they skip it.
        A scan of this process's sessions: only offers and their early ends are
        user-wide, never a chunk or an ack.
        """
        assert isinstance(action.to, ToUser)
        user, exclude = action.to.user, action.to.exclude
        for session in list(self.local.values()):
            if session.consumer.username == user and session.session != exclude:
                session.inbox.append((action, owner))
                given[session.session] = session

    async def _deliver(self, action: Deliver, owner: str | None, ended: dict[str, int]) -> bool:
        """A message through the layer: to a session of another process, or user-wide."""
        message = action.message
        event = {"type": EVENT, "op": "message", "message": message, "final": action.final}
        if isinstance(action.to, ToSession):
            return await _layer_send(action.to.session, {**event, "owner": owner})
        transfer_id = message.get("transfer")
        recipient_id = None
        if isinstance(transfer_id, str):
            recipient_id = self.recipient_ids.get(transfer_id, ended.get(transfer_id))
        if recipient_id is None:
            log.error("transfer %s: no recipient to send %s to", transfer_id, message.get("type"))
            return False
        event.update(owner=owner, exclude=action.to.exclude, relay=self.ident)
        try:
            await delivery.to_user(recipient_id, event)
        except Exception as exc:
            log.warning(
                "transfer %s: the recipient's sessions were not reached (%s)",
                _short(str(transfer_id)),
                type(exc).__name__,
            )
        return True

    async def _deliver_chunk(self, action: DeliverChunk) -> bool:
        """A chunk for a recipient in another process, through the layer."""
        chunk = action.chunk
        event = {
            "type": EVENT,
            "op": "chunk",
            "transfer": chunk.transfer,
            "index": chunk.index,
            "data": bytes(chunk.data),  # the layer takes bytes (a view of the record otherwise)
        }
        return await _layer_send(action.session, event)

    async def _refuse(self, action: Refuse, about: str | None) -> bool:
        event = {
            "type": EVENT,
            "op": "refuse",
            "code": action.code.value,
            "message": action.message,
            "ref": action.ref,
            "transfer": about,
        }
        return await _layer_send(action.session, event)

    def _settle(self, actions: list[Action], about: str | None) -> dict[str, int]:
        """Forget what this module kept for the transfers that these actions end, logging each.

        Returns their recipients' ids, for the user-wide sends still to do.
        """
        mentioned = {about} if about is not None else set()
        for action in actions:
            if isinstance(action, Deliver) and isinstance(action.message.get("transfer"), str):
                mentioned.add(action.message["transfer"])
        reg = self.registry
        ended = {}
        for transfer_id in sorted(mentioned):
            if transfer_id in self.recipient_ids and transfer_id not in reg:
                ended[transfer_id] = self.recipient_ids.pop(transfer_id)
                log.info(
                    "transfer %s ended: %s", _short(transfer_id), _outcome(actions, transfer_id)
                )
        return ended

    # --- offers nobody answers ----------------------------------------------------------------

    def schedule_expiry(self) -> None:
        """Make sure this process's timer runs while an offer waits for its answer."""
        loop = asyncio.get_running_loop()
        if self.timer is None or self.timer.done() or self.timer.get_loop() is not loop:
            self.timer = loop.create_task(self._expire_offers(), name="chat-transfer-expiry")

    async def _expire_offers(self) -> None:
        """End offers unanswered for the timeout (``expired`` to both sides), then sleep again.

        Every offer has the same timeout, so a later offer never expires before
        the one being waited for: sleeping until :meth:`TransferRegistry.next_expiry`
        is enough.
        """
        while (when := self.registry.next_expiry()) is not None:
            delay = when - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            try:
                await self.carry_out(self.registry.expire(time.monotonic()))
            except Exception:
                log.exception("ending expired file offers failed")
                await asyncio.sleep(1)

    # --- peers in processes that died ---------------------------------------------------------

    def schedule_watch(self) -> None:
        """Make sure this process checks its transfers' peers while it has any (see check_peers)."""
        loop = asyncio.get_running_loop()
        if self.watch is None or self.watch.done() or self.watch.get_loop() is not loop:
            self.watch = loop.create_task(self._watch_peers(), name="chat-transfer-peers")

    async def _watch_peers(self) -> None:
        while self.recipient_ids or self.routed:
            await asyncio.sleep(settings.CHAT_HEARTBEAT_SECONDS)
            try:
                await self.check_peers()
            except Exception:
                log.exception("checking the peers of file transfers failed")
        self.suspects.clear()  # a verdict needs two checks in a row: start afresh next time

    async def check_peers(self) -> None:
        """End the transfers whose other side was in a server process that died.

        A session that ends tells its peers itself (``disconnected``); a process
        that is killed or loses its machine tells nobody. Presence notices (its
        heartbeat stops, :mod:`chat.presence`), and this check, run every
        heartbeat while transfers are open, acts on it:

        - transfers owned here whose accepting session is gone from presence end
          with ``disconnected`` to the sender; an unanswered offer ends so once
          its recipient has no session left anywhere (this also covers a last
          session that never saw the offer, and so sent no ``gone``);
        - sessions here holding a route to an offer or transfer whose owner is
          gone get ``file_cancel`` ``disconnected``.

        A peer is judged gone only when two checks in a row (a heartbeat apart)
        find it so, so that one late heartbeat of a busy process cancels nothing;
        and sessions of this process are never judged by presence at all (their
        consumers report their own end).
        """
        reg = self.registry
        here = list(self.local.values())
        local = {session.session for session in here}
        local_users = {
            session.consumer.username for session in here if session.consumer.listening()
        }
        owned: list[tuple[str, str | None]] = []
        for transfer_id in list(self.recipient_ids):
            transfer = reg.get(transfer_id)
            if transfer is None:
                continue
            recipient = transfer.recipient_session
            if recipient is None and transfer.recipient_user not in local_users:
                owned.append((transfer.recipient_user, None))
            elif recipient is not None and recipient not in local:
                owned.append((transfer.recipient_user, recipient))
        routed = [
            (session, transfer_id, owner, sender)
            for session in list(self.routed)
            for transfer_id, owner in list(session.routes.items())
            if owner not in local and (sender := session.senders.get(transfer_id)) is not None
        ]
        owners: list[tuple[str, str | None]] = [
            (sender, owner) for _session, _transfer, owner, sender in routed
        ]
        gone = await sync_to_async(_gone_peers)(owned + owners)
        confirmed, self.suspects = gone & self.suspects, gone
        actions: list[Action] = []
        now = time.monotonic()
        for user, peer in sorted(confirmed, key=str):
            if peer is None:
                actions += reg.recipient_offline(user, now=now)
            else:
                actions += reg.drop_session(peer, now=now)
        await self.carry_out(actions)
        for session, transfer_id, owner, sender in routed:
            if (sender, owner) in confirmed and session.routes.get(transfer_id) == owner:
                message = file_cancel(transfer_id, CancelReason.DISCONNECTED)
                event = {"type": EVENT, "op": "message", "message": message, "final": True}
                await _layer_send(session.session, {**event, "owner": None})


# --- helpers --------------------------------------------------------------------------------


async def _layer_send(channel: str, event: dict[str, Any]) -> bool:
    """One layer event to one session; False when the layer refused it (logged)."""
    try:
        await delivery.to_channel(channel, event)
    except Exception as exc:  # ChannelFull, or the layer's backend is unreachable
        log.warning("transfer event to session %s not delivered (%s)", channel, type(exc).__name__)
        return False
    return True


def _outcome(actions: list[Action], transfer_id: str) -> str:
    """How a transfer ended, for the log (a client's own cancel reason is not logged)."""
    for action in actions:
        if not isinstance(action, Deliver) or not action.final:
            continue
        message = action.message
        if message.get("transfer") != transfer_id:
            continue
        if message["type"] == "file_done":
            return "done, file kept" if message.get("ok") else "done, file not kept"
        if message["type"] == "file_reject":
            return "declined"
        if message["type"] == "file_cancel":
            try:
                return f"cancelled ({CancelReason(str(message.get('reason')))})"
            except ValueError:
                return "cancelled"
    return "over"


def _request_fields(request: Request) -> dict[str, Any]:
    """The request as a JSON-like dict, to validate again in the owner's process."""
    fields = {name: value for name, value in request.as_dict().items() if value is not None}
    return {"type": request.type, **fields}


def _short(transfer_id: str) -> str:
    return transfer_id[:8]


def _gone_peers(peers: list[tuple[str, str | None]]) -> set[tuple[str, str | None]]:
    """Those of ``(user, session)`` that presence no longer has (cache reads).

    ``(user, None)`` asks about the user: gone when no session of theirs is left.
    """
    gone: set[tuple[str, str | None]] = set()
    for user, session in peers:
        if session is None:
            if not presence.online([user]):
                gone.add((user, None))
        elif not presence.session_alive(user, session):
            gone.add((user, session))
    return gone
