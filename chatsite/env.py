"""The one place that reads the environment.

Every setting an operator can change is an environment variable parsed here,
with a default that works on a development machine with nothing installed
(SQLite and an in-memory channel layer in ``var/``). ``docs/server.md`` lists
them. Bad values stop the server at start-up with a message saying what to fix,
rather than surfacing later as a traceback in a consumer.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from chatproto.crypto_utils import read_secret_file
from chatproto.limits import DEFAULT_MAX_FILE_SIZE, MAX_OPEN_TRANSFERS

PROJECT_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """An environment variable has a value we cannot use; the message says which and why."""


def flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off (any case)."""
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: use 1 or 0 (or true/false)")


def integer(
    environ: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r}: must be at most {maximum}")
    return value


def choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (any case); the first when unset."""
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r}: use one of {', '.join(choices)}")
    return raw


# channels_redis's layers, the first the default (docs/server.md says when to pick which).
REDIS_LAYERS = ("core", "pubsub")


def words(environ: Mapping[str, str], name: str, default: list[str]) -> list[str]:
    """A comma-separated list, blanks dropped."""
    raw = environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_config(url: str | None, data_dir: Path) -> dict:
    """Django's DATABASES['default'] from ``DATABASE_URL`` (SQLite in the data dir when unset).

    Accepted: ``postgres://user:password@host:port/name`` (also ``postgresql://``,
    with ``?sslmode=...`` style options passed to psycopg) and ``sqlite:///abs/path``.
    """
    if not url:
        return sqlite_config(data_dir / "db.sqlite3")
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise ConfigError(
                "DATABASE_URL: a sqlite URL needs a file, e.g. sqlite:////srv/chat.db"
            )
        return sqlite_config(Path(path))
    if parts.scheme in ("postgres", "postgresql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ConfigError(
                "DATABASE_URL: name the database, e.g. postgres://chat@127.0.0.1:5432/chat"
            )
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
            **PERSISTENT_CONNECTIONS,
        }
    raise ConfigError(
        f"DATABASE_URL: unsupported scheme {parts.scheme!r}; use postgres://... or sqlite:///..."
    )


# Each of the server's database threads keeps its connection (opening one costs more than
# most queries: a PostgreSQL backend process, SQLite's pragmas), checked before reuse after
# an error and replaced after ten minutes.
PERSISTENT_CONNECTIONS = {"CONN_MAX_AGE": 600, "CONN_HEALTH_CHECKS": True}


def sqlite_config(path: Path) -> dict:
    """SQLite tuned for one server process plus management commands beside it.

    WAL lets readers go on while one writer writes; IMMEDIATE transactions take
    the write lock at BEGIN, so two writers queue (up to ``timeout`` seconds)
    instead of failing with "database is locked" halfway through.
    """
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        **PERSISTENT_CONNECTIONS,
    }


def secret_key(environ: Mapping[str, str], path: Path) -> tuple[str, bool]:
    """``DJANGO_SECRET_KEY``, else the key kept in ``path``, else a new random key.

    Returns the key and whether it was generated just now. A generated key exists only
    in this process until :func:`chatsite.startup.publish_secret_key` writes it (after
    ``manage.py migrate``, or at server start): reading the settings writes nothing.
    Raises :class:`~chatproto.crypto_utils.KeyFileError` for a file others can read.
    """
    value = environ.get("DJANGO_SECRET_KEY", "").strip()
    if value:
        return value, False
    try:
        return read_secret_file(path).decode("ascii").strip(), False
    except FileNotFoundError:
        return new_secret_key(), True


def new_secret_key() -> str:
    """A random Django secret key (64 bytes of randomness, URL-safe text)."""
    return secrets.token_urlsafe(64)


@dataclass(frozen=True)
class Environment:
    """Everything the settings need from the environment, parsed and checked."""

    data_dir: Path
    debug: bool
    secret_key: str
    secret_key_file: Path
    secret_key_generated: bool  # not on disk yet: see secret_key()
    allowed_hosts: list[str]
    database: dict
    redis_url: str | None
    redis_prefix: str
    redis_layer: str
    server_key_path: Path
    storage_key_path: Path
    open_registration: bool
    server_name: str
    greeting_text: str
    max_file_size: int
    behind_tls_proxy: bool
    trusted_proxies: list[str]
    hsts_seconds: int
    hsts_include_subdomains: bool
    hsts_preload: bool
    heartbeat_seconds: int
    presence_interval: int
    handshake_rate: tuple[int, int]
    handshake_queue: int
    register_rate: tuple[int, int]
    login_account_rate: tuple[int, int]
    message_rate: tuple[int, int]
    request_rate: tuple[int, int]
    room_create_rate: tuple[int, int]
    max_sessions: int
    max_open_transfers: int
    device_lifetime_days: int
    require_2fa: bool
    rate_limited_close: tuple[int, int]
    log_level: str


def rate(environ: Mapping[str, str], name: str, default: tuple[int, int]) -> tuple[int, int]:
    """``COUNT/SECONDS``, e.g. ``120/60``."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        count, seconds = (int(part) for part in raw.split("/"))
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected COUNT/SECONDS, e.g. 120/60") from None
    if count < 1 or seconds < 1:
        raise ConfigError(f"{name}={raw!r}: both numbers must be at least 1")
    return count, seconds


def read(environ: Mapping[str, str] = os.environ) -> Environment:
    """Parse the environment; raises :class:`ConfigError` with advice on a bad value.

    Reads an existing secret key file but creates nothing: the data dir and its files
    are made by :mod:`chatsite.startup` (``manage.py migrate``, server start).
    """
    data_dir = Path(environ.get("CHAT_DATA_DIR") or PROJECT_DIR / "var").resolve()
    secret_key_file = data_dir / SECRET_KEY_FILE
    key, generated = secret_key(environ, secret_key_file)
    debug = flag(environ, "DJANGO_DEBUG", True)
    redis_url = environ.get("REDIS_URL", "").strip() or None
    if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"REDIS_URL={redis_url!r}: use redis://host:port/db (or rediss:// for TLS)"
        )
    return Environment(
        data_dir=data_dir,
        debug=debug,
        secret_key=key,
        secret_key_file=secret_key_file,
        secret_key_generated=generated,
        allowed_hosts=words(environ, "DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"]),
        database=database_config(environ.get("DATABASE_URL", "").strip() or None, data_dir),
        redis_url=redis_url,
        redis_prefix=environ.get("CHAT_REDIS_PREFIX", "").strip() or "chat",
        redis_layer=choice(environ, "CHAT_REDIS_LAYER", REDIS_LAYERS),
        server_key_path=Path(environ.get("CHAT_SERVER_KEY") or data_dir / "server_key.pem"),
        storage_key_path=data_dir / "storage.key",
        # Open registration on a development machine; an internet-facing server
        # (DJANGO_DEBUG=0) opens it only when the operator says so.
        open_registration=flag(environ, "CHAT_OPEN_REGISTRATION", debug),
        server_name=environ.get("CHAT_SERVER_NAME", "").strip() or "Chat",
        greeting_text=environ.get("CHAT_GREETING", "").strip(),
        max_file_size=integer(environ, "CHAT_MAX_FILE_SIZE", DEFAULT_MAX_FILE_SIZE),
        behind_tls_proxy=flag(environ, "CHAT_BEHIND_TLS_PROXY", False),
        trusted_proxies=words(environ, "CHAT_TRUSTED_PROXIES", []),
        hsts_seconds=integer(environ, "CHAT_HSTS_SECONDS", 31_536_000),
        hsts_include_subdomains=flag(environ, "CHAT_HSTS_INCLUDE_SUBDOMAINS", True),
        hsts_preload=flag(environ, "CHAT_HSTS_PRELOAD", True),
        heartbeat_seconds=integer(environ, "CHAT_HEARTBEAT_SECONDS", 30, minimum=1),
        # 0: the server chooses from its load (chat/presence_feed.py); 1 to 60 fixes it.
        presence_interval=integer(environ, "CHAT_PRESENCE_INTERVAL", 0, maximum=60),
        handshake_rate=rate(environ, "CHAT_HANDSHAKE_RATE", (300, 60)),
        # Key messages waiting for or in RSA work in a process; 0: 250 per RSA thread
        # (chatsite/settings.py; chat/workers.py says why).
        handshake_queue=integer(environ, "CHAT_HANDSHAKE_QUEUE", 0),
        register_rate=rate(environ, "CHAT_REGISTER_RATE", (20, 3600)),
        # Failed logins of one username from every address together (ASVS 2.2.1: 100 an hour).
        login_account_rate=rate(environ, "CHAT_LOGIN_ACCOUNT_RATE", (100, 3600)),
        # Abuse limits of a logged-in user (chat/limits.py says how each is counted).
        message_rate=rate(environ, "CHAT_MESSAGE_RATE", (30, 10)),
        request_rate=rate(environ, "CHAT_REQUEST_RATE", (200, 20)),
        room_create_rate=rate(environ, "CHAT_ROOM_CREATE_RATE", (20, 3600)),
        max_sessions=integer(environ, "CHAT_MAX_SESSIONS", 10, minimum=1),
        # PROTOCOL.md 3.3 names 8 as the limit: an operator may be stricter, never looser.
        max_open_transfers=integer(
            environ,
            "CHAT_MAX_OPEN_TRANSFERS",
            MAX_OPEN_TRANSFERS,
            minimum=1,
            maximum=MAX_OPEN_TRANSFERS,
        ),
        rate_limited_close=rate(environ, "CHAT_RATE_LIMITED_CLOSE", (10, 60)),
        # A remembered device's token stops working after this many days unused (3.4).
        device_lifetime_days=integer(environ, "CHAT_DEVICE_LIFETIME_DAYS", 90, minimum=1),
        require_2fa=flag(environ, "CHAT_REQUIRE_2FA", False),
        log_level=(environ.get("CHAT_LOG_LEVEL", "").strip() or "INFO").upper(),
    )
