"""Loaded by a test server's interpreter at start-up (``PYTHONPATH``): records every
plaintext that the server process decrypts or encrypts, to ``CHAT_SNOOP_FILE`` + pid.

Only the snoop test (tests/snoop/test_snoop.py) puts this folder on a server's path; the
product never loads it. What is wrapped is every place where plaintext exists in the
server's hands, whatever carries it:

- the record layer (``CbcHmacKeys.decrypt`` for what arrives, ``seal`` for what leaves,
  and the plain ``aes_cbc_*`` functions);
- the at-rest cipher (``encrypt_aes``/``decrypt_aes``: message bodies, queued messages);
- the channel layer's serializer (``msgpack.packb``/``unpackb``: what crosses Redis,
  before channels_redis would encrypt it).
"""

from __future__ import annotations

import os

_PATH = os.environ.get("CHAT_SNOOP_FILE")


def _record(kind: str, data: object) -> None:
    if isinstance(data, memoryview):
        data = data.tobytes()
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, bytes | bytearray):
        data = repr(data).encode("utf-8", "replace")
    line = kind.encode() + b" " + bytes(data).replace(b"\n", b"\\n") + b"\n"
    fd = os.open(f"{_PATH}.{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _wrap_result(kind: str, function):  # what a function returns is the plaintext
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        _record(kind, result)
        return result

    return wrapped


def _wrap_argument(kind: str, function, index: int):  # the argument is the plaintext
    def wrapped(*args, **kwargs):
        _record(kind, args[index] if len(args) > index else kwargs)
        return function(*args, **kwargs)

    return wrapped


if _PATH:
    import sys

    # Runs before ``python -m`` puts the project on the path: put it there for chatproto.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    import msgpack

    from chatproto import crypto_utils

    keys = crypto_utils.CbcHmacKeys
    keys.decrypt = _wrap_result("record-in", keys.decrypt)
    keys.seal = _wrap_argument("record-out", keys.seal, 3)
    crypto_utils.aes_cbc_decrypt = _wrap_result("at-rest-cbc-in", crypto_utils.aes_cbc_decrypt)
    crypto_utils.aes_cbc_encrypt = _wrap_argument(
        "at-rest-cbc-out", crypto_utils.aes_cbc_encrypt, 2
    )
    crypto_utils.decrypt_aes = _wrap_result("at-rest-read", crypto_utils.decrypt_aes)
    crypto_utils.encrypt_aes = _wrap_argument("at-rest-write", crypto_utils.encrypt_aes, 1)
    msgpack.packb = _wrap_result("layer-out", msgpack.packb)
    msgpack.unpackb = _wrap_argument("layer-in", msgpack.unpackb, 0)
