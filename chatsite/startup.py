"""The server's files in its data dir: made when the server is set up, never on import.

Importing the settings reads what exists and writes nothing, so a shell, ``manage.py
help`` or a test never leaves files in a data dir. The files are made:

- by ``manage.py migrate`` (``chatsite/management/commands/migrate.py``): the data dir
  and, unless ``DJANGO_SECRET_KEY`` is set, the generated secret key
  (:func:`keep_generated_secret_key`). ``make run`` migrates first, so the server it
  then starts reads that key;
- at server start (:func:`prepare_server_files`, from ``chatsite/asgi.py``): the same,
  plus the server key and the storage key, each 0600. A key file other users can read
  stops the server there, with the ``chmod`` to run;
- by ``manage.py server_key``: the server key.

Several processes starting at once on a fresh data dir agree on one secret key: the
first file written wins, and a server process whose own generated key lost the race
stops and asks to be started again (its channel-layer key came from the lost one).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from django.conf import settings

from chatproto import crypto_utils


class StartupError(Exception):
    """The data dir is not usable as it is; the message says what to do."""


def make_data_dir(path: Path) -> None:
    """Create the data dir, private to the server's user (0700), if it does not exist."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def publish_secret_key(path: Path, key: str) -> str:
    """Write ``key`` to ``path`` (0600) unless the file exists; return the key it holds.

    Never overwrites: a key other processes already use (sessions, signed cookies, the
    channel layer's encryption key) must not change under them.
    """
    with contextlib.suppress(FileExistsError):
        crypto_utils.write_secret_file(path, key.encode("ascii"))
    return crypto_utils.read_secret_file(path).decode("ascii").strip()


def keep_generated_secret_key() -> None:
    """Make the data dir and keep this process's generated secret key in it.

    Run by ``manage.py migrate``. Does nothing to the key when ``DJANGO_SECRET_KEY`` is
    set or the key was read from its file; if another process kept another key first,
    that one stays (this process is done with its own).
    """
    make_data_dir(Path(settings.DATA_DIR))
    if settings.CHAT_SECRET_KEY_GENERATED:
        publish_secret_key(Path(settings.CHAT_SECRET_KEY_FILE), settings.SECRET_KEY)


def check_secret_key() -> None:
    """Make sure the secret key this process uses is the one kept on disk.

    Raises :class:`StartupError` if another process wrote a different one first.
    """
    make_data_dir(Path(settings.DATA_DIR))
    if not settings.CHAT_SECRET_KEY_GENERATED:
        return
    path = Path(settings.CHAT_SECRET_KEY_FILE)
    if publish_secret_key(path, settings.SECRET_KEY) != settings.SECRET_KEY:
        raise StartupError(
            f"another process created {path} while this one started; start this one again "
            "to use it (or set DJANGO_SECRET_KEY for every process)"
        )


def prepare_server_files() -> None:
    """Before serving: make the data dir and its keys, and check they are private.

    Raises SystemExit with what to fix (e.g. the ``chmod`` to run), so that a bad key
    file stops the server at start rather than failing every connection later.
    """
    from chat.storage import StorageKeyError, storage_key

    try:
        check_secret_key()
        crypto_utils.load_private_key(settings.CHAT_SERVER_KEY)
        storage_key(create=True)
    except (crypto_utils.KeyFileError, StorageKeyError, StartupError) as exc:
        raise SystemExit(f"The chat server did not start: {exc}") from None
    except OSError as exc:  # a read-only or full disk, a data dir owned by someone else...
        where = exc.filename or settings.DATA_DIR
        raise SystemExit(
            f"The chat server did not start: cannot use {where} ({exc.strerror}); "
            "check that the data dir (CHAT_DATA_DIR) is writable by this user"
        ) from None
