"""WebSocket routes: the protocol lives at /ws/chat/ (PROTOCOL.md, Transport).

Routes are built for a runtime (:class:`chat.runtime.ChatRuntime`): each
connection's consumer gets the runtime of the application that serves it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator
from django.urls import URLPattern, path

from .consumers import ChatConsumer
from .runtime import ChatRuntime

CHAT_PATH = "/ws/chat/"


def websocket_urlpatterns(runtime: ChatRuntime) -> list[URLPattern]:
    return [path(CHAT_PATH.lstrip("/"), ChatConsumer.as_asgi(runtime=runtime))]


class ChatWebSocketApplication:
    """The WebSocket side of the server: the Origin check, then the routes.

    A browser page on a foreign origin is refused with HTTP 403 (cross-site
    WebSocket hijacking), and so is a connection without ``Origin``.

    Channels' ``AllowedHostsOriginValidator(URLRouter(...))`` does this, and
    keeps, for each connection's lifetime, its two coroutines suspended and a
    copy of the scope: about 1.6 KiB per idle session (``bench/NOTES.md``,
    "Memory per session"). A connection to :data:`CHAT_PATH` with an allowed
    origin (judged by that same validator, ``valid_origin``) is handed to the
    consumer here, with nothing kept in between; everything else (a refused
    origin, another path, a ``root_path``) goes through Channels' pair as before.
    """

    _asgi_single_callable = True  # asgiref: __call__ is not async, yet one ASGI 3 callable

    def __init__(self, runtime: ChatRuntime) -> None:
        routes = websocket_urlpatterns(runtime)
        self.consumer = routes[0].callback
        self.checked: OriginValidator = AllowedHostsOriginValidator(URLRouter(routes))

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if (
            scope["type"] == "websocket"
            and scope.get("path") == CHAT_PATH
            and not scope.get("root_path")
            and self.checked.valid_origin(_origin(scope))
        ):
            return self.consumer(scope, receive, send)
        return self.checked(scope, receive, send)


def _origin(scope: dict[str, Any]) -> ParseResult | None:
    """The ``Origin`` header as Channels' ``OriginValidator`` reads it (the last one wins)."""
    parsed = None
    for name, value in scope.get("headers", []):
        if name == b"origin":
            with contextlib.suppress(UnicodeDecodeError):
                parsed = urlparse(value.decode("latin1"))
    return parsed


def websocket_application(runtime: ChatRuntime) -> ChatWebSocketApplication:
    """The WebSocket side of the server (see :class:`ChatWebSocketApplication`)."""
    return ChatWebSocketApplication(runtime)
