"""A stand-in for a client's end-to-end device in server tests: real Ed25519 signatures over
the contract's payloads (the server checks them), random bytes for Curve25519 keys (the
server never uses them). vodozemac is the clients'; the server tests need none of it."""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatproto.e2e import device_keys_payload, one_time_key_payload, user_key_payload
from chatproto.unpadded_b64 import encode as encode_b64
from tests.protocol_client.e2e_body import e2e_body
from tests.protocol_client.inprocess import InProcessClient, open_session

E2E = e2e_body("d1")


class SigningKey:
    """An Ed25519 key: ``public`` in unpadded base64, ``sign(data)`` likewise."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public = encode_b64(raw)

    def sign(self, data: bytes) -> str:
        return encode_b64(self._key.sign(data))


class KeyedDevice:
    """A logged-in session with a remembered device and its keys."""

    def __init__(self, session: InProcessClient, username: str, device: str, token: str) -> None:
        self.session, self.username, self.device, self.token = session, username, device, token
        self.identity = SigningKey()
        self.curve25519 = encode_b64(os.urandom(32))

    def device_keys(self, user_key: SigningKey | None = None) -> dict[str, Any]:
        keys: dict[str, Any] = {
            "user": self.username,
            "device": self.device,
            "curve25519": self.curve25519,
            "ed25519": self.identity.public,
        }
        payload = device_keys_payload(keys)
        keys["signatures"] = {"device": self.identity.sign(payload)}
        if user_key is not None:
            keys["signatures"]["user"] = user_key.sign(payload)
        return keys

    def one_time_key(self, key_id: str) -> dict[str, Any]:
        key = {"key_id": key_id, "key": encode_b64(os.urandom(32))}
        signature = self.identity.sign(one_time_key_payload(self.username, self.device, key))
        return {**key, "signature": signature}

    def user_key(self, user_key: SigningKey, version: int = 1) -> dict[str, Any]:
        published: dict[str, Any] = {
            "user": self.username,
            "ed25519": user_key.public,
            "version": version,
        }
        payload = user_key_payload(published)
        return {**published, "signatures": {"device": self.identity.sign(payload)}}

    def sealed(self) -> dict[str, Any]:
        """An ``e2e`` message object from this device (opaque ciphertext)."""
        return e2e_body(self.device)

    async def upload(self, **fields: Any) -> dict[str, Any]:
        return await self.session.request({"type": "keys_upload", **fields})

    async def close(self) -> None:
        await self.session.close()


async def device_session(username: str, name: str = "laptop", *, keys: bool = True) -> KeyedDevice:
    """``username`` logged in with a new remembered device; its device keys uploaded
    unless ``keys`` is false."""
    session = await open_session()
    answer = await session.login(username, remember=name)
    device = KeyedDevice(session, username, answer["device"], answer["token"])
    if keys:
        uploaded = await device.upload(device_keys=device.device_keys())
        assert uploaded["type"] == "keys_uploaded", uploaded
    return device


async def resumed(device: KeyedDevice) -> KeyedDevice:
    """The same device logged in again (a new session, as after a reconnect)."""
    session = await open_session()
    await session.resume(device.username, device.token)
    again = KeyedDevice(session, device.username, device.device, device.token)
    again.identity, again.curve25519 = device.identity, device.curve25519
    return again


async def to_device_after_login(device: KeyedDevice) -> list[dict[str, Any]]:
    """The to-device pushes a device's login brought: none before ``users`` (they follow
    it), and all of them (a ping's answer comes after them)."""
    assert not [m for m in device.session.after_login if m["type"] == "to_device"]
    await device.session.request({"type": "ping"})
    pushes = []
    while (push := device.session.protocol.take_kind("to_device")) is not None:
        pushes.append(push)
    return pushes
