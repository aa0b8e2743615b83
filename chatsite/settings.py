"""Django settings for the chat server.

Nothing here reads ``os.environ`` directly: :mod:`chatsite.env` parses every
variable (``docs/server.md`` has the table). Nothing here creates a file either: the
data dir and its keys are made by :mod:`chatsite.startup`. The defaults serve a development
machine with nothing installed: SQLite, the in-memory channel layer and a
local-memory cache, all data under ``var/``. Production sets ``DJANGO_DEBUG=0``,
``DJANGO_ALLOWED_HOSTS``, ``CHAT_BEHIND_TLS_PROXY=1``, ``REDIS_URL`` and
``DATABASE_URL``.
"""

from __future__ import annotations

import os
from typing import Any

from chatproto import crypto_utils
from chatproto.limits import MAX_RECORD_SIZE, MAX_TEXT
from chatproto.transfer import OFFER_TIMEOUT_SECONDS

from . import env

ENV = env.read()

BASE_DIR = env.PROJECT_DIR
DATA_DIR = ENV.data_dir
DEBUG = ENV.debug
# DJANGO_SECRET_KEY, else $CHAT_DATA_DIR/secret_key; else a key generated in this process and
# written to that file by `manage.py migrate` or at server start (chatsite/startup.py):
# importing the settings writes nothing.
SECRET_KEY = ENV.secret_key
CHAT_SECRET_KEY_FILE = ENV.secret_key_file
CHAT_SECRET_KEY_GENERATED = ENV.secret_key_generated
ALLOWED_HOSTS = ENV.allowed_hosts

INSTALLED_APPS = [
    # First, then daphne: `manage.py runserver` is chatsite's, daphne's ASGI server (HTTP and
    # WebSocket) with the product's keepalive (chatsite/keepalive.py).
    "chatsite.apps.SiteConfig",  # its migrate also makes the data dir and keeps the secret key
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_otp",  # two-factor login (TOTP), PROTOCOL.md 3.4; accounts/two_factor.py
    "django_otp.plugins.otp_totp",
    "accounts.apps.AccountsConfig",
    "chat.apps.ChatConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": ENV.database}
# Threads for blocking work (chat/workers.py): service calls (PostgreSQL serves several at once;
# SQLite one writer at a time), password hashing (Argon2 is multi-threaded itself: few at once),
# RSA decryption of handshakes.
_CORES = os.cpu_count() or 2
CHAT_DATABASE_THREADS = 1 if "sqlite" in ENV.database["ENGINE"] else min(8, 2 * _CORES)
CHAT_PASSWORD_THREADS = max(1, _CORES // 2)
CHAT_HANDSHAKE_THREADS = min(4, _CORES)
# Key messages waiting for or in RSA work; past it, close 4008 (chat/workers.py, "The handshake
# queue"). 250 per thread: at ~2.5 ms a decryption, and two threads doing 1.4 times one, a full
# queue is done in about 0.9 s, a tenth of the 10 s key deadline.
HANDSHAKE_QUEUE_PER_THREAD = 250
CHAT_HANDSHAKE_QUEUE = ENV.handshake_queue or HANDSHAKE_QUEUE_PER_THREAD * CHAT_HANDSHAKE_THREADS
# Handshakes with server-side work under way (set-up to hello, key to greeting) at which new
# connections wait in the kernel's backlog (chat/workers.py, "Pacing new connections"). One per
# RSA thread: two per thread did less for the ping in 3 rounds. In the full run of 381206f the
# ping during a handshake flood was 2.04x idle, against 6.2x before (bench/NOTES.md).
CHAT_HANDSHAKES_IN_WORK = CHAT_HANDSHAKE_THREADS
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    # Older hashes still verify and are upgraded to Argon2 at the next login.
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

# --- channel layer and cache: one process, or many sharing Redis -----------------------------
# A layer message not received within this many seconds is dropped by the layer (Channels'
# default is 60). A process that far behind would silently miss live deliveries of messages
# that were stored and acknowledged (most likely what lost one delivery when
# tests/hardening/test_load.py kept 240 messages in flight on a crowded machine). The queues
# stay bounded by their capacities, so waiting longer costs only memory already allowed.
LAYER_EXPIRY_SECONDS = 300
if ENV.redis_url:
    _LAYER_CONFIG = {
        # redis-py 8 times socket reads out after 5 s by default, exactly as long as
        # channels_redis blocks in BZPOPMIN waiting for a message: an idle session's
        # receive then fails and its consumer dies (redis-py#4091). Wait longer.
        # redis-py 8 caps a pool at 100 connections and raises instead of waiting; a
        # process with a few hundred sessions needs more at once (see test_load.py).
        "hosts": [{"address": ENV.redis_url, "socket_timeout": 30, "max_connections": 2000}],
        # Layer messages carry message texts between processes: encrypt them,
        # with a key of their own derived from the secret key.
        "symmetric_encryption_keys": [
            crypto_utils.hkdf_sha256(
                SECRET_KEY.encode("utf-8"), b"", b"chat channel layer", 32
            ).hex()
        ],
    }
    if ENV.redis_layer == "pubsub":
        # Redis Pub/Sub (CHAT_REDIS_LAYER=pubsub): one PUBLISH per group message, delivered
        # once to each process subscribed to the group, and less CPU per delivery than the
        # core layer (bench/NOTES.md). Nothing is stored: what is published while Redis is
        # down is lost for live delivery, and sessions live on without knowing (the core
        # layer's consumers fail, so clients reconnect and catch up). Hence not the default.
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                # Channel names embed the prefix: keep them to Channels' characters.
                "CONFIG": {**_LAYER_CONFIG, "prefix": f"{ENV.redis_prefix}.layer."},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    **_LAYER_CONFIG,
                    "prefix": f"{ENV.redis_prefix}:layer",
                    "capacity": 1000,
                    # channels_redis keeps one queue per process for all its process-local
                    # channels, and the process channel of chat.sessions carries every room
                    # message: room for bursts (each message expires after `expiry` s anyway).
                    "channel_capacity": {"specific.*": 20_000},
                    "expiry": LAYER_EXPIRY_SECONDS,
                },
            }
        }
    CACHES: dict[str, dict[str, Any]] = {
        "default": {
            # One connection pool per process, not per session (chatsite/redis_cache.py).
            "BACKEND": "chatsite.redis_cache.ProcessRedisCache",
            "LOCATION": ENV.redis_url,
            "KEY_PREFIX": f"{ENV.redis_prefix}:cache",
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.InMemoryChannelLayer",
            # The process channel (chat.sessions) carries every room message: room for bursts.
            "CONFIG": {
                "capacity": 1000,
                "channel_capacity": {"specific.*": 20_000},
                "expiry": LAYER_EXPIRY_SECONDS,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            # Presence and throttling entries must not be culled at the default 300.
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }

# --- HTTPS behind a TLS-terminating proxy ------------------------------------------------------
if ENV.behind_tls_proxy:
    # The proxy must set X-Forwarded-Proto itself and strip any client-sent copy.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = ENV.hsts_seconds
    SECURE_HSTS_INCLUDE_SUBDOMAINS = ENV.hsts_include_subdomains
    SECURE_HSTS_PRELOAD = ENV.hsts_preload
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- the chat server -------------------------------------------------------------------------
CHAT_SERVER_KEY = ENV.server_key_path
CHAT_STORAGE_KEY = ENV.storage_key_path
CHAT_OPEN_REGISTRATION = ENV.open_registration
CHAT_SERVER_NAME = ENV.server_name
CHAT_GREETING = ENV.greeting_text or f"Welcome to {ENV.server_name}."
CHAT_MAX_TEXT = MAX_TEXT
CHAT_MAX_FILE_SIZE = ENV.max_file_size
# File transfers: an offer past a user's open transfers (8, PROTOCOL.md 3.3; an operator may
# lower it) is rate_limited; an offer unanswered this long is expired (a setting for the tests).
CHAT_MAX_OPEN_TRANSFERS = ENV.max_open_transfers
CHAT_TRANSFER_OFFER_TIMEOUT = OFFER_TIMEOUT_SECONDS
CHAT_TRUSTED_PROXIES = ENV.trusted_proxies
# New WebSocket connections per client address: (count, seconds), then close 4008.
CHAT_HANDSHAKE_RATE = ENV.handshake_rate
# Failed logins (count, seconds) per (username, address) and per address; a sliding window.
# Neither locks a username out for every address: only the pair is keyed on the name.
CHAT_LOGIN_THROTTLE_USER_ADDRESS = (10, 900)
CHAT_LOGIN_THROTTLE_ADDRESS = (100, 900)
# Failed logins (count, seconds) per username from every address together, counted strictly
# (never more in any such interval). It does not apply where the username logged in
# successfully within CHAT_LOGIN_KNOWN_ADDRESS_SECONDS (an IPv6 address: its /64), so an
# attack from elsewhere cannot lock the owner out on their usual network (accounts/services.py).
CHAT_LOGIN_THROTTLE_ACCOUNT = ENV.login_account_rate
CHAT_LOGIN_KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600
# Accounts registered over the protocol per address.
CHAT_REGISTER_THROTTLE_ADDRESS = ENV.register_rate
# Abuse limits of a logged-in user (chat/limits.py): (count, seconds) rates, answered
# rate_limited; the CHAT_RATE_LIMITED_CLOSE[0]-th rate_limited answer within [1] seconds closes
# the session with 4008.
CHAT_MESSAGE_RATE = ENV.message_rate  # send and pm: bursts of count, then count per seconds
CHAT_REQUEST_RATE = ENV.request_rate  # every request but a transfer's steps, likewise
CHAT_ROOM_CREATE_RATE = ENV.room_create_rate  # rooms created, sliding window
CHAT_MAX_SESSIONS = ENV.max_sessions  # logged-in sessions of one user, every process together
CHAT_RATE_LIMITED_CLOSE = ENV.rate_limited_close
# Presence: each process refreshes its heartbeat every CHAT_HEARTBEAT_SECONDS; its sessions
# stop counting as online 3 heartbeats after it stops.
CHAT_HEARTBEAT_SECONDS = ENV.heartbeat_seconds
# Seconds between presence deltas to a session (PROTOCOL.md 3.2): 0 lets each process choose
# from its number of sessions (docs/server.md, Presence); 1 to 60 fixes it (tests).
CHAT_PRESENCE_INTERVAL = ENV.presence_interval
# Remembered devices (PROTOCOL.md 3.4): a token unused for this many days stops working.
CHAT_DEVICE_LIFETIME_DAYS = ENV.device_lifetime_days
# Every account must turn on two-factor login before it may do anything else after login.
CHAT_REQUIRE_2FA = ENV.require_2fa
# django-otp (TOTP, accounts/two_factor.py). Its own throttle (a delay doubling after each
# wrong code, kept per TOTP device) would refuse even a correct code for a while after
# failures, an answer the protocol does not have; every wrong code already counts as a failed
# login in our login throttles (per username and address, per address, per account), which
# are the protocol's. No drift learning: the window stays one step either way of the
# server's clock (PROTOCOL.md 3.4), not wherever a past code moved it. The admin never shows
# a TOTP secret (accounts/admin.py also unregisters django-otp's TOTP admin).
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_TOTP_SYNC = False
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# daphne's default WebSocket message limit is 1 MiB, the protocol's record limit.
CHAT_MAX_RECORD_SIZE = MAX_RECORD_SIZE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "chat": {"handlers": ["console"], "level": ENV.log_level, "propagate": False},
        "accounts": {"handlers": ["console"], "level": ENV.log_level, "propagate": False},
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
