"""End-to-end files (protocol.md 4.12): the two ends of a sealed transfer. No tkinter, no network.

:class:`SealedUpload` and :class:`SealedDownload` are :class:`~.source.Upload` and
:class:`~.sink.Download` with a file key: the chunks carry ``ChunkCipher`` pieces, sealed
as they are read and opened before they are written (the mechanism is the ends' own, one
piece at a time, so memory stays constant). The wire machines count the encrypted stream
(``encrypted_size``), the file and its integrity check the file's own bytes, and so does
the progress.

Not thread-safe, like the classes they extend (see :mod:`tk_client.files.manager`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from chatproto.e2e_files import FileFacts
from chatproto.transfer import IncomingTransfer

from ..partials import PartialFiles
from .sink import Download
from .source import FileSource, Upload


class SealedUpload(Upload):
    """Sending one file end to end under ``key`` (the file key, fresh for this file)."""

    def __init__(
        self,
        source: FileSource,
        to: str,
        *,
        transfer: str,
        key: bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(source, to, transfer=transfer, clock=clock, key=key)


class SealedDownload(Download):
    """Receiving one end-to-end file whose verified offer said ``facts`` (name, the file's
    size and SHA-256, the file key)."""

    def __init__(
        self,
        incoming: IncomingTransfer,
        facts: FileFacts,
        destination: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        clock: Callable[[], float] = time.monotonic,
        journal: PartialFiles | None = None,
    ) -> None:
        super().__init__(
            incoming, destination, overwrite=overwrite, clock=clock, journal=journal, facts=facts
        )
