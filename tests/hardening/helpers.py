"""Small pieces shared by the hardening tests: accounts in bulk, statistics, test settings."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence

from tests.live_server import LiveServer

PASSWORD = "correct horse battery staple"

# A test-only settings module for servers whose tests need hundreds of logins and do not
# measure hashing: Argon2 at the lowest cost. Production never reads it (see the module).
FAST_HASHING = {"DJANGO_SETTINGS_MODULE": "tests.hardening.fast_hashing_settings"}

_CREATE = """
import json, sys
from accounts import services
data = json.load(sys.stdin)
for name in data["names"]:
    services.create_user(name, data["password"], validate=False)
"""


def create_accounts(server: LiveServer, names: Sequence[str], password: str = PASSWORD) -> None:
    """Create many accounts in one ``manage.py shell`` (one process, not one per account)."""
    server.manage(
        "shell", "-c", _CREATE, input=json.dumps({"names": list(names), "password": password})
    )


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def summary(name: str, samples: Sequence[float]) -> str:
    """``name: n=60 p50=1.2 ms p90=3.4 ms max=9.9 ms`` for a failure message or the log."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"{name}: n={len(ordered)} p50={median_ms(ordered):.1f} ms "
        f"p90={p90 * 1000:.1f} ms max={ordered[-1] * 1000:.1f} ms"
    )


def room_history(server: LiveServer, username: str, room: str = "lobby") -> list[dict]:
    """Every stored message of ``room``, oldest first, read page by page over the protocol."""
    from tests.protocol_client.sync import connect

    with connect(server.url, server.origin, expected_fingerprint=server.fingerprint) as client:
        client.login(username, PASSWORD)
        messages: list[dict] = []
        before = None
        while True:
            request = {"type": "history", "room": room, "limit": 100}
            if before is not None:
                request["before"] = before
            page = client.request(request, timeout=60)
            assert page["type"] == "history", page
            messages[:0] = page["messages"]
            if not page["has_more"] or not page["messages"]:
                return messages
            before = page["messages"][0]["msg_id"]
