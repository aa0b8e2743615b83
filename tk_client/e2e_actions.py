"""What the user can do about end-to-end encryption (section 4.7-4.8). No tkinter.

A mixin of :class:`~tk_client.controller.ChatController`: both clients' dialogs and
commands (the desktop's Verify and Approve dialogs; the terminal's ``/verify``,
``/approve``, ``/devices``) call these, and hear the results through
:meth:`~tk_client.chat_state.ControllerView.e2e_event` and notices. Every method that
cannot act says why in a notice and returns False; none raises for the user's input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .chat_state import ChatState
from .e2e.errors import E2EError
from .e2e.link import DeviceView, E2ELink
from .secure import NEEDS_A_DEVICE


class E2EActions(ChatState):
    """Verification, approval, and identity actions on the controller's end-to-end link."""

    def _link_or_say(self) -> E2ELink | None:
        if self.e2e is None:
            self._notice(NEEDS_A_DEVICE, "error")
        return self.e2e

    @property
    def e2e_busy(self) -> bool:
        """Encrypted messages typed are still waiting for keys or the device's set-up."""
        return self.e2e is not None and self.e2e.busy

    def e2e_tick(self) -> None:
        """Call every few seconds: verifications idle for 10 minutes are cancelled."""
        if self.e2e is not None:
            self._e2e_events(self.e2e.tick())

    def e2e_devices(self, user: str) -> list[DeviceView]:
        """``user``'s devices as last fetched, with their keys (empty if unknown)."""
        return self.e2e.devices(user) if self.e2e is not None else []

    def fetch_keys(self, user: str) -> None:
        """Ask for ``user``'s keys now (a Verify window opened before any message to them)."""
        if self.e2e is not None:
            self._e2e_events(self.e2e.fetch_keys(user))

    def safety_number(self, user: str) -> str | None:
        """The safety number to compare with ``user`` (12 groups of 5 digits), or None."""
        return self.e2e.safety_number(user) if self.e2e is not None else None

    def approve_device(self, device: str) -> bool:
        """Start approving one of the user's own new devices (4.7): codes to compare follow."""
        return self._start(self.username or "", device, "device")

    def verify_contact(self, user: str, device: str | None = None) -> bool:
        """Start comparing emoji with ``user``'s device (4.8): by default their first signed
        device. False (a notice says why) when none is known."""
        if device is None:
            signed = [d for d in self.e2e_devices(user) if d.signed]
            if not signed:
                self._notice(
                    f"{user} has no verified device that this client knows of yet; compare "
                    "the safety number instead, or try again once they are online.",
                    "error",
                )
                return False
            device = signed[0].device
        return self._start(user, device, "contact")

    def accept_verification(self, txn: str) -> bool:
        return self._on_link(lambda link: link.accept_verification(txn))

    def confirm_verification(self, txn: str) -> bool:
        """The codes match on both devices."""
        return self._on_link(lambda link: link.confirm_verification(txn))

    def cancel_verification(self, txn: str) -> bool:
        """The codes differ, or the user gave up."""
        return self._on_link(lambda link: link.cancel_verification(txn))

    def mark_verified(self, user: str) -> bool:
        """The user compared the safety number with ``user`` and it matched."""
        link = self._link_or_say()
        if link is None:
            return False
        try:
            link.mark_verified(user)
        except ValueError as exc:
            self._notice(str(exc), "error")
            return False
        self._notice(f"{user} is verified.")
        self.view.current_changed(self.current)  # the lock beside the title changes
        return True

    def acknowledge_identity(self, user: str) -> bool:
        """Accept ``user``'s changed identity: sending to them resumes."""
        link = self._link_or_say()
        if link is None:
            return False
        link.acknowledge(user)
        self._notice(f"You accepted {user}'s new identity; compare safety numbers to verify it.")
        self.view.current_changed(self.current)
        return True

    def reset_identity(self) -> bool:
        """Make a new user key on this device (4.7); the answer's notice says it is done."""
        return self._on_link(lambda link: link.reset_identity())

    def _on_link(self, act: Callable[[E2ELink], Iterable[Any]]) -> bool:
        """Do ``act`` on the link and show what it reports; False (said why) without one."""
        link = self._link_or_say()
        if link is None:
            return False
        self._e2e_events(act(link))
        return True

    def _start(self, user: str, device: str, kind: str) -> bool:
        link = self._link_or_say()
        if link is None:
            return False
        try:
            events = link.start_verification(user, device, kind)
        except (ValueError, E2EError) as exc:
            self._notice(str(exc), "error")
            return False
        self._e2e_events(events)
        return True
