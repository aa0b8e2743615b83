"""WebSocket routes: the protocol lives at /ws/chat/ (PROTOCOL.md, Transport)."""

from django.urls import path

from .consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]
