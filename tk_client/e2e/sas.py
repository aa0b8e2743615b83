"""Short authentication strings: two devices compare 7 emoji (or 3 numbers) to prove they
see each other's keys, then exchange MACs of the keys being verified (section 4.7).

Used for approving a new device of one's own and for verifying a contact. Order of the
to-device messages (inside Olm), for the starting side S and the other side O:

1. S ``sas_start`` (:meth:`SasVerification.start`), committing to S's SAS key;
2. O ``sas_key`` with O's key; S ``sas_key`` with S's key, which O checks against the
   commitment (so S could not pick its key after seeing O's to steer the codes);
3. both show :meth:`emoji`; the users compare and confirm;
4. both send ``sas_mac`` (:meth:`mac_message`) and check the other's (:meth:`check_macs`);
   ``sas_done`` ends it, ``sas_cancel`` on any mismatch.

The commitment and the info strings are ``chatproto.e2e``'s; vodozemac does the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import vodozemac

from chatproto import e2e

from .errors import VerificationFailed

EMOJI = (
    ("🐶", "Dog"), ("🐱", "Cat"), ("🦁", "Lion"), ("🐎", "Horse"),
    ("🦄", "Unicorn"), ("🐷", "Pig"), ("🐘", "Elephant"), ("🐰", "Rabbit"),
    ("🐼", "Panda"), ("🐓", "Rooster"), ("🐧", "Penguin"), ("🐢", "Turtle"),
    ("🐟", "Fish"), ("🐙", "Octopus"), ("🦋", "Butterfly"), ("🌷", "Flower"),
    ("🌳", "Tree"), ("🌵", "Cactus"), ("🍄", "Mushroom"), ("🌏", "Globe"),
    ("🌙", "Moon"), ("☁️", "Cloud"), ("🔥", "Fire"), ("🍌", "Banana"),
    ("🍎", "Apple"), ("🍓", "Strawberry"), ("🌽", "Corn"), ("🍕", "Pizza"),
    ("🎂", "Cake"), ("❤️", "Heart"), ("😀", "Smiley"), ("🤖", "Robot"),
    ("🎩", "Hat"), ("👓", "Glasses"), ("🔧", "Spanner"), ("🎅", "Santa"),
    ("👍", "Thumbs Up"), ("☂️", "Umbrella"), ("⌛", "Hourglass"), ("⏰", "Clock"),
    ("🎁", "Gift"), ("💡", "Light Bulb"), ("📕", "Book"), ("✏️", "Pencil"),
    ("📎", "Paperclip"), ("✂️", "Scissors"), ("🔒", "Lock"), ("🔑", "Key"),
    ("🔨", "Hammer"), ("☎️", "Telephone"), ("🏁", "Flag"), ("🚂", "Train"),
    ("🚲", "Bicycle"), ("✈️", "Aeroplane"), ("🚀", "Rocket"), ("🏆", "Trophy"),
    ("⚽", "Ball"), ("🎸", "Guitar"), ("🎺", "Trumpet"), ("🔔", "Bell"),
    ("⚓", "Anchor"), ("🎧", "Headphones"), ("📁", "Folder"), ("📌", "Pin"),
)  # fmt: skip
"""The 64 emoji (Matrix's SAS table), each with the name said aloud when comparing."""

_MISMATCH = "the keys do not match: someone may be in between; cancel and do not trust them"
KEY_IDS = "KEY_IDS"
"""The key id under which ``sas_mac``'s ``keys`` (the MAC of the sorted key ids) is made."""


@dataclass(frozen=True)
class SasParty:
    user: str
    device: str


class SasVerification:
    """One side of a SAS exchange between ``us`` and ``them`` (``transaction``: its ``txn``).

    ``kind`` is ``device`` (approving one's own new device) or ``contact`` (4.8).
    """

    def __init__(
        self,
        us: SasParty,
        them: SasParty,
        transaction: str,
        we_started: bool,
        kind: str = "device",
    ) -> None:
        if kind not in e2e.SAS_KINDS:
            raise ValueError(f"a SAS verification is one of {', '.join(e2e.SAS_KINDS)}")
        if not 1 <= len(transaction) <= e2e.MAX_SAS_TRANSACTION_LENGTH:
            raise ValueError("a SAS transaction id is 1 to 64 characters")
        self.us, self.them = us, them
        self.transaction = transaction
        self.we_started = we_started
        self.kind = kind
        self._sas = vodozemac.Sas()
        self.public_key = self._sas.public_key.to_base64()
        self._established: vodozemac.EstablishedSas | None = None
        self._their_key = ""
        self._their_start: Mapping[str, Any] | None = None

    def _addressing(self) -> dict[str, str]:
        return {
            "sender": self.us.user,
            "sender_device": self.us.device,
            "recipient": self.them.user,
            "recipient_device": self.them.device,
        }

    def start(self) -> dict[str, Any]:
        """The starter's ``sas_start`` plaintext, whole (with the Olm addressing, which the
        commitment covers too): it binds the starter to its key before it sees the other's."""
        if not self.we_started:
            raise ValueError("only the side that starts a verification sends sas_start")
        start = {
            "type": e2e.SAS_START,
            "txn": self.transaction,
            "kind": self.kind,
            "from_device": self.us.device,
            **self._addressing(),
        }
        return {**start, "commitment": e2e.sas_commitment(self.public_key, start)}

    def receive_start(self, start: Mapping[str, Any]) -> None:
        """The responder takes the starter's ``sas_start`` (Olm has checked its addressing).

        :class:`VerificationFailed` if it is not this transaction's start from ``them``.
        """
        expected = {
            "type": e2e.SAS_START,
            "txn": self.transaction,
            "kind": self.kind,
            "from_device": self.them.device,
        }
        if self.we_started or any(start.get(k) != v for k, v in expected.items()):
            raise VerificationFailed(_MISMATCH)
        if not isinstance(start.get("commitment"), str):
            raise VerificationFailed(_MISMATCH)
        self._their_start = dict(start)

    def key_message(self) -> dict[str, Any]:
        """Our ``sas_key``: the responder sends it first, the starter after receiving it."""
        return {"type": e2e.SAS_KEY, "txn": self.transaction, "key": self.public_key}

    def receive_key(self, their_key: str) -> None:
        """Take the other side's ``sas_key`` (its ``key``).

        The responder checks it against the ``sas_start`` commitment (:meth:`receive_start`
        first). :class:`VerificationFailed` if it does not match or is not a key.
        """
        if not self.we_started and (
            self._their_start is None
            or e2e.sas_commitment(their_key, self._their_start) != self._their_start["commitment"]
        ):
            raise VerificationFailed(_MISMATCH)
        try:
            key = vodozemac.Curve25519PublicKey.from_base64(their_key)
            self._established = self._sas.diffie_hellman(key)
        except ValueError:
            raise VerificationFailed(_MISMATCH) from None
        self._their_key = their_key

    def _session(self) -> vodozemac.EstablishedSas:
        if self._established is None:
            raise ValueError("no SAS key received from the other side yet")
        return self._established

    def _info(self) -> str:
        ours = (self.us.user, self.us.device, self.public_key)
        theirs = (self.them.user, self.them.device, self._their_key)
        first, second = (ours, theirs) if self.we_started else (theirs, ours)
        return e2e.sas_bytes_info(first, second, self.transaction)

    def emoji(self) -> list[tuple[str, str]]:
        """The 7 emoji (symbol, name) both sides must see alike."""
        return [EMOJI[i] for i in self._session().bytes(self._info()).emoji_indices]

    def decimals(self) -> tuple[int, int, int]:
        """The same check as three numbers of 4 digits (1000-9191)."""
        first, second, third = self._session().bytes(self._info()).decimals
        return (first, second, third)

    def _mac_info(self, sender: SasParty, receiver: SasParty, key_id: str) -> str:
        return e2e.sas_mac_info(
            (sender.user, sender.device), (receiver.user, receiver.device), self.transaction, key_id
        )

    def mac_message(self, keys: Mapping[str, str]) -> dict[str, Any]:
        """Our ``sas_mac``: a MAC of each of our ``keys`` (key id -> public key: ours are
        ``ed25519:<device>`` and, if signed, ``user:<user>``), and of the list of ids, so
        that none can be dropped on the way."""
        session = self._session()
        return {
            "type": e2e.SAS_MAC,
            "txn": self.transaction,
            "mac": {
                key_id: session.calculate_mac(key, self._mac_info(self.us, self.them, key_id))
                for key_id, key in keys.items()
            },
            "keys": session.calculate_mac(
                ",".join(sorted(keys)), self._mac_info(self.us, self.them, KEY_IDS)
            ),
        }

    def check_macs(self, their_keys: Mapping[str, str], message: Mapping[str, object]) -> None:
        """Check the other side's ``sas_mac`` against the keys we know for it.

        ``their_keys`` (key id -> public key) are the keys we are about to trust; every one
        must be covered. :class:`VerificationFailed` on any difference.
        """
        session = self._session()
        macs = message.get("mac")
        try:
            if not isinstance(macs, Mapping) or set(macs) != set(their_keys):
                raise ValueError
            session.verify_mac(
                ",".join(sorted(their_keys)),
                self._mac_info(self.them, self.us, KEY_IDS),
                str(message.get("keys")),
            )
            for key_id, key in their_keys.items():
                session.verify_mac(
                    key, self._mac_info(self.them, self.us, key_id), str(macs[key_id])
                )
        except ValueError:
            raise VerificationFailed(_MISMATCH) from None

    def done(self) -> dict[str, Any]:
        """Our ``sas_done``, once the other side's ``sas_mac`` checked."""
        return {"type": e2e.SAS_DONE, "txn": self.transaction}

    def cancel(self, reason: str) -> dict[str, Any]:
        """A ``sas_cancel``; ``reason`` is one of section 4.7's words."""
        if reason not in e2e.SAS_CANCEL_REASONS:
            raise ValueError(f"a SAS cancel reason is one of {', '.join(e2e.SAS_CANCEL_REASONS)}")
        return {"type": e2e.SAS_CANCEL, "txn": self.transaction, "reason": reason}
