"""A raw ASGI WebSocket app on daphne, no Channels: fan-out inside the process.

Every accepted connection's ``send`` callable is kept in a set; a ``send``
request is answered with ``ack`` and its ``message`` serialized once and handed
to every connection's ``send``. With no ``login`` sent, a connection is simply
accepted and held, which is what "a bare daphne WebSocket connection" costs in
the idle-sessions scenario.

Run: ``daphne -b 127.0.0.1 -p P bench.baselines.raw_asgi:application``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from bench.baselines.common import accept_send

Send = Callable[[dict[str, Any]], Awaitable[None]]
_members: set[Send] = set()


async def application(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    name = ""
    try:
        while True:
            event = await receive()
            kind = event["type"]
            if kind == "websocket.connect":
                await send({"type": "websocket.accept"})
                _members.add(send)
            elif kind == "websocket.disconnect":
                return
            elif kind == "websocket.receive":
                request = json.loads(event.get("text") or event.get("bytes"))
                if request.get("type") == "send":
                    ack, message = accept_send(request, name)
                    if ack is not None:
                        await send({"type": "websocket.send", "text": json.dumps(ack)})
                    out = {
                        "type": "websocket.send",
                        "text": json.dumps(message, separators=(",", ":")),
                    }
                    for member in list(_members):
                        await member(out)
                elif request.get("type") == "login":
                    name = request["username"]
                    ok = {"type": "login_ok", "ref": request.get("id"), "user": {"username": name}}
                    await send({"type": "websocket.send", "text": json.dumps(ok)})
    finally:
        _members.discard(send)
