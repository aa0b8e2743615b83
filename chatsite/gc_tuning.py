"""Keep the start-up's objects out of Python's full garbage collections.

The cyclic garbage collector walks every tracked object at each full (generation 2)
collection, and holds the event loop meanwhile. A server runs one each time the
objects that survived into the oldest generation have grown by a quarter since the
last one: after every burst of logins (each session keeps ~150 tracked objects), and
now and then from what daphne's keepalive pings leave behind. Measured with 1,500
idle sessions (``bench/NOTES.md``): 321,680 tracked objects and a full collection of
0.5-1.1 s, which fell into the idle scenario's window after the logins in some runs
and was then most of its CPU; in four 90 s windows of steady idleness, one (362 ms).

About 98,000 of those objects are the modules, settings, URL patterns, admin and model
metadata loaded at start-up, which live as long as the process. ``gc.freeze()`` after
start-up moves them to the permanent generation: later collections skip them (a full
collection with 1,500 sessions walks 30% fewer objects; with 10,000, 7% fewer), and
they are never freed (they never would be). Objects created after it (sessions,
messages) are collected as before, so nothing made at run time can leak through this.
What remains of a full collection is the sessions' own objects: ``docs/scaling.md``
counts it among the reasons to keep a process under about 5,000 sessions.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect once, then freeze what survives; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
