"""Hostile pushes fed to :meth:`E2EEngine.receive`: whatever a server sends, no exception
comes out, and an encrypted message of the wrong shape is shown as not verifiable (4.9)."""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatproto.e2e import conversation_id
from tk_client.e2e import room_keys
from tk_client.e2e.engine import E2EEngine, NotShown
from tk_client.e2e.megolm import Undecryptable

from .helpers import make_user, published

ROOM = conversation_id(room="plans")
E2E_FIELDS = ("algorithm", "sender_key", "device", "session_id", "ciphertext")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@cache
def engine() -> tuple[E2EEngine, dict[str, str]]:
    """alice's engine, holding her own session for the room (so that some pushes reach a
    real Megolm session), and that session's ``e2e`` fields."""
    alice = make_user("alice")
    group, _ = alice.groups.outbound_for(ROOM, 0.0, frozenset({"alice"}), set())
    room_keys.own_inbound(group, alice.device, alice.groups)
    sealed = alice.groups.encrypt(group, "hi", "alice", "DEV1", alice.device.curve25519)
    counter = iter(range(1_000_000))
    alice_engine = E2EEngine(alice, new_id=lambda: f"r{next(counter)}")
    (query,) = [r for r in alice_engine.login().requests if r["type"] == "keys_query"]
    own = {"user_key": None, "devices": [published(alice).to_wire()], "version": 1}
    alice_engine.receive({"type": "keys", "ref": query["id"], "users": {"alice": own}}, 0.0)
    assert alice_engine.directory.device("alice", "DEV1") is not None  # a known sender
    return alice_engine, sealed


def sealed_like(real: dict[str, str]) -> st.SearchStrategy[Any]:
    """``e2e`` values: any JSON, objects with the right names and any values, objects of
    strings, and the real session's fields with some replaced."""
    named = st.fixed_dictionaries({name: json_values for name in E2E_FIELDS})
    strings = st.dictionaries(st.sampled_from(E2E_FIELDS), st.text(max_size=12))
    changes = st.dictionaries(st.sampled_from(E2E_FIELDS), json_values | st.text(), min_size=1)
    tampered = changes.filter(lambda c: any(real[k] != v for k, v in c.items())).map(
        lambda c: {**real, **c}
    )
    return json_values.filter(lambda v: v is not None) | named | strings | tampered


@st.composite
def encrypted_pushes(draw: st.DrawFn) -> dict[str, Any]:
    _, real = engine()
    push: dict[str, Any] = {"type": draw(st.sampled_from(["message", "private"]))}
    for name in ("from", "to", "room", "msg_id", "ts"):
        if draw(st.booleans()):
            push[name] = draw(st.sampled_from(["alice", "bob", "plans", ""]) | json_values)
    push["e2e"] = draw(sealed_like(real))
    return push


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encrypted_pushes())
def test_a_malformed_encrypted_message_is_shown_as_not_verifiable_never_raised(push):
    alice, _ = engine()

    out = alice.receive(push, now=1.0)

    assert len(out.events) == 1 and isinstance(out.events[0], NotShown)


def test_an_e2e_that_is_not_an_object_of_strings_is_not_verifiable():
    alice, real = engine()
    push = {"type": "message", "room": "plans", "from": "alice", "msg_id": 7}

    for sealed in ([real], "text", {**real, "device": 3}, {k: real[k] for k in E2E_FIELDS[:3]}):
        (event,) = alice.receive({**push, "e2e": sealed}, now=1.0).events
        assert event.reason is Undecryptable.NOT_VERIFIED


other_pushes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "keys",
                "keys_claimed",
                "keys_uploaded",
                "device_list_changes",
                "devices_changed",
                "to_device",
                "error",
            ]
        )
    },
    optional={
        name: json_values | st.sampled_from(["alice", "DEV1", "r1"])
        for name in ("ref", "users", "keys", "one_time_keys", "version", "seq", "from")
    }
    | {"from_device": json_values, "body": json_values},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(other_pushes)
def test_no_section_4_push_of_the_wrong_shape_raises(push):
    alice, _ = engine()

    alice.receive(push, now=1.0)


olm_bodies = st.fixed_dictionaries(
    {},
    optional={
        "algorithm": st.just("olm.v1") | json_values,
        "sender_key": st.text(max_size=44) | json_values,
        "type": st.sampled_from([0, 1]) | json_values,
        "ciphertext": st.text(max_size=60) | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(olm_bodies, st.integers(min_value=1))
def test_a_to_device_body_of_the_wrong_shape_from_a_known_device_is_dropped(body, seq):
    alice, _ = engine()
    push = {"type": "to_device", "seq": seq, "from": "alice", "from_device": "DEV1"}

    out = alice.receive({**push, "body": body}, now=1.0)

    assert out.events == []


@cache
def tracking_engine() -> E2EEngine:
    """An engine that tracks its own user (so that ``devices_changed`` makes it ask)."""
    alice = make_user("alice")
    counter = iter(range(1_000_000))
    alice_engine = E2EEngine(alice, new_id=lambda: f"t{next(counter)}")
    (query,) = [r for r in alice_engine.login().requests if r["type"] == "keys_query"]
    alice_engine.receive({"type": "keys", "ref": query["id"], "users": {}}, 0.0)
    return alice_engine


device_like = st.fixed_dictionaries(
    {},
    optional={
        name: json_values | st.text(max_size=44)
        for name in ("user", "device", "curve25519", "ed25519", "signatures", "version")
    },
)
user_entries = json_values | st.fixed_dictionaries(
    {},
    optional={
        "user_key": json_values | device_like,
        "devices": json_values | st.lists(json_values | device_like, max_size=3),
        "version": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_entries)
def test_a_keys_answer_of_the_wrong_shape_for_an_asked_user_does_not_raise(entry):
    alice = tracking_engine()
    changed = {"type": "devices_changed", "users": ["alice"], "version": 1}
    (query,) = alice.receive(changed, now=1.0).requests

    alice.receive({"type": "keys", "ref": query["id"], "users": {"alice": entry}}, now=1.0)
