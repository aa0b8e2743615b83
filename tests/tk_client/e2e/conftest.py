"""The link under test and its fake session, for every link test (``test_link*.py``)."""

import pytest

from tk_client.e2e.link import E2ELink

from .test_link import SERVER, FakeSession


@pytest.fixture
def session():
    return FakeSession()


@pytest.fixture
def link(session, tmp_path):
    return E2ELink.open(session, tmp_path, SERVER, "alice", "DEV1", clock=lambda: 1000.0)
