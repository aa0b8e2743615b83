"""The one secret-file writer (chatproto.crypto_utils), as the server and the clients use it."""

from __future__ import annotations

import os
import stat

import pytest

from chatproto import crypto_utils


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_secret_file_in_a_new_folder_makes_the_folder_private(tmp_path):
    path = tmp_path / "new" / "secret"
    crypto_utils.write_secret_file(path, b"x")
    assert mode_of(tmp_path / "new") == 0o700
    assert mode_of(path) == 0o600


def test_replace_publishes_new_content_with_mode_0600_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "settings.json"
    crypto_utils.write_secret_file(path, b"first", replace=True)
    crypto_utils.write_secret_file(path, b"second", replace=True)
    assert path.read_bytes() == b"second"
    assert mode_of(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]


def test_a_failed_write_leaves_no_temporary_behind(tmp_path):
    path = tmp_path / "secret"
    crypto_utils.write_secret_file(path, b"first")
    with pytest.raises(FileExistsError):
        crypto_utils.write_secret_file(path, b"second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_read_or_create_makes_the_secret_once(tmp_path):
    path = tmp_path / "storage.key"
    made = []

    def make() -> bytes:
        made.append(1)
        return os.urandom(64)

    first = crypto_utils.read_or_create_secret_file(path, make)
    second = crypto_utils.read_or_create_secret_file(path, make)
    assert first == second and len(first) == 64 and made == [1]
    assert mode_of(path) == 0o600


def test_read_or_create_refuses_a_file_others_can_read(tmp_path):
    path = tmp_path / "storage.key"
    crypto_utils.read_or_create_secret_file(path, lambda: b"k" * 64)
    path.chmod(0o644)
    with pytest.raises(crypto_utils.KeyFileError, match="chmod 600"):
        crypto_utils.read_or_create_secret_file(path, lambda: b"other")


@pytest.mark.parametrize("replace", [False, True])
def test_publishing_syncs_the_file_and_then_its_folder(tmp_path, monkeypatch, replace):
    """A key is durable only once the directory entry that names it is on disk too."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    crypto_utils.write_secret_file(tmp_path / "key", b"k", replace=replace)
    assert synced == ["file", "folder"]
