"""Secrets at start-up (issue 7, item 8): a key file others can read stops the server at once.

A server that starts with ``server_key.pem`` or ``storage.key`` readable by
other users, or by its group, would only fail later, on the first connection
or the first message, in a log nobody reads. It must refuse to start instead,
saying which file and what to run. (``manage.py check --deploy`` with
production settings is ``tests/chatsite/test_env.py::
test_check_deploy_gives_no_warning_with_production_values``.)
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.live_server import LiveServer, free_port, prepare, server_env

pytestmark = pytest.mark.slow  # every test starts daphne


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A data dir migrated once, with its server key and storage key (both 0600)."""
    directory = tmp_path_factory.mktemp("prepared") / "data"
    directory.mkdir(mode=0o700)
    fingerprint = prepare(server_env(directory))
    (directory / "storage.key").write_bytes(os.urandom(64))
    (directory / "storage.key").chmod(0o600)
    return directory, fingerprint


@pytest.fixture
def data_dir(prepared, tmp_path):
    """A copy of the prepared data dir (modes kept), and its environment."""
    template, fingerprint = prepared
    directory = tmp_path / "data"
    shutil.copytree(template, directory)
    return directory, server_env(directory), fingerprint


def start(data_dir) -> tuple[LiveServer, str | None]:
    """Try to start daphne; the server if it listens, and daphne's output if it exited."""
    directory, environment, fingerprint = data_dir
    server = LiveServer(directory, environment, fingerprint, free_port())
    try:
        server.start()
    except RuntimeError as exited:
        return server, str(exited)
    return server, None


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("server_key.pem", 0o644),
        ("server_key.pem", 0o640),  # the group is "other users" too
        ("storage.key", 0o644),
        ("secret_key", 0o604),
    ],
)
def test_a_key_file_others_can_read_stops_the_server_with_the_fix(data_dir, name, mode):
    directory = data_dir[0]
    key = directory / name
    key.chmod(mode)
    server, output = start(data_dir)
    try:
        assert output is not None, f"the server started with {name} at mode {mode:o}"
        assert f"chmod 600 {key}" in output, output
    finally:
        server.stop()


def test_with_private_key_files_the_server_starts(data_dir):
    server, output = start(data_dir)
    try:
        assert output is None, output
    finally:
        server.stop()
