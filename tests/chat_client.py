"""Moved: the blocking test client is :mod:`tests.protocol_client.sync`.

Kept only for ``tests/chatsite/test_env.py`` (another engineer's file), which
imports ``connect`` from here; delete this module once it imports
``tests.protocol_client.sync`` instead.
"""

from tests.protocol_client.sync import SyncClient, connect, open_socket

__all__ = ["SyncClient", "connect", "open_socket"]
