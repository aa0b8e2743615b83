"""The pickle key: 32 random bytes in ``e2e_pickle.key`` (mode 0600) in the client's folder.

Every vodozemac pickle in the store is encrypted under it, so the store alone reads nothing.
Created once, atomically (two clients starting at once end up with the same key); a file
that others can read, or that holds no 32-byte key, is refused with what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from chatproto.crypto_utils import KeyFileError, read_or_create_secret_file

from .errors import StoreError

PICKLE_KEY_FILE = "e2e_pickle.key"
PICKLE_KEY_BYTES = 32


def load_or_create_pickle_key(folder: Path) -> bytes:
    """The pickle key of the client whose folder is ``folder``, made on first use."""
    path = folder / PICKLE_KEY_FILE
    try:
        key = read_or_create_secret_file(path, lambda: os.urandom(PICKLE_KEY_BYTES))
    except KeyFileError as error:
        raise StoreError(str(error)) from None
    if len(key) != PICKLE_KEY_BYTES:
        raise StoreError(
            f"{path} does not hold an end-to-end pickle key; restore the right file "
            "(without it this device's encrypted messages cannot be read)"
        )
    return key
