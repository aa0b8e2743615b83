"""Unpadded standard base64, the spelling of every key and signature in section 4.

vodozemac prints keys and signatures this way (``to_base64()``): the standard
alphabet without ``=``. Decoding is strict so that one value has one spelling:
padding, white space, another alphabet or non-zero leftover bits are refused,
as PROTOCOL.md 1.3 refuses them for padded base64.
"""

from __future__ import annotations

import base64
import re

_ALPHABET = re.compile(r"[A-Za-z0-9+/]*")


def encode(data: bytes) -> str:
    """Standard base64 of ``data`` without the trailing ``=``."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def decode(text: str) -> bytes:
    """The bytes of an unpadded base64 text; ValueError for any other spelling."""
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded standard base64")
    raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    if encode(raw) != text:  # leftover bits set: a second spelling of the same bytes
        raise ValueError("not unpadded standard base64")
    return raw
