"""File transfer (PROTOCOL.md 3.3) without I/O: the server's relay rules and both clients' sides.

Nothing here touches a socket, a file or a clock. Every method takes what arrived
(a validated request, a chunk, the caller's ``now``) and returns what to do, as
small frozen dataclasses, in the order they must be done.

One module a job; import from this package, which re-exports every public name:

- :mod:`.relay`: the server's :class:`TransferRegistry` and :class:`RelayTransfer`
  (who may send what, what is refused and how, where the state lives across
  processes); :mod:`.actions`: what they ask the consumer to do (:class:`Deliver`,
  :class:`DeliverChunk`, :class:`Refuse`).
- :mod:`.outgoing` and :mod:`.incoming`: the clients' two ends,
  :class:`OutgoingTransfer` and :class:`IncomingTransfer`, over what they share
  (:mod:`.client_side`); :mod:`.events`: the *client events* they return,
  :class:`Send` and :class:`SendChunk` (put them on the wire) and
  :class:`Accepted`, :class:`Rejected`, :class:`Refused`, :class:`Acknowledged`,
  :class:`ChunkData`, :class:`Ended`, :class:`Finished`, :class:`Cancelled` (show
  them). The sender sends ``file_end`` as soon as every byte is sent, without
  waiting for the last acks; the recipient verifies.
- :mod:`.integrity`: :class:`IntegrityCheck` counts and hashes a stream against
  the offer (the recipient hashes where it writes, so each byte is hashed once);
  :mod:`.progress`: :class:`Progress` turns byte counts into a rate and a time
  left; :mod:`.filenames`: :func:`sanitize_filename` makes a safe file name of an
  offered one.
- :mod:`.wire`: what both sides say (:data:`TRANSFER_TYPES`, :class:`CancelReason`,
  :func:`ok`, :func:`file_cancel`).

The numeric limits (:data:`OFFER_TIMEOUT_SECONDS`, :data:`MAX_OPEN_TRANSFERS`,
:data:`DEFAULT_MAX_FILE_SIZE`, the window and the chunk size) live in
:mod:`chatproto.limits` with the protocol's other limits; the first three are
re-exported here for the callers that import them from this package.
"""

from __future__ import annotations

from ..limits import DEFAULT_MAX_FILE_SIZE, MAX_OPEN_TRANSFERS, OFFER_TIMEOUT_SECONDS
from .actions import (
    Action,
    Deliver,
    DeliverChunk,
    Refuse,
    Target,
    ToSession,
    ToUser,
)
from .client_side import TransferState, new_transfer_id
from .events import (
    Accepted,
    Acknowledged,
    Cancelled,
    ChunkData,
    ClientEvent,
    Ended,
    Finished,
    Refused,
    Rejected,
    Send,
    SendChunk,
)
from .filenames import RESERVED_DEVICE_NAMES, is_reserved_name, sanitize_filename
from .incoming import IncomingTransfer
from .integrity import IntegrityCheck, TransferIntegrityError
from .outgoing import OutgoingTransfer
from .progress import Progress
from .relay import Phase, RecipientStatus, RelayTransfer, TransferRegistry
from .wire import TRANSFER_TYPES, CancelReason, file_cancel, ok

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "MAX_OPEN_TRANSFERS",
    "OFFER_TIMEOUT_SECONDS",
    "RESERVED_DEVICE_NAMES",
    "TRANSFER_TYPES",
    "Accepted",
    "Acknowledged",
    "Action",
    "CancelReason",
    "Cancelled",
    "ChunkData",
    "ClientEvent",
    "Deliver",
    "DeliverChunk",
    "Ended",
    "Finished",
    "IncomingTransfer",
    "IntegrityCheck",
    "OutgoingTransfer",
    "Phase",
    "Progress",
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
