"""End-to-end encryption's shared formats (docs/protocol.md section 4).

What every client and the server must compute byte for byte lives here, so that
a client written from the protocol alone can check its output against the
vectors. Olm and Megolm themselves are vodozemac's, on the clients only.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, UTF-8 as it is.

    One spelling per value, so that a signer and a verifier who rebuilt the same
    object from different JSON texts agree on what was signed.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def decode_b64(value: Any) -> bytes | None:
    """The bytes of unpadded standard base64 (vodozemac's ``to_base64()``), else None.

    Only the one spelling of each byte string is accepted: no padding, no
    whitespace, no stray bits in the last character, so a key compares equal to
    itself however it travelled.
    """
    if not isinstance(value, str) or not value.isascii() or len(value) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if encode_b64(raw) == value else None


def encode_b64(raw: bytes) -> str:
    """Unpadded standard base64, as vodozemac prints keys and signatures."""
    return base64.b64encode(raw).decode("ascii").rstrip("=")
