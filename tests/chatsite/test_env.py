"""Settings from the environment: parsing, defaults, and what production values give."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from chatproto.crypto_utils import KeyFileError
from chatsite import env, startup
from tests.live_server import PROJECT_DIR, free_port, prepare, server_env


def test_database_url_for_postgresql_is_parsed_without_extra_dependencies(tmp_path):
    config = env.database_config(
        "postgres://chat:s%40cret@db.internal:5433/chatdb?sslmode=require", tmp_path
    )
    assert config == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "chatdb",
        "USER": "chat",
        "PASSWORD": "s@cret",
        "HOST": "db.internal",
        "PORT": "5433",
        "OPTIONS": {"sslmode": "require"},
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }


def test_database_defaults_to_sqlite_in_the_data_dir(tmp_path):
    config = env.database_config(None, tmp_path)
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "db.sqlite3")


@pytest.mark.parametrize(
    ("url", "advice"),
    [("mysql://x@y/z", "unsupported scheme"), ("postgres://x@y:5432/", "name the database")],
)
def test_bad_database_urls_say_what_to_fix(tmp_path, url, advice):
    with pytest.raises(env.ConfigError, match=advice):
        env.database_config(url, tmp_path)


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("true", True), ("0", False), ("No", False)]
)
def test_flags(raw, value):
    assert env.flag({"X": raw}, "X", not value) is value


def test_a_flag_that_is_neither_yes_nor_no_is_refused():
    with pytest.raises(env.ConfigError, match="use 1 or 0"):
        env.flag({"X": "maybe"}, "X", False)


def test_rates_are_count_per_seconds():
    assert env.rate({"R": "10/60"}, "R", (1, 1)) == (10, 60)
    with pytest.raises(env.ConfigError, match="COUNT/SECONDS"):
        env.rate({"R": "ten"}, "R", (1, 1))


def test_defaults_need_nothing_installed(tmp_path):
    read = env.read({"CHAT_DATA_DIR": str(tmp_path)})
    assert read.redis_url is None
    assert read.database["ENGINE"] == "django.db.backends.sqlite3"
    assert read.server_key_path == tmp_path / "server_key.pem"
    assert read.max_file_size == 4 * 1024**3
    assert read.debug is True and read.open_registration is True


def test_registration_is_closed_by_default_in_production(tmp_path):
    read = env.read({"CHAT_DATA_DIR": str(tmp_path), "DJANGO_DEBUG": "0"})
    assert read.open_registration is False
    read = env.read(
        {"CHAT_DATA_DIR": str(tmp_path), "DJANGO_DEBUG": "0", "CHAT_OPEN_REGISTRATION": "1"}
    )
    assert read.open_registration is True


def test_generated_secret_key_is_private_and_stable(tmp_path):
    first = env.read({"CHAT_DATA_DIR": str(tmp_path)})
    assert first.secret_key_generated and len(first.secret_key) >= 50
    assert not (tmp_path / "secret_key").exists()  # reading the environment writes nothing
    startup.publish_secret_key(first.secret_key_file, first.secret_key)
    second = env.read({"CHAT_DATA_DIR": str(tmp_path)})
    assert second.secret_key == first.secret_key and not second.secret_key_generated
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    assert (
        env.read({"CHAT_DATA_DIR": str(tmp_path), "DJANGO_SECRET_KEY": "given"}).secret_key
        == "given"
    )


def test_reading_the_environment_creates_no_data_dir(tmp_path):
    env.read({"CHAT_DATA_DIR": str(tmp_path / "data")})
    assert not (tmp_path / "data").exists()


def test_a_secret_key_file_others_can_read_is_refused_with_the_fix(tmp_path):
    startup.publish_secret_key(tmp_path / "secret_key", "k" * 60)
    (tmp_path / "secret_key").chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        env.read({"CHAT_DATA_DIR": str(tmp_path)})


def _settings_in_subprocess(environment: dict[str, str], expression: str):
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({expression}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env={**environment, "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_redis_url_switches_layer_and_cache_and_encrypts_layer_messages(tmp_path):
    environment = server_env(
        tmp_path, {"REDIS_URL": "redis://127.0.0.1:6379/3", "CHAT_REDIS_PREFIX": "acme"}
    )
    layer, cache, secret = _settings_in_subprocess(
        environment, "[s.CHANNEL_LAYERS['default'], s.CACHES['default'], s.SECRET_KEY]"
    )
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    (host,) = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://127.0.0.1:6379/3"
    # Longer than channels_redis's 5 s blocking pop, or idle consumers die (redis-py 8).
    assert host["socket_timeout"] > 5
    assert layer["CONFIG"]["prefix"].startswith("acme")
    (key,) = layer["CONFIG"]["symmetric_encryption_keys"]
    assert len(key) == 64 and secret not in key
    assert cache["BACKEND"] == "chatsite.redis_cache.ProcessRedisCache"
    assert cache["KEY_PREFIX"].startswith("acme")


def test_the_pub_sub_redis_layer_can_be_chosen_and_still_encrypts(tmp_path):
    environment = server_env(
        tmp_path, {"REDIS_URL": "redis://127.0.0.1:6379/3", "CHAT_REDIS_LAYER": "pubsub"}
    )
    (layer,) = _settings_in_subprocess(environment, "[s.CHANNEL_LAYERS['default']]")
    assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert layer["CONFIG"]["symmetric_encryption_keys"]
    assert ":" not in layer["CONFIG"]["prefix"]  # it is part of channel names


def test_an_unknown_redis_layer_says_which_exist(tmp_path):
    with pytest.raises(env.ConfigError, match="core, pubsub"):
        env.read({"CHAT_DATA_DIR": str(tmp_path), "CHAT_REDIS_LAYER": "kafka"})


def test_without_redis_the_layer_and_cache_are_in_process(tmp_path):
    layer, cache = _settings_in_subprocess(
        server_env(tmp_path), "[s.CHANNEL_LAYERS['default'], s.CACHES['default']]"
    )
    assert layer["BACKEND"] == "chat.layers.InMemoryChannelLayer"  # Channels' own, made cheaper
    assert cache["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_the_handshake_queue_is_250_per_rsa_thread_unless_set(tmp_path):
    threads, queue = _settings_in_subprocess(
        server_env(tmp_path), "[s.CHAT_HANDSHAKE_THREADS, s.CHAT_HANDSHAKE_QUEUE]"
    )
    assert queue == 250 * threads
    (queue,) = _settings_in_subprocess(
        server_env(tmp_path, {"CHAT_HANDSHAKE_QUEUE": "40"}), "[s.CHAT_HANDSHAKE_QUEUE]"
    )
    assert queue == 40
    with pytest.raises(env.ConfigError, match="CHAT_HANDSHAKE_QUEUE='-1': must be at least 0"):
        env.read({"CHAT_DATA_DIR": str(tmp_path), "CHAT_HANDSHAKE_QUEUE": "-1"})


def test_chatsite_then_daphne_come_first_so_runserver_serves_asgi(tmp_path):
    apps, asgi = _settings_in_subprocess(
        server_env(tmp_path), "[s.INSTALLED_APPS, s.ASGI_APPLICATION]"
    )
    assert apps[:2] == ["chatsite.apps.SiteConfig", "daphne"]
    assert asgi == "chatsite.asgi.application"


def test_check_deploy_gives_no_warning_with_production_values(tmp_path):
    environment = {
        **os.environ,
        "CHAT_DATA_DIR": str(tmp_path),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "q8Zr0v2-kT_5yWb1HnLxP3eUcMaJ7sDgFo9iQ4lE6tRzV0pNhY2wKjXbC5uG8mSd",
        "DJANGO_ALLOWED_HOSTS": "chat.example.org",
        "CHAT_BEHIND_TLS_PROXY": "1",
    }
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_runserver_serves_the_protocol_through_daphne(tmp_path):
    from tests.protocol_client.sync import connect

    environment = server_env(tmp_path)
    fingerprint = prepare(environment)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=PROJECT_DIR,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = None
        for _ in range(300):
            try:
                client = connect(
                    f"ws://127.0.0.1:{port}/ws/chat/", f"http://127.0.0.1:{port}", fingerprint
                )
                break
            except (ConnectionError, OSError):
                time.sleep(0.1)
        assert client is not None, "runserver did not start"
        assert client.greeting["type"] == "greeting"
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
