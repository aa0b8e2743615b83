"""Channels' WebSocket consumer without the per-event work the benchmarks measured.

:class:`LeanWebsocketConsumer` overrides four of Channels' methods, each for a
figure in ``docs/benchmarks.md`` / ``bench/NOTES.md`` (what the profiles showed):

- ``dispatch`` and ``websocket_disconnect`` skip ``aclose_old_connections()``, a
  hop to a worker thread and back before every event and after ``disconnect``:
  the ``channels-nohop`` baseline, Channels without that hop, delivers 4,152
  messages/s at N=50 against 1,960 with it (2.1x; the saturation table). Safe
  here because every database call goes through ``database_sync_to_async``
  (:mod:`chat.workers`), which closes broken and expired connections itself;
- ``send`` goes straight to the ASGI ``send`` for a binary record, skipping
  Channels' two coroutines around it: every push to every session passes
  through it, once per recipient of every message. It has no figure of its own
  in bench/NOTES.md (it was part of the per-recipient work profiled there); a
  ``make bench`` run without it would say whether it stays;
- ``__call__`` reads the WebSocket's messages in one loop of the session's own
  task instead of Channels' ``await_many_dispatch``, which makes a task per
  message and an ``asyncio.wait`` over it and the layer's pending receive (four
  turns of the event loop per frame instead of one, and two tasks and a waiter
  kept by every idle session). The channel layer is read by one long-lived task
  per session; a lock keeps Channels' rule that one message is dispatched at a
  time, a layer event that comes during a frame's dispatch is dispatched right
  after it (as Channels' loop did), and what the layer's reader raises ends the
  session as it did (measured in ``bench/NOTES.md``, "Issue 12 leftovers").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

log = logging.getLogger("chat.sessions")


Receive = Callable[[], Awaitable[dict[str, Any]]]


class LeanWebsocketConsumer(AsyncWebsocketConsumer):
    """``AsyncWebsocketConsumer`` with the overrides of the module docstring.

    Layer events (types ``chat.*``) that fail are logged, never fatal: the
    consumer must live on to run ``disconnect`` (presence, groups), or its user
    would stay online.
    """

    session_id: str | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Any) -> None:
        """Channels' ``AsyncConsumer.__call__`` with one receive loop (module docstring)."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        self._dispatching = asyncio.Lock()  # one message dispatched at a time, as in Channels
        # A layer event that came while a frame was being dispatched: dispatched next by
        # the session's loop, in the same turn (as Channels' loop did), then ``turn`` is set.
        self._handed: tuple[dict[str, Any], asyncio.Future[None]] | None = None
        layer: asyncio.Task[None] | None = None
        try:
            if self.channel_layer is not None:
                self.channel_name = await self.channel_layer.new_channel()
                layer = asyncio.ensure_future(self._read_layer(asyncio.current_task()))
            try:
                while True:
                    message = await receive()
                    async with self._dispatching:
                        await self.dispatch(message)
                        while self._handed is not None:
                            event, turn = self._handed
                            self._handed = None
                            await self.dispatch(event)
                            turn.set_result(None)
            except asyncio.CancelledError:
                failure = _failure(layer)
                if failure is None:
                    raise
                raise failure from None
        except StopConsumer:
            pass
        finally:
            if layer is not None and not layer.done():
                layer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await layer

    async def _read_layer(self, main: asyncio.Task[Any] | None) -> None:
        """The channel layer's events for this session, dispatched one at a time.

        An event that comes while the session's loop (``main``) dispatches a frame
        is handed to it, to dispatch right after the frame, in the same turn of the
        event loop, as Channels' ``await_many_dispatch`` did: nothing else (a task
        waiting for the session's lock) can come in between. Otherwise it is
        dispatched here, under the lock. What a dispatch here raises ends the
        session's loop, which raises it in turn, as Channels let a layer event's
        error end the consumer; ``main`` is told while the lock is held: it is
        then waiting for a frame or for the lock, never in the middle of a dispatch.
        A failure to receive (the layer's Redis gone) ends it the same way: the client
        reconnects and catches up, rather than staying on a session that hears nothing.
        """
        receive = self.channel_layer.receive
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await receive(self.channel_name)
            except Exception:  # the layer failed (Redis went away): the session ends, as before
                if main is not None:
                    main.cancel()
                raise
            if self._dispatching.locked():  # held by the session's loop: hand it over
                turn: asyncio.Future[None] = loop.create_future()
                self._handed = (message, turn)
                await turn
                continue
            async with self._dispatching:
                try:
                    await self.dispatch(message)
                except Exception:
                    if main is not None:
                        main.cancel()
                    raise

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Channels' ``send``, straight to the ASGI ``send`` for a binary record (see above)."""
        if bytes_data is not None and not close:
            await self.base_send({"type": "websocket.send", "bytes": bytes_data})
            return
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the handler of a WebSocket message or layer event, without the thread hop."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        if not message["type"].startswith("chat."):
            await handler(message)
            return
        try:
            await handler(message)
        except Exception:
            log.exception("session %s: %s event failed", self.session_id, message["type"])

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' own, without its ``aclose_old_connections()`` hop after ``disconnect``."""
        await self.disconnect(message["code"])
        raise StopConsumer()


def _failure(layer: asyncio.Task[None] | None) -> BaseException | None:
    """What the layer's reader raised, if it ended so (not by being cancelled)."""
    if layer is None or not layer.done() or layer.cancelled():
        return None
    return layer.exception()
