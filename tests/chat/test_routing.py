"""The WebSocket application: the Origin check and the one route, in one callable."""

from __future__ import annotations

from typing import Any

import pytest

from chat.routing import ChatWebSocketApplication
from tests.protocol_client.inprocess import ORIGIN, communicator


def scope(path: str = "/ws/chat/", origin: bytes | None = ORIGIN) -> dict[str, Any]:
    headers = [(b"origin", origin)] if origin is not None else []
    return {"type": "websocket", "path": path, "headers": headers}


async def test_an_allowed_origin_on_the_chat_path_reaches_the_consumer_with_its_own_scope(runtime):
    app = ChatWebSocketApplication(runtime)
    reached: list[dict[str, Any]] = []

    async def consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope)

    app.consumer = consumer
    connection = scope()
    await app(connection, None, None)
    assert len(reached) == 1 and reached[0] is connection  # nothing copied, nothing kept between


@pytest.mark.parametrize(
    "refused",
    [scope(origin=b"https://evil.example"), scope(origin=None), scope(path="/ws/other/")],
    ids=["foreign origin", "no origin", "another path"],
)
async def test_what_the_chat_path_does_not_serve_goes_through_channels_checks(runtime, refused):
    app = ChatWebSocketApplication(runtime)
    seen: list[dict[str, Any]] = []

    async def consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    app.consumer = consumer
    passed_on: list[dict[str, Any]] = []
    channels_pair = app.checked

    class Watched:
        """Channels' pair with its own origin rules, noting what it is given."""

        def valid_origin(self, origin: Any) -> bool:
            return bool(channels_pair.valid_origin(origin))

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            passed_on.append(scope)

    app.checked = Watched()
    await app(refused, None, None)
    assert seen == [] and passed_on == [refused]


async def test_a_connection_to_another_path_is_refused_as_channels_refuses_it(chat_settings):
    comm = communicator()
    comm.scope["path"] = "/ws/other/"
    with pytest.raises(ValueError, match="No route found"):
        await comm.connect()
