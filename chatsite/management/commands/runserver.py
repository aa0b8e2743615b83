"""``manage.py runserver``: daphne's, with the product's keepalive (:mod:`chatsite.keepalive`).

daphne's command builds its server with the default ping interval and timeout and has no
option for them; it makes the server through ``server_cls``, given here with ours.
``chatsite`` is listed before ``daphne`` in ``INSTALLED_APPS`` so that this command wins.
"""

from __future__ import annotations

import functools

from daphne.management.commands import runserver
from daphne.server import Server

from chatsite import keepalive


class Command(runserver.Command):
    server_cls = functools.partial(
        Server, ping_interval=keepalive.PING_INTERVAL, ping_timeout=keepalive.PING_TIMEOUT
    )
