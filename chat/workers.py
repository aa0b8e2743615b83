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
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

P = ParamSpec("P")
A = TypeVar("A")
R = TypeVar("R")

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


class Workers:
    """This runtime's three thread pools (see the module docstring), created on first use.

    Owned by :class:`chat.runtime.ChatRuntime`; :meth:`close` lets their threads end.
    """

    def __init__(self) -> None:
        self._pools: dict[str, ThreadPoolExecutor] = {}

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

    def handshakes(self, func: Callable[[A], R]) -> Callable[[A], Awaitable[R]]:
        """``await workers.handshakes(conn.receive_text)(key)``: RSA off the event loop.

        A plain ``run_in_executor``, not asgiref's ``sync_to_async``: the work is pure
        chatproto (no Django, no context variables, no thread-sensitive state), and
        asgiref's context copying and bookkeeping around each call are a measurable part
        of the event loop's share of a handshake.
        """
        pool = self._pool("handshakes", settings.CHAT_HANDSHAKE_THREADS)

        async def in_thread(arg: A) -> R:
            return await asyncio.get_running_loop().run_in_executor(pool, func, arg)

        return in_thread

    def close(self) -> None:
        """Let the pools' threads end once their work is done (a runtime that is over)."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=False)
