"""The tutorial consumer: group_add on connect, group_send per message, json.dumps per recipient."""

from __future__ import annotations

import json

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from bench.baselines.common import accept_send

ROOM = "lobby"


class ChatConsumer(AsyncWebsocketConsumer):
    name = ""

    async def connect(self) -> None:
        await self.channel_layer.group_add(ROOM, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(ROOM, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request = json.loads(text_data or bytes_data or b"{}")
        kind = request.get("type")
        if kind == "send":
            ack, message = accept_send(request, self.name)
            if ack is not None:
                await self.send(text_data=json.dumps(ack))
            await self.channel_layer.group_send(ROOM, {"type": "chat.message", "message": message})
        elif kind == "login":
            self.name = request["username"]
            ok = {"type": "login_ok", "ref": request.get("id"), "user": {"username": self.name}}
            await self.send(text_data=json.dumps(ok))

    async def chat_message(self, event: dict) -> None:
        await self.send(text_data=json.dumps(event["message"]))


class NoHopChatConsumer(ChatConsumer):
    """The same, without the thread hop Channels 4.3 makes before every event."""

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
