"""The exception tree of the protocol core.

::

    ChatProtoError
     ├── LocalProtocolError      our own code misused the API: a bug here, never the peer's fault
     │    └── SequenceExhausted  2**32 records sent: close 1000 and reconnect
     ├── CryptoError             any failed cryptographic check; deliberately says nothing more
     ├── RemoteProtocolError     the peer broke the protocol; ``close_code`` says how to close
     │    ├── HandshakeError     close 4000
     │    ├── RecordError        close 4002 (a bad record of any kind, one opaque error)
     │    └── RecordTooLarge     close 1009
     └── MessageError            a bad message inside a good record: answered with ``error``
                                 (``code`` is bad_request or too_large) and the session goes on

Every close code and error code is mapped in exactly one place: here.
"""

from __future__ import annotations

from .codes import CloseCode, ErrorCode


class ChatProtoError(Exception):
    """Base of every exception raised by :mod:`chatproto`."""


class LocalProtocolError(ChatProtoError):
    """The caller used the API wrongly (sent before the handshake, an oversized message...)."""


class SequenceExhausted(LocalProtocolError):
    """This direction has sent 2**32 records: close with 1000 (the client then reconnects)."""


class CryptoError(ChatProtoError):
    """A cryptographic operation failed.

    One opaque exception for every failure (bad padding, bad tag, bad OAEP
    decoding, low-order point...), so that nothing the peer can observe tells
    which check failed.
    """

    def __init__(self) -> None:
        super().__init__("cryptographic check failed")


class RemoteProtocolError(ChatProtoError):
    """The peer violated the protocol; the connection must close with ``close_code``."""

    close_code: CloseCode = CloseCode.BAD_RECORD


class HandshakeError(RemoteProtocolError):
    """Any handshake failure. Carries no detail: every failure looks the same from outside."""

    close_code = CloseCode.BAD_HANDSHAKE

    def __init__(self) -> None:
        super().__init__("handshake failed")


class RecordError(RemoteProtocolError):
    """A record failed a check (length, version, tag, sequence, padding). Opaque by design."""

    close_code = CloseCode.BAD_RECORD

    def __init__(self) -> None:
        super().__init__("bad record")


class RecordTooLarge(RemoteProtocolError):
    """A WebSocket message over the 1 MiB record limit."""

    close_code = CloseCode.TOO_LARGE

    def __init__(self) -> None:
        super().__init__("record too large")


class MessageError(ChatProtoError):
    """A decrypted message is malformed or out of bounds; the session goes on.

    ``code`` is the PROTOCOL.md error code to answer with, ``message`` human
    words for the user (never containing the offending data), ``ref`` the
    request's ``id`` when it had a valid one.
    """

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
