"""A bare ``websockets`` broadcast server: the ceiling a Python server can reach here.

``--mode plain``: JSON text both ways, one ``json.dumps`` per room message and
``websockets.broadcast`` to every connection.

``--mode sealed``: the product's handshake (:mod:`chatproto.handshake`) and
record layer: the JSON plaintext is encoded once per room message and sealed
per recipient with that connection's :class:`~chatproto.records.RecordSealer`
(AES-256-CBC + HMAC-SHA256, fresh IV). Login accepts any name: there is no
password check and no database, which is the point of a baseline.

Run: ``python -m bench.baselines.ws_broadcast --port P --mode sealed --key KEYFILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from bench.baselines.common import accept_send
from chatproto import crypto_utils
from chatproto.framing import FileChunk, decode_plaintext, encode_json
from chatproto.handshake import ServerHandshake
from chatproto.limits import MAX_RECORD_SIZE
from chatproto.records import RecordOpener, RecordSealer

PING_INTERVAL = 20  # as daphne's default, so that idle figures compare


class Plain:
    def __init__(self) -> None:
        self.connections: set[ServerConnection] = set()

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.add(ws)
        name = ""
        try:
            async for data in ws:
                request = json.loads(data)
                kind = request.get("type")
                if kind == "send":
                    ack, message = accept_send(request, name)
                    if ack is not None:
                        await ws.send(json.dumps(ack))
                    broadcast(self.connections, json.dumps(message, separators=(",", ":")))
                elif kind == "login":
                    name = request["username"]
                    await ws.send(json.dumps(_login_ok(request)))
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "ref": request.get("id")}))
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(ws)


class Sealed:
    def __init__(self, key_path: str) -> None:
        self.private_key = crypto_utils.load_private_key(key_path)
        self.sealers: dict[ServerConnection, RecordSealer] = {}

    async def handler(self, ws: ServerConnection) -> None:
        handshake = ServerHandshake(self.private_key)
        await ws.send(handshake.hello())
        try:
            keys = handshake.receive_key(await asyncio.wait_for(ws.recv(), 10))
        except Exception:
            await ws.close(4000)
            return
        sealer = RecordSealer(keys.s2c_enc, keys.s2c_mac)
        opener = RecordOpener(keys.c2s_enc, keys.c2s_mac)
        greeting = {
            "type": "greeting",
            "server": "bench",
            "text": "baseline",
            "registration": False,
            "limits": {"max_text": 4000, "max_file_size": 0},
        }
        await ws.send(sealer.seal(encode_json(greeting)))
        name = ""
        try:
            async for data in ws:
                if isinstance(data, str):
                    break  # after the handshake every message is a binary record
                request = decode_plaintext(opener.open(data))
                if isinstance(request, FileChunk):
                    continue  # no file transfers in this baseline
                kind = request.get("type")
                if kind == "send":
                    ack, message = accept_send(request, name)
                    if ack is not None:
                        await ws.send(sealer.seal(encode_json(ack)))
                    plaintext = encode_json(message)  # once per room message
                    for peer, peer_sealer in list(self.sealers.items()):
                        broadcast((peer,), peer_sealer.seal(plaintext))
                elif kind == "login":
                    name = request["username"]
                    self.sealers[ws] = sealer  # logged in: now a room member
                    await ws.send(sealer.seal(encode_json(_login_ok(request))))
                elif kind == "ping":
                    pong = {"type": "pong", "ref": request.get("id")}
                    await ws.send(sealer.seal(encode_json(pong)))
        except ConnectionClosed:
            pass
        except Exception:
            await ws.close(4002)
        finally:
            self.sealers.pop(ws, None)


def _login_ok(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "login_ok",
        "ref": request.get("id"),
        "user": {"username": request.get("username", "")},
        "rooms": [],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("plain", "sealed"), default="plain")
    parser.add_argument("--key", help="the server's RSA key file (sealed mode)")
    args = parser.parse_args()
    app = Sealed(args.key) if args.mode == "sealed" else Plain()
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(
        app.handler,
        "127.0.0.1",
        args.port,
        compression=None,
        max_size=MAX_RECORD_SIZE,
        ping_interval=PING_INTERVAL,
        backlog=4096,
    ):
        await stop


if __name__ == "__main__":
    asyncio.run(main())
