"""Pausing daphne's listening sockets, for the pacing of new connections
(``chat/workers.py``, "Pacing new connections").

daphne listens through Twisted, whose reactor runs on the asyncio event loop that the
consumers run on, so the listening ports are readers of that reactor and can be taken
off it and put back from the loop. A port that is not read accepts nothing: new
connections wait in the kernel's backlog, and nothing is refused. Without a running
Twisted reactor (the tests' in-process application) nothing is paused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class ListeningPorts:
    """The running reactor's listening ports, which the pacing pauses and resumes.

    They are looked for once, at the first pause, and kept: the reactor's readers are
    every connection too, so looking at each pause would walk every session, O(N) work
    per handshake in a burst. daphne listens before any connection comes, and opens no
    port later.
    """

    def __init__(self) -> None:
        self._ports: list[Any] = []

    def pause(self) -> Callable[[], None]:
        """Stop accepting on the listening ports; returns what resumes them (a port closed
        in the meantime stays closed)."""
        reactor = sys.modules.get("twisted.internet.reactor")  # never install one here
        if reactor is None:
            return _nothing
        if not self._ports:
            from twisted.internet.tcp import Port

            self._ports = [reader for reader in reactor.getReaders() if isinstance(reader, Port)]
        ports = [port for port in self._ports if port.connected]
        for port in ports:
            port.stopReading()

        def resume() -> None:
            for port in ports:
                if port.connected:
                    port.startReading()

        return resume


def _nothing() -> None:
    """Nothing was paused."""
