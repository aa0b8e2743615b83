"""Close codes and error codes of PROTOCOL.md, named once."""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """WebSocket close codes (PROTOCOL.md, "Close codes")."""

    NORMAL = 1000  # a sender reached 2**32 records; the client reconnects
    TOO_LARGE = 1009  # record over 1 MiB
    BAD_HANDSHAKE = 4000  # bad handshake, key deadline missed, binary before handshake
    LOGIN_FAILURES = 4001  # too many failed logins in one session
    BAD_RECORD = 4002  # bad record, or a text message after the handshake
    SESSION_ENDED = 4003  # ended by the server (see session_ended)
    POLICY = 4008  # login deadline, handshake rate, repeated bad requests, flooding


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` message (PROTOCOL.md 3.2 and 3.4)."""

    BAD_REQUEST = "bad_request"
    NOT_AUTHENTICATED = "not_authenticated"
    UNKNOWN_USER = "unknown_user"
    UNKNOWN_ROOM = "unknown_room"
    ROOM_EXISTS = "room_exists"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    OFFLINE = "offline"
    UNKNOWN_TRANSFER = "unknown_transfer"
    INTERNAL = "internal"
    # PROTOCOL.md 3.4: devices, passwords and two-factor login.
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_PASSWORD = "invalid_password"  # noqa: S105  # an error code, not a password
    INVALID_OTP = "invalid_otp"
    UNKNOWN_DEVICE = "unknown_device"
    # docs/protocol.md section 4: end-to-end encryption.
    DEVICE_REQUIRED = "device_required"  # the session logged in without ``remember``
    E2E_REQUIRED = "e2e_required"  # plain ``text`` where the conversation is end to end
    CONFLICT = "conflict"  # a user key exists (publish without reset), or a stale version
