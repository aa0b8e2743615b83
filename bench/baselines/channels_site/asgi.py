"""ASGI entry point of the Channels baseline (the tutorial's routing, origin check included)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baselines.channels_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from bench.baselines.channels_site.consumers import ChatConsumer, NoHopChatConsumer  # noqa: E402

consumer = NoHopChatConsumer if os.environ.get("BENCH_NO_DB_HOP") == "1" else ChatConsumer

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter([path("ws/chat/", consumer.as_asgi())])),
    }
)
