"""End-to-end encryption's shared formats (docs/protocol.md section 4).

What every client and the server must compute byte for byte lives here, so that
a client written from the protocol alone can check its output against the
vectors. Olm and Megolm themselves are vodozemac's, on the clients only.
"""

from __future__ import annotations

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
