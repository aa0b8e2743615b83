"""Where the server's blocking work runs: never on the event loop, each kind in threads of its own.

Three kinds of blocking work, three small thread pools, so that none can starve another
or the event loop:

- **database** (:func:`database`): service calls. With PostgreSQL several at once, so
  that one sender's write never waits for another's (each thread keeps its own
  persistent connection: ``CONN_MAX_AGE``); with SQLite one, since SQLite takes one
  writer at a time anyway and a second thread would only wait on its lock.
  ``database_sync_to_async`` closes broken or expired connections around each call,
  which is why the consumer can skip Channels' own per-event check.
- **passwords** (:func:`passwords`): login and registration, which hash a password
  with Argon2 (~0.1 s and 100 MiB each, on as many threads as the hash has lanes).
  Few at a time, and at a lower CPU priority on Linux (the hash's lane threads inherit
  it), so that a burst of logins slows other logins down, not everyone's messages.
- **handshakes** (:func:`handshakes`): the RSA-3072 decryption of a key message
  (~2.5 ms), which ``cryptography`` runs without holding the GIL, so two of them run
  on two cores while the loop goes on. At a slightly lower CPU priority (nice 5 on
  Linux): in a burst of handshakes the loop, which also does ~4 ms of daphne's,
  autobahn's and Twisted's work per new connection, is the bottleneck, and with two
  RSA threads and the loop runnable on two cores an equal share left it two thirds
  of a core while established sessions' messages waited for it.

Pools belong to the runtime (:class:`Workers`, one per ``chat.runtime.ChatRuntime``),
are created on first use and sized from settings (``CHAT_DATABASE_THREADS``,
``CHAT_PASSWORD_THREADS``, ``CHAT_HANDSHAKE_THREADS``).

The handshake queue
-------------------
A pool's executor queues without limit, and the 10 s key deadline (PROTOCOL.md
1.2) runs for every key message while it waits: a flood of key messages behind
which each one is late helps nobody. So the key messages waiting for or in RSA
work are counted (:class:`HandshakeQueue`, on :class:`Workers`) and held to
``CHAT_HANDSHAKE_QUEUE``. Past it the server closes with 4008 (policy; the
clients retry at their longest backoff), and refuses at two points:

- a **new connection** that arrives while the queue is full, right after the
  WebSocket is accepted: before the hello (so before an ephemeral key is made
  or anything is sent) and before the per-address handshake count. Nothing is
  reserved for it: a connection waiting for its client's key costs no RSA
  work, and a place held through the client's round trip could be held for
  the whole 10 s by a client that never sends its key;
- a **key message** that finds the queue full (the queue filled between that
  connection's hello and its key): closed without any RSA work.

A place is given back when the RSA work ends, whether the handshake succeeded
or failed, and when a key still waiting in the executor is cancelled (its
consumer was cancelled: the peer left and daphne gave up on the application);
work already running in a thread keeps its place until it ends, since the
thread is busy until then.

The default is 250 a thread (``chatsite/settings.py``: 500 with two threads,
1,000 with four). One decryption is ~2.5 ms, 400 a second on a thread; two
threads on two cores did 1.4 times the work of one, so count 280 a second a
thread: a full queue is done in about 0.9 s, and its last key is answered
within a tenth of the 10 s deadline, with the rest left for the client's round
trip and the event loop's ~4 ms per new connection. A longer queue would only
make every handshake in it later; a shorter one would refuse bursts (a
restart's reconnections) that the threads can serve in time.

Pacing new connections
----------------------
In a burst of handshakes the event loop, not the RSA threads, is the bottleneck: a
new connection costs it ~3 ms (daphne's HTTP upgrade, autobahn's opening handshake,
Twisted's socket calls, the consumer's set-up), and every connection in that work
adds its callbacks to each turn of the loop, in front of the established sessions'
frames. More handshakes in progress then only make every turn longer: in one run
with 8 in progress instead of 2, handshakes/s were the same and an established
session's ping round trip 2.4 times as long (bench/NOTES.md, "Handshakes, third
pass", and its full run). So while
``CHAT_HANDSHAKES_IN_WORK`` handshakes have work of the server's own under way
(:class:`AcceptPacing`), the listening socket is not read: new connections wait in
the kernel's backlog instead of in the loop's turns. Only the
server's own work counts: from the consumer's start to its hello, and from a key
message to the greeting (RSA included). A client that connects and never sends its
key holds no place while the server waits for it, so it cannot keep others out
(slowloris); the handshake queue's early refusal is unchanged.

The GIL
-------
A thread that wants the GIL waits for the holder to release it, and a busy
event loop releases it only every ``sys.getswitchinterval()`` (5 ms by
default) or when it blocks. A database call wakes up several times (each
round trip to the database; Django's Python around it), so behind a loop busy
fanning out a message each wake-up waited up to 5 ms: a send's transaction took
tens of milliseconds of mostly waiting, and one sender's messages queued
behind it. With these pools the server process switches every 0.5 ms instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

P = ParamSpec("P")
A = TypeVar("A")
R = TypeVar("R")

log = logging.getLogger("chat.sessions")

PASSWORD_NICENESS = 10  # below the event loop's 0: logins yield the CPU to live sessions
HANDSHAKE_NICENESS = 5  # RSA work yields the CPU to the loop too, but less than hashing
SWITCH_INTERVAL = 0.0005  # seconds; see "The GIL" above


def _lower_priority(niceness: int = PASSWORD_NICENESS) -> None:
    """Make the calling worker thread (and threads it starts) yield the CPU to the loop.

    On Linux the nice value belongs to the thread, and threads inherit it from the one
    that creates them (argon2's lane threads). Elsewhere PRIO_PROCESS would renice the
    whole server, so nothing is done.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class HandshakeQueue:
    """The key messages of this process waiting for or in RSA work, at most
    ``CHAT_HANDSHAKE_QUEUE`` ("The handshake queue" in the module docstring).

    Taken on the event loop, given back from whichever thread the RSA work ends
    (or is cancelled) in, hence the lock. A burst of refusals is logged once: a
    warning at its first refusal, a line with its count when the queue is back to
    half the bound.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting = 0
        self._refused = 0  # refusals since the queue last filled; 0: no burst under way

    def admit_connection(self) -> bool:
        """Whether a new connection may have its hello: False (a refusal, counted) while
        the queue is full. Takes no place (see the module docstring)."""
        with self._lock:
            if self.waiting < settings.CHAT_HANDSHAKE_QUEUE:
                return True
            self._refuse()
            return False

    def enter(self) -> bool:
        """Take a place for a key message; False (a refusal, counted) when the queue is full.
        After True, :meth:`leave` must follow once the RSA work has ended or is cancelled."""
        with self._lock:
            if self.waiting < settings.CHAT_HANDSHAKE_QUEUE:
                self.waiting += 1
                return True
            self._refuse()
            return False

    def leave(self, _: object = None) -> None:
        """Give a place back (a ``Future`` done-callback: the argument is ignored)."""
        with self._lock:
            self.waiting -= 1
            if self._refused and self.waiting <= settings.CHAT_HANDSHAKE_QUEUE // 2:
                log.info(
                    "handshake queue below half again; %d connections were refused",
                    self._refused,
                )
                self._refused = 0

    def _refuse(self) -> None:
        if not self._refused:
            log.warning(
                "handshake queue full (%d waiting for RSA work, CHAT_HANDSHAKE_QUEUE): "
                "new connections are closed with 4008 until it drains",
                self.waiting,
            )
        self._refused += 1


class AcceptPacing:
    """Handshakes with work of the server's own under way, and the listening socket paused
    while there are ``CHAT_HANDSHAKES_IN_WORK`` of them ("Pacing new connections" in the
    module docstring).

    Used on the event loop only. ``pause`` is given by the server's shell
    (:func:`listen_through`, from ``chatsite.asgi``): it stops reading the listening
    sockets and returns what resumes them. Without it (tests, another server) only the
    count is kept.
    """

    def __init__(self) -> None:
        self.working = 0
        self._pause: Callable[[], Callable[[], None]] | None = None
        self._resume: Callable[[], None] | None = None  # set while paused

    @property
    def paused(self) -> bool:
        return self._resume is not None

    def listen_through(self, pause: Callable[[], Callable[[], None]]) -> None:
        """``pause()`` stops accepting new connections and returns the call that resumes."""
        self._pause = pause

    @contextlib.contextmanager
    def working_on_handshake(self) -> Iterator[None]:
        """Count a handshake's server-side step (set-up to hello, key to greeting)."""
        self.working += 1
        if self._resume is None and self.working >= settings.CHAT_HANDSHAKES_IN_WORK:
            self._resume = self._pause() if self._pause is not None else _nothing
        try:
            yield
        finally:
            self.working -= 1
            resume = self._resume
            if resume is not None and self.working < settings.CHAT_HANDSHAKES_IN_WORK:
                self._resume = None
                resume()


def _nothing() -> None:
    """What resumes listening when nothing was paused (no server shell)."""


class Workers:
    """This runtime's three thread pools (see the module docstring), created on first use,
    the handshake queue (:class:`HandshakeQueue`) and the pacing of new connections
    (:class:`AcceptPacing`).

    Owned by :class:`chat.runtime.ChatRuntime`; :meth:`close` lets their threads end.
    """

    def __init__(self) -> None:
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self.handshake_queue = HandshakeQueue()
        self.accept_pacing = AcceptPacing()

    def _pool(self, kind: str, threads: int) -> ThreadPoolExecutor:
        pool = self._pools.get(kind)
        if pool is None:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
            initializers: dict[str, Callable[[], None]] = {
                "passwords": _lower_priority,
                "handshakes": functools.partial(_lower_priority, HANDSHAKE_NICENESS),
            }
            initializer = initializers.get(kind)
            pool = self._pools[kind] = ThreadPoolExecutor(
                max_workers=max(1, threads),
                thread_name_prefix=f"chat-{kind}",
                initializer=initializer,
            )
        return pool

    def database(self, func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """``await workers.database(services.x)(...)``: a service call in a database thread."""
        pool = self._pool("database", settings.CHAT_DATABASE_THREADS)
        return database_sync_to_async(func, thread_sensitive=False, executor=pool)

    def passwords(self, func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """``await workers.passwords(accounts.authenticate)(...)``: work that hashes a password."""
        pool = self._pool("passwords", settings.CHAT_PASSWORD_THREADS)
        return database_sync_to_async(func, thread_sensitive=False, executor=pool)

    def handshakes(self, func: Callable[[A], R]) -> Callable[[A], Awaitable[R | None]]:
        """``await workers.handshakes(conn.receive_text)(key)``: RSA off the event loop.

        None, without calling ``func``, when the handshake queue is full (the caller
        closes with 4008). The place taken is given back when ``func`` returns or
        raises in its thread, or when the call is cancelled before a thread started it.

        A plain executor submission, not asgiref's ``sync_to_async``: the work is pure
        chatproto (no Django, no context variables, no thread-sensitive state), and
        asgiref's context copying and bookkeeping around each call are a measurable part
        of the event loop's share of a handshake.
        """
        pool = self._pool("handshakes", settings.CHAT_HANDSHAKE_THREADS)
        queue = self.handshake_queue

        async def in_thread(arg: A) -> R | None:
            if not queue.enter():
                return None
            try:
                work: Future[R] = pool.submit(func, arg)
            except BaseException:
                queue.leave()  # a pool shut down: nothing will run
                raise
            # Before wrap_future's own callback: the place is back before the result is.
            work.add_done_callback(queue.leave)
            return await asyncio.wrap_future(work)

        return in_thread

    def close(self) -> None:
        """Let the pools' threads end once their work is done (a runtime that is over)."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=False)
