"""The product's own settings, with one bench-only change: a cheap password hash on demand.

``BENCH_FAST_HASH=1`` (fan-out, idle, scale-out, files, login storm) puts a
low-cost Argon2 first, so that hundreds or thousands of bench logins measure
message delivery and session setup rather than password hashing (the storm's
accounts are hashed with it too; its report says so). The handshake scenario runs with
``BENCH_FAST_HASH=0``: Django's default Argon2 parameters, as in production.
Everything else, the record layer included, is the product's code unchanged.
"""

import os

from django.contrib.auth.hashers import Argon2PasswordHasher

from chatsite.settings import *  # noqa: F403


class BenchArgon2PasswordHasher(Argon2PasswordHasher):
    """Argon2id at the lowest cost (same algorithm name, so hashes verify either way)."""

    time_cost = 1
    memory_cost = 64  # KiB
    parallelism = 1


if os.environ.get("BENCH_FAST_HASH") == "1":
    PASSWORD_HASHERS = [
        "bench.product_settings.BenchArgon2PasswordHasher",
        *PASSWORD_HASHERS,  # noqa: F405
    ]
