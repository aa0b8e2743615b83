"""Olm sessions per peer device: the encrypted to-device channel that carries room keys,
SAS messages and key shares.

A session to a device is made from one of its one-time keys (claimed through the server,
checked against the device's own signature) and answered by a pre-key message; after that
both sides reuse it. Every decryption failure is the one :class:`DecryptionFailed`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import vodozemac

from chatproto import e2e, unpadded_b64

from .device import DeviceAccount
from .errors import DecryptionFailed
from .keys import ClaimedKey, DeviceKeys, Peer

SESSIONS_PER_PEER = 5
"""Sessions kept per peer device: two devices that start a session at the same moment each
keep the other's too; older ones go (their messages no longer decrypt)."""


@dataclass
class _PeerSessions:
    curve25519: str
    sessions: list[vodozemac.Session]  # the one to encrypt with first


@dataclass(frozen=True)
class OlmPlaintext:
    """A decrypted to-device payload and the device it is proven to come from."""

    sender: DeviceKeys
    payload: dict[str, Any]


class OlmSessions:
    """This device's Olm sessions, keyed by peer device (user, device)."""

    def __init__(self, device: DeviceAccount) -> None:
        self.device = device
        self._peers: dict[Peer, _PeerSessions] = {}

    def has_session(self, peer: DeviceKeys) -> bool:
        """Whether a message can go to ``peer`` without claiming a one-time key first."""
        known = self._peers.get(peer.peer)
        return known is not None and known.curve25519 == peer.curve25519 and bool(known.sessions)

    def encrypt(
        self, peer: DeviceKeys, payload: Mapping[str, Any], claimed: ClaimedKey | None = None
    ) -> dict[str, Any]:
        """The to-device ``body`` carrying ``payload`` (canonical JSON) to ``peer``.

        The plaintext is ``payload`` with section 4.4's addressing set: ``sender``,
        ``sender_device`` (this device), ``recipient`` and ``recipient_device`` (``peer``).

        Without a session, ``claimed`` (from ``keys_claim``) must be given: it is checked
        against ``peer``'s signature (:class:`UntrustedKeys` if it does not check) and a new
        session is made from it. ValueError if neither is there.
        """
        if not self.has_session(peer):
            if claimed is None:
                raise ValueError("no Olm session with that device: claim a one-time key first")
            claimed.check(peer)
            session = self.device.account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(peer.curve25519),
                vodozemac.Curve25519PublicKey.from_base64(claimed.key),
            )
            self._remember(peer, session)
        plaintext = e2e.canonical_json({**payload, **self._addressing(peer)})
        message_type, ciphertext = self._peers[peer.peer].sessions[0].encrypt(plaintext).to_parts()
        return {
            "algorithm": e2e.ALGORITHM_OLM,
            "sender_key": self.device.curve25519,
            "type": message_type,
            "ciphertext": unpadded_b64.encode(ciphertext),
        }

    def _addressing(self, peer: DeviceKeys) -> dict[str, str]:
        return {
            "sender": self.device.user,
            "sender_device": self.device.device,
            "recipient": peer.user,
            "recipient_device": peer.device,
        }

    def decrypt(self, sender: DeviceKeys, body: Mapping[str, Any]) -> OlmPlaintext:
        """The payload of a to-device ``body`` from ``sender`` (its keys from ``keys_query``).

        A pre-key message from a new session makes the inbound session (and uses up our
        one-time key); one of a session we already have goes to that session only, so a
        replayed pre-key message fails instead of opening a second session on the fallback
        key. :class:`DecryptionFailed` for anything that does not decrypt, for a
        ``sender_key`` that is not ``sender``'s, for a payload that is not a JSON object
        with a ``type``, and for one whose addressing (section 4.4) names another sender
        or recipient than ``sender`` and this device: such a message is dropped.
        """
        try:
            if (
                body.get("algorithm") != e2e.ALGORITHM_OLM
                or body.get("sender_key") != sender.curve25519
            ):
                raise ValueError
            message_type = body.get("type")
            if message_type not in (e2e.OLM_PRE_KEY, e2e.OLM_NORMAL) or isinstance(
                message_type, bool
            ):
                raise ValueError
            message = vodozemac.AnyOlmMessage.from_parts(
                message_type, unpadded_b64.decode(str(body.get("ciphertext")))
            )
            plaintext = self._decrypt(sender, message)
            payload = json.loads(plaintext)
            if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
                raise ValueError
            addressing = {name: payload.get(name) for name in e2e.OLM_ENVELOPE_FIELDS}
            if addressing != self._addressing_from(sender):
                raise ValueError
        except (ValueError, TypeError, UnicodeDecodeError):
            raise DecryptionFailed() from None
        return OlmPlaintext(sender, payload)

    def _addressing_from(self, sender: DeviceKeys) -> dict[str, str]:
        return {
            "sender": sender.user,
            "sender_device": sender.device,
            "recipient": self.device.user,
            "recipient_device": self.device.device,
        }

    def _decrypt(self, sender: DeviceKeys, message: vodozemac.AnyOlmMessage) -> bytes:
        known = self._peers.get(sender.peer)
        sessions = known.sessions if known and known.curve25519 == sender.curve25519 else []
        pre_key = message.to_pre_key()
        if pre_key is not None:
            sessions = [s for s in sessions if s.session_matches(pre_key)]
            if sessions:  # a session this pre-key message already made: never a second one
                return self._decrypt_with(sender, sessions[0], message)
            session, plaintext = self.device.account.create_inbound_session(
                vodozemac.Curve25519PublicKey.from_base64(sender.curve25519), pre_key
            )
            self._remember(sender, session)
            return plaintext
        for session in sessions:
            try:
                return self._decrypt_with(sender, session, message)
            except ValueError:
                continue
        raise ValueError

    def _decrypt_with(
        self, sender: DeviceKeys, session: vodozemac.Session, message: vodozemac.AnyOlmMessage
    ) -> bytes:
        plaintext = session.decrypt(message)
        self._remember(sender, session)
        return plaintext

    def _remember(self, peer: DeviceKeys, session: vodozemac.Session) -> None:
        """Put ``session`` first for ``peer`` (the last one that worked is used to send)."""
        known = self._peers.get(peer.peer)
        if known is None or known.curve25519 != peer.curve25519:
            known = self._peers[peer.peer] = _PeerSessions(peer.curve25519, [])
        others = [s for s in known.sessions if s.session_id != session.session_id]
        known.sessions = [session, *others][:SESSIONS_PER_PEER]

    def forget(self, peer: Peer) -> None:
        """Drop the sessions of a device that was removed."""
        self._peers.pop(peer, None)

    # --- at rest ----------------------------------------------------------------------------

    def to_state(self, pickle_key: bytes) -> list[dict[str, Any]]:
        return [
            {
                "user": user,
                "device": device,
                "curve25519": known.curve25519,
                "sessions": [session.pickle(pickle_key) for session in known.sessions],
            }
            for (user, device), known in sorted(self._peers.items())
        ]

    @classmethod
    def from_state(
        cls, device: DeviceAccount, state: list[dict[str, Any]], pickle_key: bytes
    ) -> OlmSessions:
        restored = cls(device)
        for item in state:
            restored._peers[(item["user"], item["device"])] = _PeerSessions(
                item["curve25519"],
                [vodozemac.Session.from_pickle(p, pickle_key) for p in item["sessions"]],
            )
        return restored
