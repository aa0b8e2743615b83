"""Short authentication strings: two devices compare 7 emoji (or 3 numbers) to prove they
see each other's keys, then exchange MACs of the keys being verified.

Used for approving a new device of one's own and for verifying a contact. Order of the
to-device messages (inside Olm), for the starting side S and the other side O:

1. S ``sas_start`` with :meth:`SasVerification.commitment` (a hash of S's SAS key);
2. O ``sas_key`` with O's key; S ``sas_key`` with S's key, which O checks against the
   commitment (so S could not pick its key after seeing O's to steer the codes);
3. both show :meth:`emoji`; the users compare and confirm;
4. both send ``sas_mac`` (:meth:`macs`) and check the other's (:meth:`check_macs`);
   ``sas_done`` ends it, ``sas_cancel`` on any mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import vodozemac

from chatproto import crypto_utils

from .encoding import encode_b64
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


@dataclass(frozen=True)
class SasParty:
    user: str
    device: str


class SasVerification:
    """One side of a SAS exchange between ``us`` and ``them`` (``transaction``: its id)."""

    def __init__(self, us: SasParty, them: SasParty, transaction: str, we_started: bool) -> None:
        self.us, self.them = us, them
        self.transaction = transaction
        self.we_started = we_started
        self._sas = vodozemac.Sas()
        self.public_key = self._sas.public_key.to_base64()
        self._established: vodozemac.EstablishedSas | None = None
        self._their_key = ""

    def commitment(self) -> str:
        """What ``sas_start`` carries: binds the starter to its key before it sees the other."""
        return self._commitment_of(self.public_key)

    def _commitment_of(self, key: str) -> str:
        return encode_b64(crypto_utils.sha256(f"{key}|{self.transaction}".encode()))

    def receive_key(self, their_key: str, their_commitment: str | None = None) -> None:
        """Take the other side's ``sas_key``; the non-starting side passes the commitment.

        :class:`VerificationFailed` if the key does not match the commitment or is not a key.
        """
        if not self.we_started and their_commitment != self._commitment_of(their_key):
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
        return "|".join(("CHAT_SAS_V1", *first, *second, self.transaction))

    def emoji(self) -> list[tuple[str, str]]:
        """The 7 emoji (symbol, name) both sides must see alike."""
        return [EMOJI[i] for i in self._session().bytes(self._info()).emoji_indices]

    def decimals(self) -> tuple[int, int, int]:
        """The same check as three numbers of 4 digits (1000-9191)."""
        first, second, third = self._session().bytes(self._info()).decimals
        return (first, second, third)

    def _mac_info(self, sender: SasParty, receiver: SasParty, key_id: str) -> str:
        parts = (sender.user, sender.device, receiver.user, receiver.device, self.transaction)
        return "|".join(("CHAT_SAS_MAC_V1", *parts, key_id))

    def macs(self, keys: Mapping[str, str]) -> dict[str, object]:
        """``sas_mac``'s content: a MAC of each of our ``keys`` (key id -> public key), and
        of the list of ids, so that none can be dropped on the way."""
        session = self._session()
        return {
            "mac": {
                key_id: session.calculate_mac(key, self._mac_info(self.us, self.them, key_id))
                for key_id, key in keys.items()
            },
            "keys": session.calculate_mac(
                ",".join(sorted(keys)), self._mac_info(self.us, self.them, "KEY_IDS")
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
                self._mac_info(self.them, self.us, "KEY_IDS"),
                str(message.get("keys")),
            )
            for key_id, key in their_keys.items():
                session.verify_mac(
                    key, self._mac_info(self.them, self.us, key_id), str(macs[key_id])
                )
        except ValueError:
            raise VerificationFailed(_MISMATCH) from None
