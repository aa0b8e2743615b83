"""The server's runtime state, in one object per process: :class:`ChatRuntime`.

Like an h11 ``Connection`` owns everything about one connection, the runtime
owns everything the chat server keeps in memory while it runs: the logged-in
sessions and their fan-out (:class:`chat.sessions.SessionRegistry`), the file
transfer relay (:class:`chat.transfers.TransferRelay`), the abuse-limit counters
(:class:`chat.limits.LimitCounters`), the copy of the public rooms
(:class:`chat.room_lists.PublicRooms`), the worker threads
(:class:`chat.workers.Workers`), the fire-and-forget tasks and the server key.

It is made when the ASGI application is built (``chatsite/asgi.py``) and
handed to every consumer (``ChatConsumer.as_asgi(runtime=...)`` in
:mod:`chat.routing`). Tests build a fresh one for each test, so nothing of one
test's sessions, transfers or counters reaches the next; no module of ``chat``
or ``accounts`` keeps state of its own (``tests/test_module_state.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from asgiref.sync import sync_to_async
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from chatproto import crypto_utils

from .limits import LimitCounters
from .room_lists import PublicRooms
from .sessions import SessionRegistry
from .transfers import TransferRelay
from .workers import Workers

log = logging.getLogger("chat.sessions")


class ChatRuntime:
    """Everything one server process keeps while it runs (see the module docstring)."""

    def __init__(self) -> None:
        self.workers = Workers()
        self.sessions = SessionRegistry(self.workers)
        self.transfers = TransferRelay(self.workers)
        self.limits = LimitCounters()
        self.public_rooms = PublicRooms()
        self._background: set[asyncio.Task[Any]] = set()
        self._server_key: rsa.RSAPrivateKey | None = None

    # --- the server key ------------------------------------------------------------------------

    def server_key(self) -> rsa.RSAPrivateKey:
        """The server's RSA key, read once (generated, mode 0600, on first use).

        Raises ``chatproto.crypto_utils.KeyFileError`` for a key file that others
        can read; ``chatsite/asgi.py`` calls this at start so that the server stops
        there with the ``chmod`` to run. See ``manage.py server_key``.
        """
        if self._server_key is None:
            self._server_key = crypto_utils.load_private_key(settings.CHAT_SERVER_KEY)
        return self._server_key

    async def aserver_key(self) -> rsa.RSAPrivateKey:
        """:meth:`server_key` without blocking the loop: only its first call reads the file."""
        if self._server_key is not None:
            return self._server_key
        return await sync_to_async(self.server_key)()

    # --- work nobody waits for -----------------------------------------------------------------

    def in_background(self, work: Awaitable[Any]) -> None:
        """Run ``work`` without waiting for it; it is referenced until it ends, a failure logged."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    # --- the end -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the timers and let the worker threads end (tests, at the end of each).

        Sessions are not closed here: daphne closes their connections, and each
        consumer's ``disconnect`` cleans up after itself.
        """
        self.sessions.close()
        self.transfers.close()
        self.workers.close()
