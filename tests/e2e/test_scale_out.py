"""Two server processes on Redis and PostgreSQL: what only a cluster can get wrong."""

from __future__ import annotations

import pytest

from tests.e2e.deployments import scaled_out

pytestmark = [pytest.mark.services, pytest.mark.slow]  # starts daphne processes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with scaled_out(tmp_path_factory.mktemp("cluster")) as deployment:
        yield deployment


def test_users_of_a_dead_process_go_offline_and_the_others_are_told(cluster):
    _alice, alice_client = cluster.register("alice", on=0)
    bob, _bob_client = cluster.register("bob", on=1)
    roster = alice_client.roster.until(lambda roster: bob in roster.online)
    cluster.servers[1].kill()  # no disconnect handler runs: only the heartbeat can tell
    # Three missed heartbeats (1 s each in tests), then the next live heartbeat reaps (or
    # reconciles) and the users gone with the process come as ``offline`` in a delta.
    roster.until(lambda roster: bob not in roster.online)
    assert bob in roster.all
    assert bob not in alice_client.request({"type": "users"})["online"]
    cluster.servers[1].start()
    bob_again = cluster.login(bob, on=1)
    assert bob in bob_again.request({"type": "users"})["online"]
