"""The presence rule without Tk: a ``users`` snapshot, then ``presence`` deltas in order."""

from __future__ import annotations

import random

import pytest

from tk_client.presence import (
    Delta,
    PresenceError,
    Status,
    UserDirectory,
    parse_presence,
    parse_snapshot,
)

ONLINE, OFFLINE = Status.ONLINE, Status.OFFLINE


def directory(online: list[str], everyone: list[str], interval: int | None = 2) -> UserDirectory:
    users = UserDirectory()
    message = {"type": "users", "online": online, "all": everyone}
    if interval is not None:
        message["presence_interval"] = interval
    users.replace(parse_snapshot(message))
    return users


def presence(**lists: list[str]) -> Delta:
    return parse_presence(
        {"type": "presence", **{k: lists.get(k, []) for k in Delta.__annotations__}}
    )


def test_a_snapshot_fills_an_empty_directory_in_display_order():
    users = UserDirectory()
    change = users.replace(
        parse_snapshot(
            {
                "type": "users",
                "online": ["bob"],
                "all": ["Carol", "alice", "bob"],
                "presence_interval": 5,
            }
        )
    )
    assert users.ordered == ["alice", "bob", "Carol"]
    assert users.by_presence() == (["bob"], ["alice", "Carol"])
    assert users.interval == 5
    assert change.full
    assert dict(change.moved) == {
        "alice": (None, OFFLINE),
        "bob": (None, ONLINE),
        "Carol": (None, OFFLINE),
    }


def test_a_delta_names_only_the_users_that_changed():
    users = directory(["alice"], ["alice", "bob", "carol"])
    change = users.apply(presence(online=["bob"], offline=["alice"]))
    assert users.by_presence() == (["bob"], ["alice", "carol"])
    assert dict(change.moved) == {"alice": (ONLINE, OFFLINE), "bob": (OFFLINE, ONLINE)}
    assert change.went(OFFLINE, ONLINE) == ["bob"]


def test_added_joins_all_and_removed_leaves_all_and_online():
    users = directory(["alice", "bob"], ["alice", "bob"])
    change = users.apply(presence(added=["dave"], removed=["bob"]))
    assert users.ordered == ["alice", "dave"]
    assert users.online == {"alice"}
    assert dict(change.moved) == {"bob": (ONLINE, None), "dave": (None, OFFLINE)}


def test_the_lists_apply_in_the_protocols_order():
    # added, then removed, then online, then offline (PROTOCOL.md 3.2).
    users = directory([], ["alice"])
    users.apply(presence(added=["erin"], online=["erin"]))
    assert users.by_presence() == (["erin"], ["alice"])
    users.apply(presence(removed=["erin"], online=["erin"]))
    assert "erin" in users.online  # online comes after removed


def test_a_new_snapshot_replaces_everything_and_reports_the_difference():
    users = directory(["alice"], ["alice", "bob"])
    change = users.replace(
        parse_snapshot({"type": "users", "online": ["bob"], "all": ["bob", "carol"]})
    )
    assert users.ordered == ["bob", "carol"]
    assert users.interval is None  # a revision 1 server's push: a snapshot all the same
    assert dict(change.moved) == {
        "alice": (ONLINE, None),
        "bob": (OFFLINE, ONLINE),
        "carol": (None, OFFLINE),
    }


def test_a_snapshot_equal_to_the_state_changes_nothing():
    users = directory(["alice"], ["alice", "bob"])
    change = users.replace(
        parse_snapshot({"type": "users", "online": ["alice"], "all": ["alice", "bob"]})
    )
    assert not change


@pytest.mark.parametrize(
    "message",
    [
        {"online": ["a"], "offline": [], "added": []},  # a list missing
        {"online": [], "offline": [], "added": [], "removed": []},  # all four empty
        {"online": ["b", "a"], "offline": [], "added": [], "removed": []},  # not sorted
        {"online": "alice", "offline": [], "added": [], "removed": []},
        {"online": [7], "offline": [], "added": [], "removed": []},
        {"online": ["no spaces"], "offline": [], "added": [], "removed": []},
    ],
)
def test_a_malformed_presence_is_refused(message):
    with pytest.raises(PresenceError):
        parse_presence({"type": "presence", **message})


@pytest.mark.parametrize("interval", [0, 61, 1.5, "5", True])
def test_a_snapshot_with_a_bad_interval_is_refused(interval):
    with pytest.raises(PresenceError):
        parse_snapshot({"type": "users", "online": [], "all": [], "presence_interval": interval})


def test_deltas_of_a_random_storm_end_equal_to_the_final_snapshot():
    rng = random.Random(11)
    names = [f"user{i:03d}" for i in range(300)]
    online: set[str] = set()
    everyone = set(names[:200])
    users = directory([], sorted(everyone))
    for _ in range(200):
        before_online, before_all = set(online), set(everyone)
        for name in rng.sample(names, 40):
            roll = rng.random()
            if roll < 0.1 and name not in everyone:
                everyone.add(name)
            elif roll < 0.15 and name in everyone:
                everyone.discard(name)
                online.discard(name)
            elif name in everyone:
                online ^= {name}
        delta = {
            "added": sorted(everyone - before_all),
            "removed": sorted(before_all - everyone),
            "online": sorted(online - before_online),
            "offline": sorted((before_online - online) & everyone),
        }
        if any(delta.values()):
            users.apply(parse_presence({"type": "presence", **delta}))
    final = directory(sorted(online), sorted(everyone))
    assert users.ordered == final.ordered
    assert users.online == final.online
