"""Importing the settings creates nothing; migrate and server start make the data dir's files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from chatsite import startup
from tests.live_server import PROJECT_DIR, manage, server_env


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_importing_the_settings_creates_nothing(tmp_path):
    data_dir = tmp_path / "data"
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECRET_KEY and s.CHAT_SERVER_KEY and s.CHAT_STORAGE_KEY and 'ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env={**server_env(data_dir), "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "ok"
    assert not data_dir.exists()


def test_migrate_keeps_the_generated_secret_key_for_the_next_processes(tmp_path):
    data_dir = tmp_path / "data"
    environment = server_env(data_dir)
    manage(environment, "migrate", "--noinput", "-v", "0")
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "secret_key") == 0o600
    kept = (data_dir / "secret_key").read_text().strip()
    # The next process reads it rather than generating its own.
    output = manage(
        environment,
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings as s; print(s.SECRET_KEY, s.CHAT_SECRET_KEY_GENERATED)",
    )
    assert output.split() == [kept, "False"]


def test_server_start_makes_the_data_dir_and_its_keys_private(settings, tmp_path):
    data_dir = tmp_path / "data"
    settings.DATA_DIR = data_dir
    settings.SECRET_KEY = "a generated key that is not on disk yet"
    settings.CHAT_SECRET_KEY_FILE = data_dir / "secret_key"
    settings.CHAT_SECRET_KEY_GENERATED = True
    settings.CHAT_SERVER_KEY = data_dir / "server_key.pem"
    settings.CHAT_STORAGE_KEY = data_dir / "storage.key"
    startup.prepare_server_files()
    assert mode(data_dir) == 0o700
    for name in ("secret_key", "server_key.pem", "storage.key"):
        assert mode(data_dir / name) == 0o600, name
    assert (data_dir / "secret_key").read_text() == settings.SECRET_KEY


def test_a_data_dir_that_cannot_be_written_stops_the_server_with_what_to_check(settings, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir should be")
    settings.DATA_DIR = blocker / "data"
    settings.CHAT_SECRET_KEY_GENERATED = False
    settings.CHAT_SERVER_KEY = blocker / "data" / "server_key.pem"
    settings.CHAT_STORAGE_KEY = blocker / "data" / "storage.key"
    with pytest.raises(SystemExit, match="CHAT_DATA_DIR") as stopped:
        startup.prepare_server_files()
    assert "Traceback" not in str(stopped.value)


def test_a_server_whose_generated_key_lost_the_race_stops_and_says_to_start_again(
    settings, tmp_path
):
    startup.publish_secret_key(tmp_path / "secret_key", "the key another process wrote first")
    settings.DATA_DIR = tmp_path
    settings.SECRET_KEY = "this process's own generated key"
    settings.CHAT_SECRET_KEY_FILE = tmp_path / "secret_key"
    settings.CHAT_SECRET_KEY_GENERATED = True
    with pytest.raises(SystemExit, match="start this one again"):
        startup.prepare_server_files()


def test_a_given_secret_key_is_never_written(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.CHAT_SECRET_KEY_FILE = tmp_path / "secret_key"
    settings.CHAT_SECRET_KEY_GENERATED = False
    startup.keep_generated_secret_key()
    assert not (tmp_path / "secret_key").exists()
