"""The ASGI application that daphne serves: HTTP to Django, WebSocket to the chat consumer.

WebSocket connections pass an Origin check first: a browser page on a foreign
origin is refused with HTTP 403 (cross-site WebSocket hijacking), and so is a
connection without ``Origin``. Our clients send the server's own origin.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Django must be set up before anything imports models (the consumer does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
