"""Which address a request comes from: the peer, or what a trusted proxy says it forwards.

One rule for the admin's HTTP login and the chat's WebSocket connections (both throttle
logins by address, :mod:`accounts.services`), so it lives here, below ``chat``.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings


def forwarded_client(peer: str, forwarded_headers: Iterable[str]) -> str:
    """The client behind ``peer``, given the ``X-Forwarded-For`` header values it sent.

    ``X-Forwarded-For`` is believed only when the peer is one of
    ``CHAT_TRUSTED_PROXIES``; then the rightmost address that is not itself a
    trusted proxy is the client (addresses further left are the client's own
    claims, which anyone can forge). The WebSocket and the admin's HTTP login
    both use this one rule.
    """
    trusted = set(settings.CHAT_TRUSTED_PROXIES)
    if peer not in trusted:
        return peer
    forwarded = [part.strip() for value in forwarded_headers for part in value.split(",")]
    for address in reversed([a for a in forwarded if a]):
        if address not in trusted:
            return address
    return peer
