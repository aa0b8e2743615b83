"""The fuzz arena: the chat tests' settings, throttles opened wide, three accounts, one loop."""

from __future__ import annotations

import pytest

from tests.chat.conftest import chat_settings, make_user, server_key_file  # noqa: F401
from tests.fuzz.harness import PRIVATE_ROOM, Arena

WIDE_OPEN = 10**9


@pytest.fixture
def arena(chat_settings, make_user):  # noqa: F811
    """An :class:`Arena` with ``fuzzer``, ``bystander`` and ``witness`` (password ``pw``), and
    the private room ``hideout`` of ``fuzzer`` and ``bystander`` (where text is refused).

    Throttles and abuse limits are opened wide (they have tests of their own):
    thousands of sessions of one user come from few addresses and send thousands
    of requests, and what the fuzzer judges is the answer to each request itself.
    """
    chat_settings.CHAT_HANDSHAKE_RATE = (WIDE_OPEN, 60)
    chat_settings.CHAT_LOGIN_THROTTLE_USER_ADDRESS = (WIDE_OPEN, 900)
    chat_settings.CHAT_LOGIN_THROTTLE_ADDRESS = (WIDE_OPEN, 900)
    chat_settings.CHAT_REGISTER_THROTTLE_ADDRESS = (WIDE_OPEN, 3600)
    # The abuse limits of chat/limits.py: the fuzzer is one user sending thousands of requests.
    chat_settings.CHAT_MESSAGE_RATE = (WIDE_OPEN, 1)
    chat_settings.CHAT_REQUEST_RATE = (WIDE_OPEN, 1)
    chat_settings.CHAT_ROOM_CREATE_RATE = (WIDE_OPEN, 3600)
    chat_settings.CHAT_MAX_SESSIONS = WIDE_OPEN
    from chat import services

    fuzzer, *_ = [make_user(name) for name in ("fuzzer", "bystander", "witness")]
    services.create_room(fuzzer, PRIVATE_ROOM, private=True, members=["bystander"])
    running = Arena()
    running.start()
    try:
        yield running
    finally:
        running.stop()
