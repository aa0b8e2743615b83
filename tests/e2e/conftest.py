"""The ``deployment`` fixture: every end-to-end test runs on one process and on two."""

from __future__ import annotations

import pytest

# The chat tests' settings, for the in-process sessions of test_e2e_engines_live.py.
from tests.chat.conftest import chat_settings, make_user, run_sync, server_key_file  # noqa: F401
from tests.e2e.deployments import Deployment, scaled_out, single_process


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("single", id="one-process"),
        pytest.param("scaled", id="two-processes-redis-postgres", marks=pytest.mark.services),
    ],
)
def deployment(request, tmp_path_factory) -> Deployment:
    data_dir = tmp_path_factory.mktemp("deployment")
    factory = single_process if request.param == "single" else scaled_out
    with factory(data_dir) as running:
        yield running


@pytest.fixture(autouse=True)
def _close_clients(request):
    yield
    if "deployment" in request.fixturenames:
        request.getfixturevalue("deployment").close_clients()
