"""What the plain baselines share: the message shapes and the server-wide message id."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

_ids = itertools.count(1)


def timestamp() -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``, as the protocol writes ``ts``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def accept_send(request: dict[str, Any], sender: str) -> tuple[dict[str, Any] | None, dict]:
    """The ``ack`` (None when the request had no id) and the ``message`` for a ``send``."""
    msg_id = next(_ids)
    ts = timestamp()
    ack = (
        {"type": "ack", "ref": request["id"], "msg_id": msg_id, "ts": ts}
        if "id" in request
        else None
    )
    message = {
        "type": "message",
        "msg_id": msg_id,
        "room": request.get("room", "lobby"),
        "from": sender,
        "text": request["text"],
        "ts": ts,
    }
    return ack, message
