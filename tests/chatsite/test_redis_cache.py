"""The Redis cache shares one connection pool per process, whatever the async context."""

from __future__ import annotations

import asyncio
import contextvars

from chatsite.redis_cache import ProcessRedisCache

PARAMS = {"OPTIONS": {}, "KEY_PREFIX": "test"}


def test_two_cache_instances_of_one_configuration_share_their_client():
    first = ProcessRedisCache("redis://127.0.0.1:6379/14", PARAMS)
    second = ProcessRedisCache("redis://127.0.0.1:6379/14", PARAMS)
    other = ProcessRedisCache("redis://127.0.0.1:6379/13", PARAMS)
    assert first._cache is second._cache
    assert first._cache is not other._cache


def test_sessions_in_their_own_contexts_share_one_pool():
    # Django makes a backend instance per async context: one per WebSocket session.
    async def pool_seen_by_a_session() -> object:
        cache = ProcessRedisCache("redis://127.0.0.1:6379/14", PARAMS)
        return cache._cache._get_connection_pool(write=True)

    async def sessions() -> list[object]:
        tasks = [
            asyncio.get_running_loop().create_task(
                pool_seen_by_a_session(), context=contextvars.Context()
            )
            for _ in range(5)
        ]
        return list(await asyncio.gather(*tasks))

    pools = asyncio.run(sessions())
    assert all(pool is pools[0] for pool in pools)
