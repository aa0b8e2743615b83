"""Django's Redis cache with one connection pool per process (``CACHES`` in settings).

Django keeps one cache backend instance per asynchronous context (``caches`` is an
asgiref ``Local``), and its ``RedisCache`` makes a client, and the client a connection
pool, per instance. Under daphne each WebSocket session runs in its own context, so
each logged-in session kept a Redis connection of its own open: the login storm of
10,000 sessions over two processes passed Redis's ``maxclients`` (10,000) and refused
the last logins (bench/NOTES.md, "Redis connections"). redis-py's connection pools are
thread-safe, so here every instance in the process shares one client per configuration.

Process-wide by nature (a pool of sockets), like Django's own local-memory cache store;
it lives in ``chatsite``, beside the settings that name it, not in an app.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property


class ProcessRedisCache(RedisCache):
    """``RedisCache`` whose client (and so its connection pool) is shared in the process."""

    _clients: ClassVar[dict[str, RedisCacheClient]] = {}
    _making: ClassVar[threading.Lock] = threading.Lock()

    @cached_property
    def _cache(self) -> Any:
        key = repr((self._servers, sorted(self._options.items())))
        with self._making:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._class(self._servers, **self._options)
        return client
