"""The Channels tutorial's chat design, minimal, for the plain-broadcast baseline.

``BENCH_LAYER`` picks the channel layer: ``memory`` (InMemoryChannelLayer, the
default), ``redis`` (channels_redis core layer) or ``pubsub``
(RedisPubSubChannelLayer), both on ``REDIS_URL``. ``BENCH_NO_DB_HOP=1`` runs a
consumer whose ``dispatch`` skips Channels' ``aclose_old_connections()`` (the
worker-thread hop before every event), to show what that hop costs.

Run: ``DJANGO_SETTINGS_MODULE=bench.baselines.channels_site.settings daphne
bench.baselines.channels_site.asgi:application``.
"""
