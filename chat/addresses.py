"""The client address of a WebSocket connection, by the rule of :mod:`accounts.addresses`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accounts.addresses import forwarded_client


def client_address(scope: Mapping[str, Any]) -> str:
    """The address that throttling and logs use, for an ASGI connection scope."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    forwarded = [
        value.decode("latin1")
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
    ]
    return forwarded_client(peer, forwarded)
