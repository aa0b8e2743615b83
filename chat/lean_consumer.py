"""Channels' WebSocket consumer without the per-event work the benchmarks measured.

:class:`LeanWebsocketConsumer` overrides three of Channels' methods, each for a
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
  ``make bench`` run without it would say whether it stays.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

log = logging.getLogger("chat.sessions")


class LeanWebsocketConsumer(AsyncWebsocketConsumer):
    """``AsyncWebsocketConsumer`` with the three overrides of the module docstring.

    Layer events (types ``chat.*``) that fail are logged, never fatal: the
    consumer must live on to run ``disconnect`` (presence, groups), or its user
    would stay online.
    """

    session_id: str | None = None

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
