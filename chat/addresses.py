"""The client address of a connection: the peer, or what a trusted proxy says it forwards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings


def client_address(scope: Mapping[str, Any]) -> str:
    """The address that throttling and logs use.

    ``X-Forwarded-For`` is believed only when the peer is one of
    ``CHAT_TRUSTED_PROXIES``; then the rightmost address that is not itself a
    trusted proxy is the client (addresses further left are the client's own
    claims, which anyone can forge).
    """
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    trusted = set(settings.CHAT_TRUSTED_PROXIES)
    if peer not in trusted:
        return peer
    forwarded: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            forwarded += [part.strip() for part in value.decode("latin1").split(",")]
    for address in reversed([a for a in forwarded if a]):
        if address not in trusted:
            return address
    return peer
