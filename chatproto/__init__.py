"""The chat protocol core: cryptography, records, handshake and message validation.

Sans-I/O in the manner of h11 and websockets' ``Protocol``: nothing here opens a
socket, starts a thread or awaits anything. Callers feed in the text and binary
WebSocket messages they received and get back events and bytes to send, so the
Channels consumer, the Tk client and the terminal client drive the same code.

Only the standard library and ``cryptography`` may be imported here
(``tests/chatproto/test_imports.py`` enforces it). The wire format is
``docs/protocol.md``.
"""

PROTOCOL_VERSION = 1
