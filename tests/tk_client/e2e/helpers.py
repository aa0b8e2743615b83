"""Devices that talk through plain Python calls: what the server would relay, handed over.

``make_user`` gives a user's first device with its user key; ``add_device`` a second
device of the same user, approved (signed) or not; ``send`` carries a to-device payload
over Olm, claiming a one-time key the first time as a client would.
"""

from __future__ import annotations

from typing import Any

from tk_client.e2e import room_keys
from tk_client.e2e.identity import UserIdentity
from tk_client.e2e.keys import ClaimedKey, DeviceKeys
from tk_client.e2e.megolm import OutboundGroup
from tk_client.e2e.olm import OlmPlaintext
from tk_client.e2e.store import CryptoStore

DAY = 24 * 3600.0


def make_user(name: str, device: str = "DEV1", now: float = 0.0) -> CryptoStore:
    store = CryptoStore.create(name, device, now)
    store.identity = UserIdentity.generate(name)
    return store


def add_device(
    first: CryptoStore, device: str, *, approved: bool = True, now: float = 0.0
) -> CryptoStore:
    store = CryptoStore.create(first.device.user, device, now)
    if approved:
        assert first.identity is not None
        share = first.identity.share("txn-1", store.device.device_keys())
        published_key = first.identity.published_by(first.device)
        store.identity = UserIdentity.from_share(share, first.device.user, published_key)
    return store


def published(store: CryptoStore) -> DeviceKeys:
    """The device keys as the server hands them out (signed by the user key if approved)."""
    keys = store.device.device_keys()
    if store.identity is not None:
        keys = store.identity.sign_device(keys)
    return DeviceKeys.from_wire(keys.to_wire())


def user_key(store: CryptoStore) -> str:
    assert store.identity is not None
    return store.identity.ed25519


def claim(store: CryptoStore) -> ClaimedKey:
    """One of ``store``'s one-time keys, as ``keys_claim`` returns it."""
    uploaded = store.device.one_time_keys_to_upload(left_on_server=0)
    store.device.mark_published()
    return ClaimedKey.from_wire(
        {"user": store.device.user, "device": store.device.device, **uploaded[0]}
    )


def olm_body(sender: CryptoStore, recipient: CryptoStore, payload: dict[str, Any]) -> dict:
    peer = published(recipient)
    claimed = None if sender.olm.has_session(peer) else claim(recipient)
    return sender.olm.encrypt(peer, payload, claimed)


def send(sender: CryptoStore, recipient: CryptoStore, payload: dict[str, Any]) -> OlmPlaintext:
    body = olm_body(sender, recipient, payload)
    return recipient.olm.decrypt(published(sender), body)


def share_room_key(sender: CryptoStore, group: OutboundGroup, recipient: CryptoStore) -> bool:
    """Alice's client sharing ``group``'s key with one device, and that device taking it."""
    payload = room_keys.room_key(group, sender.device, published(recipient), user_key(recipient))
    delivered = send(sender, recipient, payload)
    group.shared_with.add(published(recipient).peer)
    return room_keys.accept_room_key(
        delivered.payload,
        recipient.device,
        delivered.sender,
        user_key(sender),
        recipient.groups,
    )
