"""Unpadded standard base64, the spelling of every key, signature and ciphertext on the wire.

vodozemac prints keys this way (``to_base64()``); bytes that we encode ourselves (Olm
ciphertexts, user-key signatures) must look the same, and decoding accepts only that.
"""

from __future__ import annotations

import base64
import binascii


def encode_b64(data: bytes) -> str:
    """``data`` as unpadded standard base64."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def decode_b64(text: str) -> bytes:
    """Bytes of unpadded (or padded) standard base64; ValueError on anything else."""
    if not isinstance(text, str) or len(text) % 4 == 1:
        raise ValueError("not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
