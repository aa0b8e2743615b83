"""A well-formed ``e2e`` message object (docs/protocol.md 4.5) for tests whose subject is
not encryption: private messages and private rooms refuse ``text`` (``e2e_required``).

The server does not decrypt: it checks the object's shape and that ``device`` is the
sending session's device (a session logged in with ``remember``, or resumed), stores it
as it came and sends it back unchanged. So a test checks that the same object arrives
where it used to check the text; ``note`` makes each message's ciphertext its own.
"""

from __future__ import annotations

from chatproto.unpadded_b64 import encode as encode_b64


def e2e_body(device: str, note: str = "opaque megolm bytes") -> dict[str, str]:
    """A ``megolm.v1`` object from ``device`` whose ciphertext is ``note``'s bytes (opaque
    to the server, which never reads it)."""
    return {
        "algorithm": "megolm.v1",
        "sender_key": encode_b64(bytes(32)),
        "device": device,
        "session_id": encode_b64(bytes(range(32))),
        "ciphertext": encode_b64(note.encode()),
    }
