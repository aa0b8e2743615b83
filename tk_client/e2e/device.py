"""This device's Olm ``Account``: its identity keys, signed device keys and one-time keys.

The account's private keys never leave it (only its pickle, encrypted, reaches the store);
what goes to the server is built here, signed by the account's ed25519 key.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import vodozemac

from chatproto import e2e

from .keys import DeviceKeys

ONE_TIME_KEYS_ON_SERVER = 50
"""How many one-time keys to keep published (section 4.3): vodozemac's
``max_number_of_one_time_keys``."""
TOP_UP_BELOW = 25
"""Upload more once ``keys_uploaded`` says fewer than this are left (section 4.3)."""


class DeviceAccount:
    """One device's account, with the user and device id that its keys are published under."""

    def __init__(self, user: str, device: str, account: vodozemac.Account) -> None:
        self.user = user
        self.device = device
        self.account = account
        self._fallback: dict[str, str] | None = None

    @classmethod
    def create(cls, user: str, device: str) -> DeviceAccount:
        """A fresh account (new identity keys) for a device that has none yet."""
        return cls(user, device, vodozemac.Account())

    @property
    def _untyped(self) -> Any:
        """The account, for the fallback-key calls that vodozemac's type stubs leave out."""
        return self.account

    # --- identity ---------------------------------------------------------------------------

    @property
    def curve25519(self) -> str:
        return self.account.curve25519_key.to_base64()

    @property
    def ed25519(self) -> str:
        return self.account.ed25519_key.to_base64()

    def sign(self, message: bytes) -> str:
        """The device's ed25519 signature of ``message``, unpadded base64."""
        return self.account.sign(message).to_base64()

    def device_keys(self, user_signature: str | None = None) -> DeviceKeys:
        """The device keys object, signed by the device (and by the user key if given)."""
        unsigned = DeviceKeys(self.user, self.device, self.curve25519, self.ed25519, "")
        return replace(
            unsigned,
            device_signature=self.sign(unsigned.signed_bytes()),
            user_signature=user_signature,
        )

    # --- one-time and fallback keys ---------------------------------------------------------

    def one_time_keys_to_upload(self, left_on_server: int) -> list[dict[str, str]]:
        """Signed one-time keys that bring the server's count back to the target.

        ``left_on_server`` is ``keys_uploaded``'s count; nothing new is made while at least
        :data:`TOP_UP_BELOW` are left. Keys generated earlier but not yet marked published
        are sent again (an upload may have been lost).
        """
        unpublished = len(self.account.one_time_keys)
        missing = ONE_TIME_KEYS_ON_SERVER - left_on_server - unpublished
        if missing > 0 and left_on_server < TOP_UP_BELOW:
            self.account.generate_one_time_keys(missing)
        return self.unpublished_one_time_keys()

    def unpublished_one_time_keys(self) -> list[dict[str, str]]:
        """The one-time keys made but not yet confirmed published, signed; none are made.

        What a login sends again (an earlier upload's answer may have been lost): the
        server ignores a key it already has, and these never take it past its limit.
        """
        return [
            self._signed_key(key_id, key.to_base64())
            for key_id, key in sorted(self.account.one_time_keys.items())
        ]

    def new_fallback_key(self) -> dict[str, str]:
        """Generate a fallback key (replacing the old one) and return it signed."""
        self._untyped.generate_fallback_key()
        ((key_id, key),) = self._untyped.fallback_key.items()
        self._fallback = self._signed_key(key_id, key.to_base64())
        return self._fallback

    def unpublished_fallback_key(self) -> dict[str, str] | None:
        """The fallback key generated since the last :meth:`mark_published`, if any."""
        return self._fallback if self._untyped.fallback_key else None

    def mark_published(self) -> None:
        """The server confirmed the upload (``keys_uploaded``): these keys are not sent again."""
        self.account.mark_keys_as_published()

    def _signed_key(self, key_id: str, key: str) -> dict[str, str]:
        payload = e2e.one_time_key_payload(self.user, self.device, {"key_id": key_id, "key": key})
        return {"key_id": key_id, "key": key, "signature": self.sign(payload)}

    # --- at rest ----------------------------------------------------------------------------

    def to_state(self, pickle_key: bytes) -> dict[str, Any]:
        return {
            "user": self.user,
            "device": self.device,
            "account": self.account.pickle(pickle_key),
            "fallback": self._fallback,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], pickle_key: bytes) -> DeviceAccount:
        """Raises vodozemac's ``PickleException`` (a ValueError) for a wrong key."""
        restored = cls(
            state["user"],
            state["device"],
            vodozemac.Account.from_pickle(state["account"], pickle_key),
        )
        restored._fallback = state.get("fallback")
        return restored
