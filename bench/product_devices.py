"""Remember a device for each of the given bench accounts: JSON on stdin, tokens out.

Input: ``{"usernames": [...], "name": device name, "address": client address}``;
output: one line, ``{"tokens": [[username, token], ...]}`` in input order. The login
storm's resume variant uses these tokens: its accounts are thousands, and a login with
``remember`` for each (a second storm, with its password hashes) would only prepare the
one that is measured. The devices are made by the product's own
``accounts.devices.remember_device`` (PROTOCOL.md 3.4), so their tokens are stored as
the server stores any (only their SHA-256). Run by :mod:`bench.product` with the
product's environment; the tokens go only to the bench over a pipe.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    try:
        from accounts.devices import remember_device
    except ImportError:
        print(
            "accounts.devices.remember_device does not exist: this tree does not serve "
            "remembered devices (PROTOCOL.md 3.4) yet",
            file=sys.stderr,
        )
        raise SystemExit(2) from None

    request = json.load(sys.stdin)
    users = get_user_model().objects.in_bulk(request["usernames"], field_name="username")
    tokens = []
    for username in request["usernames"]:
        remembered = remember_device(users[username], request["name"], request["address"])
        tokens.append([username, remembered.token])
    print(json.dumps({"tokens": tokens}))


if __name__ == "__main__":
    main()
