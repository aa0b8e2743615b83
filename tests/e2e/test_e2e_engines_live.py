"""The client's end-to-end engine against the real server (docs/protocol.md section 4).

alice's device and bob's two devices each run :class:`tk_client.e2e.engine.E2EEngine`
behind a real logged-in session with ``remember`` (the in-process consumer and channel
layer). Only glue here: the first device's identity set-up of 4.2 (upload, publish the
user key, upload again signed) and bob's second device's approval (the user key shared
as a finished SAS would), then the engines do the rest. alice sends a private message
and a private-room message; both of bob's devices show them, and the server's stored
messages hold no plaintext.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from chat import services
from chat.models import Message, OneTimeKey, ToDeviceMessage
from chat.storage import BodyCipher
from chatproto.e2e import conversation_id
from tests.protocol_client.inprocess import InProcessClient, open_session
from tk_client.e2e.engine import STALE_IDENTITY_NOTICE, E2EEngine, Event, Notice, Shown
from tk_client.e2e.identity import UserIdentity
from tk_client.e2e.store import CryptoStore

pytestmark = pytest.mark.django_db(transaction=True)

NOW = 1_000.0
PM_SECRET = "the vault code is 4-8-15-16"
ROOM_SECRET = "meet at the old mill at dawn"


class Device:
    """One device: a logged-in session and its engine, with what the engine showed."""

    def __init__(self, session: InProcessClient, store: CryptoStore) -> None:
        self.session, self.store = session, store
        ids = itertools.count(1)
        self.engine = E2EEngine(store, new_id=lambda: f"e2e-{next(ids)}")
        self.events: list[Event] = []
        self.errors: list[dict[str, Any]] = []  # every error answer the server gave

    async def send(self, requests: list[dict[str, Any]]) -> None:
        for request in requests:
            await self.session.send(request)

    def shown(self) -> list[tuple[str, str, str]]:
        return [(e.conversation, e.sender, e.text) for e in self.events if isinstance(e, Shown)]


async def logged_in(username: str, name: str) -> tuple[InProcessClient, str]:
    session = await open_session()
    answer = await session.login(username, remember=name)
    return session, answer["device"]


async def first_device(username: str) -> Device:
    """A user's first device, set up as 4.2 says: device keys, the user key published,
    then the engine's login (which uploads the keys again, signed by the user key)."""
    session, device_id = await logged_in(username, "laptop")
    store = CryptoStore.create(username, device_id, NOW)
    unsigned = await session.request(
        {"type": "keys_upload", "device_keys": store.device.device_keys().to_wire()}
    )
    assert unsigned["type"] == "keys_uploaded", unsigned
    identity = UserIdentity.generate(username)
    published = await session.request(
        {
            "type": "user_key_publish",
            "user_key": identity.published_by(store.device).to_wire(),
            "reset": False,
        }
    )
    assert published["type"] == "ok", published
    store.identity = identity
    device = Device(session, store)
    await device.send(device.engine.login().requests)
    return device


async def approved_device(first: Device, name: str) -> Device:
    """Another device of ``first``'s user, holding the user key as after an approval (4.7)."""
    user = first.store.device.user
    session, device_id = await logged_in(user, name)
    store = CryptoStore.create(user, device_id, NOW)
    identity = first.store.identity
    assert identity is not None
    share = identity.share("txn-approval", store.device.device_keys())
    store.identity = UserIdentity.from_share(share, user, identity.published_by(first.store.device))
    device = Device(session, store)
    await device.send(device.engine.login().requests)
    return device


async def exchange(devices: list[Device]) -> None:
    """One round: each device's engine gets what its session received, and what it asks
    is sent (one device at a time: the test database takes one writer)."""
    for device in devices:
        for message in await device.session.drain(quiet=0.05):
            if message.get("type") == "error":
                device.errors.append(message)
            out = device.engine.receive(message, NOW)
            device.events.extend(out.events)
            await device.send(out.requests)


async def run_until(devices: list[Device], done: Callable[[], bool], rounds: int = 60) -> None:
    """Exchange rounds until ``done``; fail with what the engines showed if it never is."""
    for _ in range(rounds):
        if done():
            return
        await exchange(devices)
    if not done():
        pytest.fail(f"not done; the engines showed {[d.events for d in devices]}")


async def test_bobs_two_devices_read_alices_encrypted_messages_and_the_server_stores_none(
    make_user, run_sync
):
    alice_user = await run_sync(make_user, "alice")
    await run_sync(make_user, "bob")
    await run_sync(services.create_room, alice_user, "plans", private=True, members=["bob"])
    devices: list[Device] = []
    for setup in (
        lambda: first_device("alice"),
        lambda: first_device("bob"),
        lambda: approved_device(devices[1], "phone"),
    ):
        devices.append(await setup())
        for _ in range(3):  # its keys published, device lists fetched
            await exchange(devices)
    alice, bob_laptop, bob_phone = devices

    pm = conversation_id(pm=("alice", "bob"))
    room = conversation_id(room="plans")
    await alice.send(alice.engine.encrypt_for(pm, ["bob"], PM_SECRET, NOW).requests)
    await alice.send(alice.engine.encrypt_for(room, ["bob"], ROOM_SECRET, NOW).requests)
    expected = {(pm, "alice", PM_SECRET), (room, "alice", ROOM_SECRET)}
    await run_until(
        devices, lambda: all(expected <= set(d.shown()) for d in (bob_laptop, bob_phone))
    )

    stored = await run_sync(lambda: list(Message.objects.filter(sender=alice_user, e2e=True)))
    assert len(stored) == 2
    cipher = BodyCipher()
    for message in stored:
        at_rest = await run_sync(cipher.decrypt, message.body_encrypted)
        for secret in (PM_SECRET, ROOM_SECRET):
            assert secret not in at_rest and secret not in message.body_encrypted
    queued = await run_sync(lambda: list(ToDeviceMessage.objects.all()))
    for row in queued:
        assert PM_SECRET not in await run_sync(cipher.decrypt, row.body_encrypted)
    for device in devices:
        await device.session.close()


async def test_logging_in_again_and_again_keeps_about_fifty_one_time_keys(make_user, run_sync):
    await run_sync(make_user, "alice")
    alice = await first_device("alice")
    await exchange([alice])
    for _ in range(3):  # three more logins, as reconnects make them
        await alice.send(alice.engine.login().requests)
        for _ in range(3):
            await exchange([alice])

    assert alice.errors == []
    device = alice.store.device.device
    left = await run_sync(lambda: OneTimeKey.objects.filter(device__device_id=device).count())
    assert left == 50
    await alice.session.close()


async def test_a_device_whose_identity_was_reset_elsewhere_uploads_unsigned_keys(
    make_user, run_sync
):
    await run_sync(make_user, "bob")
    laptop = await first_device("bob")
    for _ in range(3):  # one device at a time: the test database takes one writer
        await exchange([laptop])
    phone = await approved_device(laptop, "phone")
    for _ in range(3):
        await exchange([laptop, phone])
    identity = UserIdentity.generate("bob", version=2)  # the phone resets the identity
    reset = await phone.session.request(
        {
            "type": "user_key_publish",
            "user_key": identity.published_by(phone.store.device).to_wire(),
            "reset": True,
        }
    )
    assert reset["type"] == "ok", reset

    await run_until([laptop], lambda: laptop.store.identity is None)
    for _ in range(3):
        await exchange([laptop])

    assert laptop.errors == []
    assert STALE_IDENTITY_NOTICE in [e.text for e in laptop.events if isinstance(e, Notice)]
    await laptop.send(laptop.engine.login().requests)  # and the next login is not refused
    for _ in range(3):
        await exchange([laptop])
    assert laptop.errors == []
    for device in (laptop, phone):
        await device.session.close()
