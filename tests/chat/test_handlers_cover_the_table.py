"""Every request type of the protocol's table is served: the consumer looks its handler up
by name, so a type without one would fail at run time, not at import."""

from __future__ import annotations

import pytest

from chat.consumers import ChatConsumer
from chatproto.messages import REQUEST_FIELDS


@pytest.mark.parametrize("kind", sorted(k for k in REQUEST_FIELDS if not k.startswith("file_")))
def test_every_request_type_has_a_handler(kind):
    assert callable(getattr(ChatConsumer, f"handle_{kind}", None))
