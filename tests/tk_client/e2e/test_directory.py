from tk_client.e2e.directory import DeviceDirectory, UserKeys

from .helpers import add_device, make_user, published


def keys_entry(*stores, user_key=None):
    return {"user_key": user_key, "devices": [published(s).to_wire() for s in stores]}


def test_only_valid_devices_of_the_user_asked_for_are_kept():
    bob, mallory = make_user("bob"), make_user("mallory")
    forged = published(bob).to_wire() | {"curve25519": published(mallory).curve25519}

    keys = UserKeys.from_wire("bob", {"devices": [published(mallory).to_wire(), forged]})

    assert keys.devices == {}


def test_only_devices_the_current_user_key_signed_count_as_signed():
    bob = make_user("bob")
    planted = add_device(bob, "PLANTED", approved=False)
    user_key = bob.identity.published_by(bob.device).to_wire()

    keys = UserKeys.from_wire("bob", keys_entry(bob, planted, user_key=user_key))

    assert [d.device for d in keys.signed_devices()] == ["DEV1"]
    assert set(keys.devices) == {"DEV1", "PLANTED"}


def test_a_change_makes_a_tracked_list_stale_until_the_next_answer():
    bob = make_user("bob")
    directory = DeviceDirectory()
    assert directory.needs_query(["bob"]) == {"bob"}
    directory.take("bob", UserKeys.from_wire("bob", keys_entry(bob)))
    assert directory.needs_query(["bob"]) == set()

    assert directory.mark_changed(["bob", "stranger"]) == {"bob"}
    assert directory.needs_query(["bob"]) == {"bob"}
    gone = directory.take("bob", UserKeys.from_wire("bob", keys_entry()))

    assert gone == {("bob", "DEV1")}
    assert directory.needs_query(["bob"]) == set()
