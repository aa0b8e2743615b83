"""A bare ``websockets`` relay for the file benchmark: no Django, no encryption.

A receiver connects to ``/recv``, a sender to ``/send``. The relay tells the
sender "go" once its receiver is there, then forwards the sender's binary messages to the receiver
and the receiver's text acknowledgements back, one message at a time, so at
most the sender's window is ever in flight (as in the product's transfer).

Run: ``python -m bench.baselines.ws_relay --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from chatproto.limits import MAX_RECORD_SIZE


class Relay:
    """Pairs one ``/recv`` connection with the next ``/send`` connection."""

    def __init__(self) -> None:
        self.receiver: asyncio.Future[ServerConnection] | None = None

    def _slot(self) -> asyncio.Future[ServerConnection]:
        if self.receiver is None:
            self.receiver = asyncio.get_running_loop().create_future()
        return self.receiver

    async def handler(self, ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.endswith("/recv"):
            self._slot().set_result(ws)
            await ws.wait_closed()
            return
        receiver = await asyncio.wait_for(self._slot(), 60)
        self.receiver = None  # the next pair starts afresh
        await ws.send("go")
        back = asyncio.get_running_loop().create_task(self._pump(receiver, ws))
        try:
            await self._pump(ws, receiver)
        finally:
            back.cancel()

    @staticmethod
    async def _pump(source: ServerConnection, sink: ServerConnection) -> None:
        try:
            async for data in source:
                await sink.send(data)
        except ConnectionClosed:
            pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    relay = Relay()
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(
        relay.handler, "127.0.0.1", args.port, compression=None, max_size=MAX_RECORD_SIZE
    ):
        await stop


if __name__ == "__main__":
    asyncio.run(main())
