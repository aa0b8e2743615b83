"""Baseline servers: what the product's figures are compared with, in the same run.

- :mod:`.ws_broadcast` ``--mode plain``: a bare ``websockets`` broadcast, JSON text,
  no encryption: the ceiling of a Python WebSocket server on this machine.
- :mod:`.ws_broadcast` ``--mode sealed``: the same with the product's handshake
  and record layer (:class:`chatproto.records.RecordSealer` per connection).
- :mod:`.channels_site`: the Channels tutorial design (``group_add`` on connect,
  ``group_send`` per message) on daphne, no encryption.
- :mod:`.raw_asgi`: a raw ASGI app on daphne fanning out inside the process (no
  Channels); it also stands for "a bare daphne WebSocket connection" when idle.
- :mod:`.ws_relay`: a bare ``websockets`` relay for the file benchmark.

Plain baselines speak the product's message shapes (``send`` -> ``ack`` +
``message`` to every connection, the sender's included) as JSON text, so one
load generator drives them all.
"""
