"""SAS verifications in progress (section 4.7): device approval and contact verification.

Sans I/O: each call returns the Olm plaintexts to send to the other device (the engine
encrypts and relays them) and events for the user. One flow per transaction ``txn``:

- starter: :meth:`Verifications.start` (``sas_start``) → their ``sas_key`` → our
  ``sas_key`` and :class:`CodesReady`;
- responder: their ``sas_start`` gives :class:`VerificationRequested`; :meth:`accept`
  sends our ``sas_key``; their ``sas_key`` (checked against the commitment) gives
  :class:`CodesReady`;
- both: the user compares the codes and calls :meth:`confirm` (our ``sas_mac``); with the
  other's ``sas_mac`` checked, ``sas_done``. For a device approval the starter (the
  signed device) also sends ``user_key_share``; the new device takes it, then says done.

Any failure cancels with section 4.7's reason; 10 minutes without a step cancel too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chatproto import e2e, unpadded_b64

from .errors import VerificationFailed
from .identity import UserIdentity
from .keys import DeviceKeys, PublishedUserKey
from .sas import SasParty, SasVerification
from .store import CryptoStore

TXN_BYTES = 12  # random bytes of a transaction id (16 base64 characters)


@dataclass(frozen=True)
class VerificationRequested:
    """The other device started a verification: ask the user, then :meth:`accept`."""

    txn: str
    user: str
    device: str
    kind: str


@dataclass(frozen=True)
class CodesReady:
    """Show these and ask the user whether the other device shows the same."""

    txn: str
    emoji: list[tuple[str, str]]
    decimals: tuple[int, int, int]


@dataclass(frozen=True)
class Verified:
    """Done: a contact is verified, or (``kind`` ``device``) a device approved or this
    device now holds the user key (``approved_here``)."""

    txn: str
    user: str
    device: str
    kind: str
    approved_here: bool = False


@dataclass(frozen=True)
class VerificationStarted:
    """This device started a verification with ``user``'s ``device``: codes follow once
    the other device accepts."""

    txn: str
    user: str
    device: str
    kind: str


@dataclass(frozen=True)
class VerificationCancelled:
    txn: str
    reason: str

    @property
    def text(self) -> str:
        return f"The verification was cancelled ({self.reason}); start it again to retry."


@dataclass
class _Flow:
    sas: SasVerification
    peer: DeviceKeys
    last_step: float
    stage: str  # "started", "requested", "key_sent", "codes", "confirmed"
    their_mac: Mapping[str, Any] | None = None
    their_mac_ok: bool = False
    share_received: bool = False


Step = tuple[list[dict[str, Any]], list[Any]]
"""(plaintexts for the other device, events for the user)."""


@dataclass
class Verifications:
    """Every verification of this device, keyed by transaction id."""

    store: CryptoStore
    flows: dict[str, _Flow] = field(default_factory=dict)
    backup_share: Callable[[], dict[str, Any] | None] = lambda: None
    """The ``backup`` field for a ``user_key_share`` (4.13), when this device has one."""
    received_backup_shares: list[tuple[DeviceKeys, Mapping[str, Any]]] = field(
        default_factory=list
    )  # the ``backup`` of a user_key_share taken here, for the key backup to check

    def take_backup_shares(self) -> list[tuple[DeviceKeys, Mapping[str, Any]]]:
        """The backup keys received with an approval since the last call (and who sent
        them); the key backup keeps one only if it is the current backup's."""
        shares, self.received_backup_shares = self.received_backup_shares, []
        return shares

    def _party(self) -> SasParty:
        return SasParty(self.store.device.user, self.store.device.device)

    def peer_of(self, txn: str) -> DeviceKeys | None:
        flow = self.flows.get(txn)
        return flow.peer if flow else None

    # --- what the user does -----------------------------------------------------------------

    def start(self, peer: DeviceKeys, kind: str, now: float) -> tuple[str, list[dict[str, Any]]]:
        """Start verifying ``peer``; the transaction id and the ``sas_start`` to send it.

        ValueError for a device approval (``kind`` ``device``) of another user's device:
        it would end with our user key's private half in their hands.
        """
        if kind == "device" and peer.user != self.store.device.user:
            raise ValueError("only your own devices can be approved; verify a contact instead")
        txn = unpadded_b64.encode(os.urandom(TXN_BYTES))
        them = SasParty(peer.user, peer.device)
        sas = SasVerification(self._party(), them, txn, we_started=True, kind=kind)
        self.flows[txn] = _Flow(sas, peer, now, "started")
        return txn, [sas.start()]

    def accept(self, txn: str, now: float) -> list[dict[str, Any]]:
        """The user agreed to a requested verification: our ``sas_key``."""
        flow = self.flows.get(txn)
        if flow is None or flow.stage != "requested":
            return []
        flow.stage, flow.last_step = "key_sent", now
        return [flow.sas.key_message()]

    def confirm(self, txn: str, now: float, user_key: str | None) -> Step:
        """The user says both devices show the same codes: our ``sas_mac``, and the end of
        the flow if the other's MAC is in already. ``user_key``: ``them``'s current one."""
        flow = self.flows.get(txn)
        if flow is None or flow.stage != "codes":
            return [], []
        flow.stage, flow.last_step = "confirmed", now
        out = [flow.sas.mac_message(self._own_keys())]
        try:
            more, events = self._maybe_finish(txn, flow, user_key)
        except VerificationFailed:
            more, events = self._fail(txn, "mismatch")
        return out + more, events

    def cancel(self, txn: str, reason: str = "user") -> list[dict[str, Any]]:
        flow = self.flows.pop(txn, None)
        return [flow.sas.cancel(reason)] if flow else []

    def expire(self, now: float) -> list[tuple[DeviceKeys, dict[str, Any]]]:
        """Cancel (``timeout``) every flow idle for 10 minutes; what to send to whom."""
        late = [
            txn
            for txn, flow in self.flows.items()
            if now - flow.last_step >= e2e.SAS_TIMEOUT_SECONDS
        ]
        return [(self.flows[txn].peer, self.cancel(txn, "timeout")[0]) for txn in late]

    # --- what the other device sends --------------------------------------------------------

    def receive(
        self,
        sender: DeviceKeys,
        payload: Mapping[str, Any],
        now: float,
        user_keys: Mapping[str, PublishedUserKey | None],
    ) -> Step:
        """One ``sas_*`` or ``user_key_share`` plaintext from ``sender`` (Olm-checked).

        ``user_keys``: the current published user key of ``sender``'s user and ours.
        """
        kind, txn = payload.get("type"), str(payload.get("txn"))
        if kind == e2e.SAS_START:
            return self._started(sender, payload, now)
        flow = self.flows.get(txn)
        if flow is None or flow.peer.peer != sender.peer:
            return [], []
        flow.last_step = now
        if kind == e2e.SAS_CANCEL:
            del self.flows[txn]
            return [], [VerificationCancelled(txn, str(payload.get("reason")))]
        their_user_key = self._user_key(sender.user, user_keys)
        try:
            if kind == e2e.SAS_KEY:
                return self._key(txn, flow, payload)
            if kind == e2e.SAS_MAC:
                flow.their_mac = payload
                return self._maybe_finish(txn, flow, their_user_key)
            if kind == e2e.USER_KEY_SHARE:
                return self._share(txn, flow, payload, self._own_user_key(user_keys))
        except VerificationFailed:
            return self._fail(txn, "mismatch")
        if kind == e2e.SAS_DONE:
            return [], []
        return self._fail(txn, "unexpected")

    def _user_key(self, user: str, user_keys: Mapping[str, PublishedUserKey | None]) -> str | None:
        """``user``'s user key: for our own user the one this device holds, if it holds one
        (the server's published copy may be a substitute); else the published one."""
        if user == self.store.device.user and self.store.identity is not None:
            return self.store.identity.ed25519
        published = user_keys.get(user)
        return published.ed25519 if published else None

    def _own_user_key(
        self, user_keys: Mapping[str, PublishedUserKey | None]
    ) -> PublishedUserKey | None:
        """What a ``user_key_share`` must hold: our user key as this device holds it, or,
        for a device without one yet, the published one (section 4.7)."""
        if self.store.identity is not None:
            return self.store.identity.published_by(self.store.device)
        return user_keys.get(self.store.device.user)

    def _started(self, sender: DeviceKeys, payload: Mapping[str, Any], now: float) -> Step:
        txn, kind = payload.get("txn"), payload.get("kind")
        if not isinstance(txn, str) or kind not in e2e.SAS_KINDS or txn in self.flows:
            return [], []
        if kind == "device" and sender.user != self.store.device.user:
            return [], []  # only our own devices approve us (section 4.7)
        try:
            them = SasParty(sender.user, sender.device)
            sas = SasVerification(self._party(), them, txn, we_started=False, kind=str(kind))
            sas.receive_start(payload)
        except (ValueError, VerificationFailed):
            return [], []
        self.flows[txn] = _Flow(sas, sender, now, "requested")
        return [], [VerificationRequested(txn, sender.user, sender.device, str(kind))]

    def _key(self, txn: str, flow: _Flow, payload: Mapping[str, Any]) -> Step:
        if flow.stage not in ("started", "key_sent"):
            return self._fail(txn, "unexpected")
        try:
            flow.sas.receive_key(str(payload.get("key")))
        except VerificationFailed:
            return self._fail(txn, "unexpected")  # a key that breaks its commitment
        out = [flow.sas.key_message()] if flow.stage == "started" else []
        flow.stage = "codes"
        return out, [CodesReady(txn, flow.sas.emoji(), flow.sas.decimals())]

    def _own_keys(self) -> dict[str, str]:
        keys = {f"ed25519:{self.store.device.device}": self.store.device.ed25519}
        if self.store.identity is not None:
            keys[f"user:{self.store.device.user}"] = self.store.identity.ed25519
        return keys

    def _their_keys(self, flow: _Flow, user_key: str | None) -> dict[str, str]:
        keys = {f"ed25519:{flow.peer.device}": flow.peer.ed25519}
        if user_key is not None and flow.peer.signed_by_user_key(user_key):
            keys[f"user:{flow.peer.user}"] = user_key
        return keys

    def _maybe_finish(self, txn: str, flow: _Flow, user_key: str | None) -> Step:
        if flow.their_mac is None or flow.stage != "confirmed":
            return [], []
        their_keys = self._their_keys(flow, user_key)
        if not flow.their_mac_ok:
            flow.sas.check_macs(their_keys, flow.their_mac)  # VerificationFailed: mismatch
            flow.their_mac_ok = True
        sas = flow.sas
        if sas.kind == "contact":
            if user_key is None or f"user:{flow.peer.user}" not in their_keys:
                return self._fail(txn, "mismatch")  # an unsigned device vouches for nobody
            try:  # the key MACed must be the one this client pinned or last saw
                self.store.contacts.verify(flow.peer.user, user_key)
            except ValueError:
                return self._fail(txn, "mismatch")
            del self.flows[txn]
            return [sas.done()], [Verified(txn, flow.peer.user, flow.peer.device, sas.kind)]
        if not self._is_own_approval(flow):
            return self._fail(txn, "unexpected")
        if sas.we_started and self.store.identity is not None:  # approving a new device
            share = self.store.identity.share(txn, flow.peer)
            backup = self.backup_share()
            if backup is not None:
                share["backup"] = backup
            del self.flows[txn]
            return [share, sas.done()], [Verified(txn, flow.peer.user, flow.peer.device, "device")]
        return [], []  # the new device: waits for user_key_share

    def _share(
        self,
        txn: str,
        flow: _Flow,
        payload: Mapping[str, Any],
        own_user_key: PublishedUserKey | None,
    ) -> Step:
        """A ``user_key_share``: taken only from our own user's device, at the end of a device
        approval that it started and we accepted, with the codes confirmed and its MAC
        checked (section 4.7); anything else cancels and changes nothing."""
        finished = flow.stage == "confirmed" and flow.their_mac_ok
        if flow.sas.we_started or not finished or not self._is_own_approval(flow):
            return self._fail(txn, "unexpected")
        if own_user_key is None:
            return self._fail(txn, "unexpected")
        try:
            identity = UserIdentity.from_share(payload, self.store.device.user, own_user_key)
        except ValueError:
            return self._fail(txn, "mismatch")
        self.store.identity = identity
        if isinstance(payload.get("backup"), Mapping):
            self.received_backup_shares.append((flow.peer, payload["backup"]))
        del self.flows[txn]
        done = Verified(txn, flow.peer.user, flow.peer.device, "device", approved_here=True)
        return [flow.sas.done()], [done]

    def _is_own_approval(self, flow: _Flow) -> bool:
        """A device approval (not a contact verification) between two of our own devices."""
        return flow.sas.kind == "device" and flow.peer.user == self.store.device.user

    def _fail(self, txn: str, reason: str) -> Step:
        return self.cancel(txn, reason), [VerificationCancelled(txn, reason)]
