"""How often daphne pings an idle WebSocket, and how long it waits for the pong.

Both are daphne options (``--ping-interval``, ``--ping-timeout``), so they live
here once and every way the product is started passes them: the daphne command
in ``docs/server.md`` and the README, ``manage.py runserver``
(``chatsite/management/commands/runserver.py``) and the bench's product server.

Why 40 and 20 rather than daphne's 20 and 30 (measured in ``bench/NOTES.md``,
"Idle sessions, third pass"):

- an idle session costs what its keepalive costs: one WebSocket ping and pong,
  about 0.1 ms of server CPU, per interval. 40 s halves daphne's 20 s;
- daphne pings a client that sent nothing for ``PING_INTERVAL`` seconds, at its
  next 2 s check, so a silent connection carries a frame every 42 s at most:
  under the 60 s idle timeouts common on the way (nginx's ``proxy_read_timeout``
  default, cloud load balancers);
- a client that vanished without closing (laptop lid, lost Wi-Fi) is closed,
  and goes offline in presence, at most ``PING_INTERVAL + 2 + PING_TIMEOUT``
  (62) s after its last message, against 52 s with daphne's defaults;
- our clients ping only after ``tk_client.session.KEEPALIVE_SECONDS`` (45) of
  silence, so daphne's pings keep them quiet: a client's own ``ping`` is a
  request with a sealed answer, about 9 times the CPU of a WebSocket ping.
  Clients older than that keepalive (25 s) ping every 25 s against this
  server: update the clients before the server.
"""

from __future__ import annotations

PING_INTERVAL = 40  # seconds of client silence before daphne pings
PING_TIMEOUT = 20  # seconds daphne waits for the pong before it closes the connection
# daphne's check of both runs every 2 s (daphne.server.Server.timeout_checker).
CHECK_PERIOD = 2

DAPHNE_ARGS = ("--ping-interval", str(PING_INTERVAL), "--ping-timeout", str(PING_TIMEOUT))
"""The daphne command-line options that set them."""
