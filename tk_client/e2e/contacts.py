"""Contacts' pinned user keys and their trust states: tofu, verified, changed.

The rules (docs/protocol.md section 4):

- the first user key seen for a contact is pinned (``tofu``: trust on first use);
- comparing a safety number or emoji marks the pinned key ``verified``;
- a different key for a ``tofu`` contact gives one notice and is pinned in its place
  (still ``tofu``): nothing is blocked;
- a different key for a ``verified`` contact makes it ``changed``, with one notice for that
  key (seeing the same new key again says nothing more), and blocks sending until the user
  acknowledges the change; acknowledging pins the new key as ``tofu`` (verification must be
  done again);
- the verified key coming back restores ``verified``, without a notice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from .errors import SendingBlocked


class TrustState(StrEnum):
    TOFU = "tofu"
    VERIFIED = "verified"
    CHANGED = "changed"


@dataclass(frozen=True)
class Contact:
    """What this client knows of one contact's user key."""

    user: str
    pinned: str
    state: TrustState
    was_verified: bool = False
    seen: str | None = None  # the differing key, while ``changed``

    @property
    def blocks_sending(self) -> bool:
        return self.state is TrustState.CHANGED and self.was_verified


@dataclass(frozen=True)
class IdentityChanged:
    """The one notice of a contact's changed user key, as a sentence for the user."""

    user: str
    blocks_sending: bool

    @property
    def text(self) -> str:
        what = (
            f"{self.user}'s identity changed: {self.user} reset their identity or "
            "reinstalled, or someone is intercepting. Compare safety numbers before you "
            "send more."
        )
        if self.blocks_sending:
            return what + f" Sending to {self.user} is paused until you acknowledge the change."
        return what


class ContactBook:
    """The pinned keys of every contact met so far (public data: kept in the store as is)."""

    def __init__(self, contacts: Iterable[Contact] = ()) -> None:
        self._contacts = {contact.user: contact for contact in contacts}

    def get(self, user: str) -> Contact | None:
        return self._contacts.get(user)

    def observe(self, user: str, ed25519: str) -> IdentityChanged | None:
        """A user key from ``keys_query``; the notice to show, once, if it changed."""
        contact = self._contacts.get(user)
        if contact is None:
            self._contacts[user] = Contact(user, ed25519, TrustState.TOFU)
            return None
        if ed25519 == contact.pinned:
            if contact.state is TrustState.CHANGED:
                earlier = TrustState.VERIFIED if contact.was_verified else TrustState.TOFU
                self._contacts[user] = replace(contact, state=earlier, seen=None)
            return None
        if ed25519 == contact.seen:
            return None
        if contact.state is TrustState.TOFU:
            self._contacts[user] = Contact(user, ed25519, TrustState.TOFU)
            return IdentityChanged(user, blocks_sending=False)
        was_verified = contact.was_verified or contact.state is TrustState.VERIFIED
        changed = replace(
            contact, state=TrustState.CHANGED, was_verified=was_verified, seen=ed25519
        )
        self._contacts[user] = changed
        return IdentityChanged(user, changed.blocks_sending)

    def verify(self, user: str, ed25519: str) -> None:
        """The user compared codes for ``ed25519`` and they matched: trust that key.

        ValueError if ``ed25519`` is not the key this client knows for ``user`` (a
        verification made against an older or a foreign key proves nothing).
        """
        contact = self._contacts.get(user)
        if contact is None:
            raise ValueError(f"no key of {user} is known yet; fetch their keys, then verify")
        if ed25519 != (contact.seen or contact.pinned):
            raise ValueError(f"{user}'s key changed during the verification; start it again")
        self._contacts[user] = Contact(user, ed25519, TrustState.VERIFIED, was_verified=True)

    def acknowledge(self, user: str) -> None:
        """The user accepted a changed key: pin it as ``tofu``; sending resumes."""
        contact = self._contacts.get(user)
        if contact is None or contact.state is not TrustState.CHANGED or contact.seen is None:
            return
        self._contacts[user] = Contact(user, contact.seen, TrustState.TOFU)

    def check_sending(self, users: Iterable[str]) -> None:
        """Raise :class:`SendingBlocked` if any of ``users`` is a changed verified contact."""
        blocked = sorted(
            user for user in users if (c := self._contacts.get(user)) and c.blocks_sending
        )
        if blocked:
            names = ", ".join(blocked)
            raise SendingBlocked(
                f"not sent: the identity key of {names} changed since you verified it; "
                "compare safety numbers, then acknowledge the change to send again"
            )

    def current_key(self, user: str) -> str | None:
        """The user key that room keys are shared under: the newest one seen."""
        contact = self._contacts.get(user)
        return (contact.seen or contact.pinned) if contact else None

    # --- at rest (public data) --------------------------------------------------------------

    def to_state(self) -> list[dict[str, Any]]:
        return [
            {**asdict(contact), "state": contact.state.value}
            for contact in sorted(self._contacts.values(), key=lambda c: c.user)
        ]

    @classmethod
    def from_state(cls, state: list[dict[str, Any]]) -> ContactBook:
        return cls(Contact(**{**item, "state": TrustState(item["state"])}) for item in state)
