"""Message bodies at rest: encrypted with a storage key that lives in the data dir.

The key (64 random bytes: AES-256 then HMAC-SHA256, for
:func:`chatproto.crypto_utils.encrypt_aes`) is generated on first use, mode 0600,
beside the database but never in it, so a database dump or backup alone reveals
no text. Losing the key loses every stored text: back it up with the database,
separately.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from chatproto import crypto_utils

STORAGE_KEY_SIZE = crypto_utils.STORAGE_KEY_SIZE


class StorageKeyError(Exception):
    """The storage key file is unusable; the message says what to do."""


def storage_key() -> bytes:
    """The storage key from ``settings.CHAT_STORAGE_KEY``, generated there on first use.

    Read from the file at each call (no process-wide cache: the runtime state rule), so a
    caller that handles many bodies makes one :class:`BodyCipher` and reuses it.
    :class:`StorageKeyError` says what to do with a file that is readable by others or is
    not a storage key.
    """
    path = Path(settings.CHAT_STORAGE_KEY)
    try:
        key = crypto_utils.read_or_create_secret_file(path, lambda: os.urandom(STORAGE_KEY_SIZE))
    except crypto_utils.KeyFileError as exc:
        raise StorageKeyError(str(exc)) from None
    if len(key) != STORAGE_KEY_SIZE:
        raise StorageKeyError(
            f"{path} is not a storage key ({STORAGE_KEY_SIZE} bytes); restore it from a backup"
        )
    return key


class BodyCipher:
    """Message bodies in and out of their stored form, with the storage key read once."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = storage_key() if key is None else key

    def encrypt(self, text: str) -> str:
        return crypto_utils.encrypt_aes(self._key, text.encode("utf-8"))

    def decrypt(self, token: str) -> str:
        """The text of a stored body. CryptoError if it was altered or the key is not the one."""
        return crypto_utils.decrypt_aes(self._key, token).decode("utf-8")


def encrypt_body(text: str) -> str:
    return BodyCipher().encrypt(text)


def decrypt_body(token: str) -> str:
    """The text of a stored body. CryptoError if it was altered or the key is not the one."""
    return BodyCipher().decrypt(token)
