"""Message bodies at rest: encrypted with a storage key that lives in the data dir.

The key (64 random bytes: AES-256 then HMAC-SHA256, for
:func:`chatproto.crypto_utils.encrypt_aes`) is generated at the server's first start, mode 0600,
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


def storage_key(*, create: bool = False) -> bytes:
    """The storage key from ``settings.CHAT_STORAGE_KEY``.

    Only the server's start (:func:`chatsite.startup.prepare_server_files`, ``create=True``)
    makes a missing key: one that goes missing while the server runs is an error to
    fix, never silently replaced, since a new key could not read what the old one
    stored. Read at each call (no process-wide cache), so a caller that handles many
    bodies makes one :class:`BodyCipher`. :class:`StorageKeyError` says what to do.
    """
    path = Path(settings.CHAT_STORAGE_KEY)
    try:
        if create:
            key = crypto_utils.read_or_create_secret_file(
                path, lambda: os.urandom(STORAGE_KEY_SIZE)
            )
        else:
            key = crypto_utils.read_secret_file(path)
    except FileNotFoundError:
        raise StorageKeyError(
            f"the storage key {path} is missing; stored messages cannot be read without it: "
            "restore it from your backup and start the server again"
        ) from None
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
