"""Server addresses as users type them, and the three forms the client needs.

People write ``localhost:8000``, ``ws://chat.example.org:8000``, ``https://chat.example.org``
or paste the full ``wss://chat.example.org/ws/chat/``. All of these name one server;
:func:`parse_address` turns them into a :class:`ServerAddress`, whose ``key``
(``scheme://host:port``, the form pinned in the known-servers file), ``url`` (the
WebSocket endpoint) and ``origin`` (the ``Origin`` header naming the server itself,
PROTOCOL.md "Transport") are always derived the same way.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

WEBSOCKET_PATH = "/ws/chat/"
DEFAULT_PORTS = {"ws": 80, "wss": 443}
# What people paste from a browser maps onto the WebSocket scheme of the same security.
_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
_HOSTNAME_RE = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


class AddressError(ValueError):
    """The text is not a server address; the message says what a valid one looks like."""


@dataclass(frozen=True)
class ServerAddress:
    """One chat server: ``scheme`` is ``ws`` or ``wss``; ``host`` has no brackets."""

    scheme: str
    host: str
    port: int

    @property
    def _netloc(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def key(self) -> str:
        """``scheme://host:port``: the name under which the server's key is pinned."""
        return f"{self.scheme}://{self._netloc}:{self.port}"

    @property
    def url(self) -> str:
        """The WebSocket endpoint, ``ws://host:port/ws/chat/``."""
        return f"{self.scheme}://{self._netloc}:{self.port}{WEBSOCKET_PATH}"

    @property
    def origin(self) -> str:
        """The server's own origin: ``http://host:port`` for ws, ``https://host[:port]`` for wss."""
        web = "https" if self.scheme == "wss" else "http"
        if self.port == DEFAULT_PORTS[self.scheme]:
            return f"{web}://{self._netloc}"
        return f"{web}://{self._netloc}:{self.port}"

    def __str__(self) -> str:
        return self.key


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return len(host) <= 253 and _HOSTNAME_RE.fullmatch(host) is not None


def parse_address(text: str) -> ServerAddress:
    """A :class:`ServerAddress` from what a user typed; AddressError says what is wrong.

    A missing scheme means ``ws://`` (a development server); a missing port, the
    scheme's default. Any path other than ``/`` or ``/ws/chat/`` is refused rather
    than silently dropped, since it would mean the user expects something else.
    """
    raw = text.strip()
    if not raw:
        raise AddressError("Enter the server address, for example ws://127.0.0.1:8000")
    if "://" not in raw:
        raw = "ws://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise AddressError(
            f"'{text.strip()}' is not a server address; "
            "write it like ws://127.0.0.1:8000 or wss://chat.example.org"
        ) from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise AddressError(
            f"Unknown scheme '{parts.scheme}': use ws:// (no TLS) or wss:// (TLS), "
            "for example wss://chat.example.org"
        )
    host = (parts.hostname or "").lower()
    if not host or not _valid_host(host) or parts.username or parts.password:
        raise AddressError(
            f"'{text.strip()}' does not name a server; "
            "write it like ws://127.0.0.1:8000 or wss://chat.example.org"
        )
    if parts.path not in ("", "/", WEBSOCKET_PATH, WEBSOCKET_PATH.rstrip("/")) or parts.query:
        raise AddressError(
            f"The chat service is always at {WEBSOCKET_PATH}; give only the server, "
            f"for example {scheme}://{parts.netloc}"
        )
    return ServerAddress(scheme, host.rstrip("."), port or DEFAULT_PORTS[scheme])
