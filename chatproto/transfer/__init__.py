"""File transfer (PROTOCOL.md 3.3) without I/O: the server's relay rules and both clients' ends.

Nothing here touches a socket, a file or a clock. Every method takes what arrived
(a validated request, a chunk, the caller's ``now``) and returns what to do, as
small frozen dataclasses, in the order they must be done.

Four modules; import from this package, which re-exports every public name:

- :mod:`.wire`: what both sides say and check: the one state enum
  :class:`TransferState`, :data:`TRANSFER_TYPES`, :class:`CancelReason`,
  :func:`ok`, :func:`file_cancel`, the chunk-window rule :class:`ChunkWindow`,
  :func:`sanitize_filename` and :func:`new_transfer_id`.
- :mod:`.events`: what the machines return: the clients' events (:class:`Send`,
  :class:`SendChunk`, :class:`Accepted`, :class:`Rejected`, :class:`Refused`,
  :class:`Acknowledged`, :class:`ChunkData`, :class:`Ended`, :class:`Finished`,
  :class:`Cancelled`) and the relay's actions (:class:`Deliver`,
  :class:`DeliverChunk`, :class:`Refuse`).
- :mod:`.relay`: the server's :class:`TransferRegistry` and :class:`RelayTransfer`
  (who may send what, what is refused and how, where the state lives across
  processes).
- :mod:`.endpoint`: the clients' two ends, :class:`OutgoingTransfer` and
  :class:`IncomingTransfer`, and :class:`IntegrityCheck`, which counts and
  hashes a file's bytes against the offer.

The offer's field rules are those of the one validation table
(:func:`chatproto.messages.check_offer_facts`). The numeric limits live in
:mod:`chatproto.limits`; three are re-exported here for the callers that import
them from this package. How fast a transfer goes and how long it has left is
presentation, not protocol: it is the clients' (``tk_client.files.progress``).
"""

from __future__ import annotations

from ..limits import DEFAULT_MAX_FILE_SIZE, MAX_OPEN_TRANSFERS, OFFER_TIMEOUT_SECONDS
from .endpoint import IncomingTransfer, IntegrityCheck, OutgoingTransfer, TransferIntegrityError
from .events import (
    Accepted,
    Acknowledged,
    Action,
    Cancelled,
    ChunkData,
    ClientEvent,
    Deliver,
    DeliverChunk,
    Ended,
    Finished,
    Refuse,
    Refused,
    Rejected,
    Send,
    SendChunk,
    Target,
    ToSession,
    ToUser,
)
from .relay import UNKNOWN_TRANSFER_MESSAGE, RecipientStatus, RelayTransfer, TransferRegistry
from .wire import (
    RESERVED_DEVICE_NAMES,
    TRANSFER_TYPES,
    CancelReason,
    ChunkWindow,
    TransferState,
    file_cancel,
    is_reserved_name,
    new_transfer_id,
    ok,
    sanitize_filename,
)

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "MAX_OPEN_TRANSFERS",
    "OFFER_TIMEOUT_SECONDS",
    "RESERVED_DEVICE_NAMES",
    "TRANSFER_TYPES",
    "UNKNOWN_TRANSFER_MESSAGE",
    "Accepted",
    "Acknowledged",
    "Action",
    "CancelReason",
    "Cancelled",
    "ChunkData",
    "ChunkWindow",
    "ClientEvent",
    "Deliver",
    "DeliverChunk",
    "Ended",
    "Finished",
    "IncomingTransfer",
    "IntegrityCheck",
    "OutgoingTransfer",
    "RecipientStatus",
    "Refuse",
    "Refused",
    "Rejected",
    "RelayTransfer",
    "Send",
    "SendChunk",
    "Target",
    "ToSession",
    "ToUser",
    "TransferIntegrityError",
    "TransferRegistry",
    "TransferState",
    "file_cancel",
    "is_reserved_name",
    "new_transfer_id",
    "ok",
    "sanitize_filename",
]
