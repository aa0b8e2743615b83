"""Minimal settings: no product code, no database use, the channel layer from the environment."""

import os
import tempfile
from pathlib import Path

SECRET_KEY = os.urandom(32).hex()  # a throwaway process: nothing is signed that outlives it
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "bench.baselines.channels_site.urls"
ASGI_APPLICATION = "bench.baselines.channels_site.asgi.application"
USE_TZ = True
# Never opened (the consumer does not touch the database), but present as in any Django
# project, so that Channels' close_old_connections() has the usual work to look at.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(tempfile.gettempdir()) / f"bench-channels-{os.getpid()}.sqlite3"),
    }
}

_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_LAYER = os.environ.get("BENCH_LAYER", "memory")
if _LAYER == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_REDIS_URL], "prefix": os.environ.get("BENCH_PREFIX", "bench")},
        }
    }
elif _LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_REDIS_URL], "prefix": os.environ.get("BENCH_PREFIX", "bench")},
        }
    }
elif _LAYER == "memory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    raise RuntimeError(f"BENCH_LAYER={_LAYER!r}: use memory, redis or pubsub")
