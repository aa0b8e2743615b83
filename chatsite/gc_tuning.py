"""Keep the start-up's objects out of Python's full garbage collections.

Idle sessions cost the server little of its own (``docs/server.md``, Idle sessions),
but the cyclic garbage collector walks every tracked object at each full (generation
2) collection, and a server holding sessions runs one every few minutes even when
nothing happens: daphne's keepalive pings and their timers allocate a few objects per
session per 20 s, some live long enough to reach the oldest generation, and a full
collection follows once those pass a quarter of it. Measured with 1,500 idle sessions
(``bench/NOTES.md``): 321,680 tracked objects, one full collection of about half a
second in a 20 s window, most of the process's CPU in that window, and the event loop
stalled for as long.

About a third of those objects are the modules, settings, URL patterns, admin and
model metadata loaded at start-up, which live as long as the process. ``gc.freeze()``
after start-up moves them to the permanent generation: later collections skip them,
and they are never freed (they never would be). Objects created after it (sessions,
messages) are collected as before, so nothing made at run time can leak through
this. Same technique as CPython's documentation recommends for forking servers.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect once, then freeze what survives; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
