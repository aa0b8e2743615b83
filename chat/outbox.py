"""A session's ordered output: its lock, what waits for it, and its batched message writes.

The protocol promises a session its direct answers before what is pushed to
it meanwhile (``login_ok`` before any push, the ``ack`` of a ``send`` before
the message itself). :class:`Outbox` keeps that order for one session:

- :class:`SessionLock`: one request, timer step or layer event at a time.
  Pushes from the fan-out never wait for it: one that arrives while it is held
  is kept (:meth:`Outbox.defer`), and the holder sends what was kept (first the
  broadcasts its request made, then the pushes) before letting go;
- service calls (:meth:`Outbox.service`) run in a database thread and keep the
  broadcasts they make after their commit for the lock's release;
- ``send`` and ``pm`` are stored in batches (:meth:`Outbox.write`): messages that
  arrive while a batch is written form the next, so a client with many messages
  in flight gets them stored one transaction at a time, not one round trip after
  another; every other request first waits for the batch (:meth:`Outbox.writes_done`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from chatproto.codes import ErrorCode
from chatproto.messages import Request

from . import delivery, services
from .sessions import Push

if TYPE_CHECKING:
    from .runtime import ChatRuntime

log = logging.getLogger("chat.sessions")

MAX_DEFERRED_PUSHES = 10_000  # a session busy this long is closed: its client catches up on history
INTERNAL_FAILURE = "the server failed to do that; try again later"


class Writer(Protocol):
    """What the outbox needs of its session (``chat.consumers.ChatConsumer``)."""

    session_id: str | None
    user: Any
    user_id: int
    rooms: set[str]
    presence_seq: int | None

    async def send_plaintext(self, plaintext: bytes) -> bool: ...

    async def close_to_reconnect(self) -> None: ...

    async def send_message(self, message: dict[str, Any]) -> None: ...

    async def reply_error(self, code: ErrorCode, message: str, ref: str | None = None) -> None: ...


class SessionLock(asyncio.Lock):
    """A session's lock; on release, first sends what waited for it (see the module docstring)."""

    def __init__(self, on_release: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._on_release = on_release

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            await self._on_release()
        except Exception:
            log.exception("sending what waited for a session's lock failed")
        finally:
            self.release()


class Outbox:
    """One session's lock and the output that waits for it (see the module docstring).

    One per session, idle sessions included: slotted, and the set of messages sent
    from the offline queue made only when there is one (``bench/NOTES.md``, "Issue 12
    leftovers": what an idle session keeps).
    """

    __slots__ = (
        "_broadcasts",
        "_deferred",
        "_queued_sent",
        "_writer",
        "_writes",
        "lock",
        "runtime",
        "workers",
        "writer",
    )

    def __init__(self, writer: Writer, runtime: ChatRuntime) -> None:
        self.writer = writer
        self.runtime = runtime
        self.workers = runtime.workers
        self.lock = SessionLock(self._after_lock)
        self._queued_sent: set[int] | None = None
        self._deferred: list[Push] = []  # (a list: an empty deque costs 760 bytes)
        self._broadcasts: list[delivery.Broadcast] = []
        self._writes: list[tuple[Request, services.Outgoing]] = []
        self._writer: asyncio.Task[None] | None = None

    # --- pushes --------------------------------------------------------------------------------

    async def push(self, push: Push) -> None:
        """A message from the fan-out: sent now, or kept while the lock is held.

        This runs once per recipient of every message: keep it lean.
        """
        if not self.lock.locked():
            await self.deliver(push)
        elif not self.defer(push):
            await self.writer.close_to_reconnect()

    async def deliver(self, push: Push) -> None:
        """Send a push, unless it is not for this session (any more)."""
        writer = self.writer
        if push.room is not None and push.room not in writer.rooms:
            return  # the session left the room meanwhile
        if push.msg_id is not None and self._queued_sent and push.msg_id in self._queued_sent:
            return  # already sent from the offline queue at login
        if push.presence_seq is not None and (writer.presence_seq or 0) >= push.presence_seq:
            return  # a presence delta that a newer users snapshot already covers
        sent = await writer.send_plaintext(push.plaintext)
        if sent and push.mark_delivered and push.msg_id is not None:
            # A message queued for an offline recipient reached one of their sessions live.
            mark = self.workers.database(services.mark_delivered)
            self.runtime.in_background(mark(writer.user_id, push.msg_id))

    def sent_from_queue(self, msg_id: int) -> None:
        """A queued private message went out at login: its live push is not sent again."""
        if self._queued_sent is None:
            self._queued_sent = set()
        self._queued_sent.add(msg_id)

    # --- what waits for the lock ---------------------------------------------------------------

    def defer(self, push: Push) -> bool:
        """Keep ``push`` until the lock is released; False when too many wait (then close)."""
        if len(self._deferred) < MAX_DEFERRED_PUSHES:
            self._deferred.append(push)
            return True
        log.warning(
            "session %s: %d pushes waiting; closing so that the client reconnects",
            self.writer.session_id,
            len(self._deferred),
        )
        self._deferred.clear()
        return False

    async def service(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A service call in a database thread; its broadcasts are sent after the answer."""
        outbox: list[delivery.Broadcast] = []
        try:
            return await self.workers.database(delivery.collecting(func, outbox))(*args, **kwargs)
        finally:
            self._broadcasts.extend(outbox)

    async def password_service(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """:meth:`service` in a password thread: the work hashes a password or checks a
        one-time password (``accounts.services.change_password``, ``two_factor``...)."""
        outbox: list[delivery.Broadcast] = []
        try:
            return await self.workers.passwords(delivery.collecting(func, outbox))(*args, **kwargs)
        finally:
            self._broadcasts.extend(outbox)

    async def _after_lock(self) -> None:
        """What waited for the lock: this session's broadcasts, then the pushes to it."""
        if self._broadcasts:
            outbox, self._broadcasts = self._broadcasts, []
            await delivery.send_collected(outbox)
        while self._deferred:
            waiting, self._deferred = self._deferred, []
            for push in waiting:
                await self.deliver(push)

    # --- messages to store ---------------------------------------------------------------------

    def write(self, request: Request, outgoing: services.Outgoing) -> None:
        """Queue a message to store, acknowledge and broadcast, in request order."""
        self._writes.append((request, outgoing))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_messages())

    async def _write_messages(self) -> None:
        """Store the queued messages, then ack each and broadcast each, in request order.

        Acks need no lock: the broadcasts (hence the messages themselves, this
        session's copy included) go out after them.
        """
        writer = self.writer
        while self._writes:
            batch, self._writes = self._writes, []
            outbox: list[delivery.Broadcast] = []
            store = self.workers.database(delivery.collecting(services.send_messages, outbox))
            results: list[Any]
            try:
                results = await store(writer.user, [outgoing for _, outgoing in batch])
            except Exception:
                log.exception(
                    "session %s: storing %d messages failed", writer.session_id, len(batch)
                )
                results = [None] * len(batch)
            for (request, _), result in zip(batch, results, strict=True):
                if isinstance(result, services.ServiceError):
                    await writer.reply_error(ErrorCode(result.code), result.message, request.id)
                elif result is None:
                    await writer.reply_error(ErrorCode.INTERNAL, INTERNAL_FAILURE, request.id)
                else:
                    await writer.send_message(services.answer("ack", request.id, **result))
            try:
                await delivery.send_collected(outbox)
            except Exception:
                log.exception("session %s: broadcasting messages failed", writer.session_id)
        self._writer = None

    async def writes_done(self) -> None:
        """Wait until every queued message is stored and answered (a failure was logged)."""
        if self._writer is not None and not self._writer.done():
            try:
                await asyncio.shield(self._writer)
            except Exception as exc:  # _write_messages logs its own failures
                log.debug("session %s: writes ended with %r", self.writer.session_id, exc)
