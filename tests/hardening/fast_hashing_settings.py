"""Settings for test servers that log hundreds of users in and measure nothing about hashing.

The production settings, with Argon2 at its lowest cost (the same hasher class
the in-process chat tests use). Selected with ``DJANGO_SETTINGS_MODULE`` by the
tests that start such a server; it lives under ``tests/``, so no deployment can
pick it up by an environment variable of its own.
"""

from chatsite.settings import *  # noqa: F403

PASSWORD_HASHERS = ["tests.chat.helpers.FastArgon2PasswordHasher"]
