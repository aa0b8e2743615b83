"""What the chat tests share besides fixtures: a fast password hasher.

Sessions are :mod:`tests.protocol_client.inprocess` (the tests' one protocol client).
"""

from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher


class FastArgon2PasswordHasher(Argon2PasswordHasher):
    """Argon2 at a tiny cost, for in-process tests only (settings override, never an env switch).

    Settings name it by its dotted path, ``tests.chat.helpers.FastArgon2PasswordHasher``.
    """

    time_cost = 1
    memory_cost = 64
    parallelism = 1
