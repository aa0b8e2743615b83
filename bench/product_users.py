"""Create the bench's accounts in the product's database: JSON on stdin, one line out.

Input: ``[[username, password, fast], ...]``; ``fast`` picks the bench's cheap
Argon2 parameters, otherwise Django's defaults. Accounts are saved one by one
(not bulk-created) so that the product's signals run (lobby membership).
Run by :mod:`bench.product` with the product's environment.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import Argon2PasswordHasher

    from bench.product_settings import BenchArgon2PasswordHasher

    user_model = get_user_model()
    hashers = {True: BenchArgon2PasswordHasher(), False: Argon2PasswordHasher()}
    cache: dict[tuple[str, bool], str] = {}
    created = 0
    for username, password, fast in json.load(sys.stdin):
        if user_model.objects.filter(username=username).exists():
            continue
        key = (password, bool(fast))
        if key not in cache:  # one hash per distinct password: thousands of users stay quick
            hasher = hashers[bool(fast)]
            cache[key] = hasher.encode(password, hasher.salt())
        user = user_model(username=username)
        user.password = cache[key]
        user.save()
        created += 1
    print(json.dumps({"created": created}))


if __name__ == "__main__":
    main()
