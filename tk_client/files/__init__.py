"""File transfer in the clients: the files on disk, the threads, the words. No tkinter.

- :mod:`.manager`: :class:`TransferManager`, every transfer of one session, and
  the threading rule that both clients follow;
- :mod:`.worker`: one transfer and the worker thread that drives it;
- :mod:`.source` and :mod:`.sink`: the file sent (:class:`FileSource`,
  :class:`Upload`) and the file received (:class:`FileSink`, :class:`Download`);
- :mod:`.names`: the local name of an offered file;
- :mod:`.progress`: rate and time left; :mod:`.words`: what a person reads;
- :mod:`.events`: what the manager tells the user interface.

The protocol's rules are :mod:`chatproto.transfer`'s; the state of a transfer is
its one :class:`~chatproto.transfer.TransferState`, re-exported here.
"""

from __future__ import annotations

from chatproto.transfer import TransferState

from .events import FileOffered, TransferChanged, TransferError, TransferEvent, TransferInfo
from .manager import SessionAPI, TransferManager
from .names import incoming_destination, safe_name
from .progress import Progress
from .sink import Download, FileSink
from .source import FileSource, Upload
from .words import describe_progress, describe_reason, describe_transfer, format_size

__all__ = [
    "Download",
    "FileOffered",
    "FileSink",
    "FileSource",
    "Progress",
    "SessionAPI",
    "TransferChanged",
    "TransferError",
    "TransferEvent",
    "TransferInfo",
    "TransferManager",
    "TransferState",
    "Upload",
    "describe_progress",
    "describe_reason",
    "describe_transfer",
    "format_size",
    "incoming_destination",
    "safe_name",
]
