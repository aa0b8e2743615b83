"""The ASGI application that daphne serves: HTTP to Django, WebSocket to the chat consumer.

WebSocket connections pass an Origin check first: a browser page on a foreign
origin is refused with HTTP 403 (cross-site WebSocket hijacking), and so is a
connection without ``Origin``. Our clients send the server's own origin.

The chat's runtime state (sessions, fan-out, transfers, counters, timers) is
one :class:`chat.runtime.ChatRuntime`, made here with the application and
handed to every consumer.

Before serving anything, the key files are loaded (and generated on first
use): one that other users can read stops the server here, with the
``chmod`` to run, instead of failing every connection later.

Autobahn (daphne's WebSocket implementation) pretty-prints its configuration
and the connection's details on every new connection, for two debug log lines,
before the logger decides to drop them (``pprint.pformat``: ~5% of the event
loop's time in a burst of handshakes), and formats two more for every frame:
:func:`chatsite.autobahn_logging.skip_autobahn_debug_formatting` makes that
happen only for log lines that are emitted.

In a burst of handshakes, new connections wait in the kernel's backlog while
enough handshakes have the server's own work under way (``chat/workers.py``,
"Pacing new connections"): the runtime is given
:class:`chatsite.listening.ListeningPorts` for that.

Last, everything loaded so far is frozen out of the garbage collector's full
collections (:mod:`chatsite.gc_tuning`), which then walk only what the sessions
made: each one holds the event loop for as long as it walks.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Django must be set up before anything imports models (the consumer does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from chat.routing import websocket_application  # noqa: E402
from chat.runtime import ChatRuntime  # noqa: E402
from chatsite.autobahn_logging import skip_autobahn_debug_formatting  # noqa: E402
from chatsite.gc_tuning import freeze_startup_objects  # noqa: E402
from chatsite.listening import ListeningPorts  # noqa: E402
from chatsite.startup import prepare_server_files  # noqa: E402

skip_autobahn_debug_formatting()
prepare_server_files()
runtime = ChatRuntime()
runtime.workers.accept_pacing.listen_through(ListeningPorts().pause)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application(runtime),
    }
)
freeze_startup_objects()
