"""WebSocket routes: the protocol lives at /ws/chat/ (PROTOCOL.md, Transport).

Routes are built for a runtime (:class:`chat.runtime.ChatRuntime`): each
connection's consumer gets the runtime of the application that serves it.
"""

from __future__ import annotations

from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import URLPattern, path

from .consumers import ChatConsumer
from .runtime import ChatRuntime


def websocket_urlpatterns(runtime: ChatRuntime) -> list[URLPattern]:
    return [path("ws/chat/", ChatConsumer.as_asgi(runtime=runtime))]


def websocket_application(runtime: ChatRuntime) -> AllowedHostsOriginValidator:
    """The WebSocket side of the server: the Origin check, then the routes.

    A browser page on a foreign origin is refused with HTTP 403 (cross-site
    WebSocket hijacking), and so is a connection without ``Origin``.
    """
    return AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns(runtime)))
