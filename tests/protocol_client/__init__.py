"""The one protocol client of the tests: a sans-I/O core and thin transports around it.

- :mod:`.core`: :class:`~.core.ClientProtocol`, the handshake (with the pin),
  sealing and opening records through chatproto's ``ClientConnection``,
  request ids, and the inbox of answers and pushes. No I/O.
- :mod:`.sync`: a blocking client on a real socket (websocket-client, a reader
  thread): end-to-end and hardening tests against daphne.
- :mod:`.aio`: an asyncio client on a real socket (``websockets``): many
  sessions in one process.
- :mod:`.inprocess`: Channels' ``WebsocketCommunicator``: the real ASGI
  application in the test's own process and settings (consumer and fuzz tests).
- :mod:`.e2e_body`: a well-formed ``e2e`` object for a private message or a
  private room (the server refuses ``text`` there), from a transport's
  ``device`` (set by a login with ``remember``, or a resume).

Every transport offers the same words: ``request`` (an id, then its answer),
``send``, ``recv`` / ``recv_chunk`` / ``recv_item`` (the next message / file
chunk / either, in arrival order),
``find(kind)`` (skipping others), ``expect(kind)`` (the very next one),
``login``, ``close``; each is a context manager, so a failing assert still
closes its session. The load test's lean client (``tests/hardening/lean_client.py``)
keeps its own WebSocket framing and shares the handshake and record opening.
Import the submodule you need: this package imports none of them (the core
must load without websocket libraries or Django).
"""
