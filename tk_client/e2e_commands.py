"""The typed end-to-end commands (section 4.7-4.8): /verify, /confirm, /approve, ... No tkinter.

A mixin of :class:`~tk_client.controller.ChatController`, over the actions of
:class:`~tk_client.e2e_actions.E2EActions`: these read what was typed, answer in words
(never a traceback) when the device has no end-to-end link or the user or device is
unknown, and keep the verifications in progress (:attr:`verifications`), so that
``/confirm``, ``/cancel`` and ``/accept`` need no transaction id and a view can say who
the codes it shows are with. The commands' usage and help are in
:mod:`tk_client.commands`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from chatproto.messages import USERNAME_RE

from .commands import help_text
from .e2e.link import DeviceView, KeysFetched
from .e2e.verification import (
    CodesReady,
    VerificationCancelled,
    VerificationRequested,
    VerificationStarted,
    Verified,
)
from .e2e_actions import E2EActions

if TYPE_CHECKING:
    from .account import AccountActions

CONFIRM_RESET = "yes"  # /reset-identity yes: the confirmation a script types
RESET_IDENTITY_WARNING = (
    "Resetting your identity makes a new encryption key on this device: your other "
    "devices must be approved again, and your contacts are told that your identity "
    "changed (those who verified you must verify you again)."
)


@dataclass
class VerificationInProgress:
    """One emoji comparison this device takes part in, as the commands see it."""

    txn: str
    user: str  # the other device's user (our own for a device approval)
    device: str
    kind: str  # "contact" or "device" (section 4.7)
    stage: str  # "started", "requested", "accepted", "codes", "confirmed"


class E2ECommands(E2EActions):
    """``/verify``, ``/verified``, ``/accept``, ``/confirm``, ``/cancel``, ``/approve``,
    ``/acknowledge``, ``/reset-identity`` and ``/devices [USER]``."""

    if TYPE_CHECKING:  # the controller's (3.4)

        @property
        def account(self) -> AccountActions: ...

        def refresh_devices(self) -> None: ...

    @cached_property
    def verifications(self) -> dict[str, VerificationInProgress]:
        """The verifications in progress by transaction id, oldest first."""
        return {}

    def verification(self, txn: str) -> VerificationInProgress | None:
        """Who the verification ``txn`` is with (for the view printing its codes)."""
        return self.verifications.get(txn)

    # --- following the verifications ---------------------------------------------------------

    def _e2e_events(self, events: Iterable[Any]) -> None:
        events = list(events)
        for event in events:
            self._follow(event)
        super()._e2e_events(events)

    def _follow(self, event: Any) -> None:
        if isinstance(event, VerificationStarted):
            self.verifications[event.txn] = VerificationInProgress(
                event.txn, event.user, event.device, event.kind, "started"
            )
        elif isinstance(event, KeysFetched):
            for user in event.users:  # typed again: now it shows, or says why not
                for command in sorted(self._after_keys.get(user, ())):
                    getattr(self, f"_cmd_{command}")(user)
        elif isinstance(event, VerificationRequested):
            self.verifications[event.txn] = VerificationInProgress(
                event.txn, event.user, event.device, event.kind, "requested"
            )
        elif isinstance(event, CodesReady):
            known = self.verifications.pop(event.txn, None)
            if known is None:
                known = self._unnamed(event.txn)
            known.stage = "codes"
            self.verifications[event.txn] = known  # now the latest
        elif isinstance(event, Verified | VerificationCancelled):
            self.verifications.pop(event.txn, None)

    def _unnamed(self, txn: str) -> VerificationInProgress:
        """A verification first heard of by its codes: its peer from the engine if it can
        say, else unnamed ("" user and device: the codes are still shown and confirmed)."""
        peer = self.e2e.peer_of(txn) if self.e2e is not None else None
        if peer is None:
            return VerificationInProgress(txn, "", "", "contact", "codes")
        user, device = peer
        kind = "device" if user == self.username else "contact"
        return VerificationInProgress(txn, user, device, kind, "codes")

    @cached_property
    def _after_keys(self) -> dict[str, set[str]]:
        """user -> the commands (/verify, /devices USER) typed before that user's keys were
        fetched: carried out again when they arrive."""
        return {}

    def _known_or_fetch(self, command: str, user: str, known: bool, what: str) -> bool:
        """True to go on with ``command`` for ``user``: what it needs is ``known``, or it
        already waited for their keys once (then it says what is missing). Else fetch the
        keys, say so, and run ``command`` again when they arrive (False)."""
        waiting = self._after_keys.get(user, set())
        if known or command in waiting:
            waiting.discard(command)
            return True
        assert self.e2e is not None
        self._after_keys.setdefault(user, set()).add(command)
        self._notice(f"Fetching {user}'s keys; {what} follows.")
        self._e2e_events(self.e2e.fetch_keys(user))
        return False

    def _latest(self, args: str, stages: tuple[str, ...]) -> VerificationInProgress | None:
        """The latest verification in one of ``stages`` (with ``args``: with that user)."""
        wanted = args.strip()
        for flow in reversed(self.verifications.values()):
            if flow.stage in stages and (not wanted or wanted in (flow.user, flow.device)):
                return flow
        return None

    # --- checks ------------------------------------------------------------------------------

    def _e2e_usage(self, name: str, problem: str = "") -> bool:
        prefix = f"{problem} " if problem else ""
        self._notice(prefix + help_text(name), "error")
        return False

    def _other_user(self, name: str, args: str) -> str | None:
        """The one username ``args`` names: not this user, and known if the list is."""
        words = args.split()
        if len(words) != 1:
            self._e2e_usage(name)
            return None
        user = words[0]
        if not USERNAME_RE.fullmatch(user):
            self._e2e_usage(name, f"'{user}' is not a valid username.")
            return None
        if user == self.username:
            self._notice(
                "That is you. To check your own devices, type /devices; to approve a new "
                "one, /approve DEVICE.",
                "error",
            )
            return None
        if self.all_users and user not in self.all_users:
            self._notice(
                f"There is no user named '{user}'. Type /users to see who is here.", "error"
            )
            return None
        return user

    def _has_link(self) -> bool:
        return self._link_or_say() is not None

    # --- the commands ------------------------------------------------------------------------

    def _cmd_verify(self, args: str) -> bool:
        user = self._other_user("verify", args)
        if user is None or not self._has_link():
            return False
        number = self.safety_number(user)
        known = number is not None or self.e2e is None or not self.e2e.approved
        if not self._known_or_fetch("verify", user, known, "the safety number"):
            return True
        if number is None:
            self._notice(
                f"The safety number with {user} is not known yet: "
                + self._why_no_keys(user)
                + f" Then type /verify {user} again.",
                "error",
            )
            return False
        self._notice(
            f"Safety number with {user}: {number}\n"
            f"Compare it with the one {user}'s client shows for you (in person or on a call); "
            f"if all 60 digits match, type /verified {user}."
        )
        signed = [d for d in self.e2e_devices(user) if d.signed]
        if not signed:
            self._notice(
                f"{user} has no approved device that this client knows of, so no emoji "
                "comparison was started; the safety number is enough."
            )
            return True
        if self.verify_contact(user, signed[0].device):
            self._notice(
                f"Or compare emoji: asked {user}'s device {signed[0].device}; "
                "the emoji show here once they accept."
            )
        return True

    def _why_no_keys(self, user: str) -> str:
        if self.e2e is not None and not self.e2e.approved:
            return "this device is not approved yet."
        return f"{user} has no encryption key yet (they have not used a remembered device)."

    def _cmd_verified(self, args: str) -> bool:
        user = self._other_user("verified", args)
        if user is None or not self._has_link():
            return False
        return self.mark_verified(user)

    def _cmd_accept(self, args: str) -> bool:
        if not self._has_link():
            return False
        flow = self._latest(args, ("requested",))
        if flow is None:
            self._notice("No verification is waiting for you to accept.", "error")
            return False
        flow.stage = "accepted"
        if not self.accept_verification(flow.txn):
            return False
        self._notice(f"Accepted: the codes to compare with {_whose(flow)} follow.")
        return True

    def _cmd_confirm(self, args: str) -> bool:
        if not self._has_link():
            return False
        flow = self._latest(args, ("codes",))
        if flow is None:
            self._notice("No codes are waiting for your confirmation.", "error")
            return False
        flow.stage = "confirmed"
        if not self.confirm_verification(flow.txn):
            return False
        if flow.txn in self.verifications:  # not over yet: the other side confirms too
            self._notice(f"Confirmed; waiting for {_whose(flow)} to confirm as well.")
        return True

    def _cmd_cancel(self, args: str) -> bool:
        if not self._has_link():
            return False
        flow = self._latest(args, ("started", "requested", "accepted", "codes", "confirmed"))
        if flow is None:
            self._notice("No verification is in progress.", "error")
            return False
        self.verifications.pop(flow.txn, None)
        if not self.cancel_verification(flow.txn):
            return False
        self._notice(f"The verification with {_whose(flow)} was cancelled.")
        return True

    def _cmd_approve(self, args: str) -> bool:
        words = args.split()
        if len(words) != 1:
            return self._e2e_usage("approve")
        if not self._has_link():
            return False
        assert self.e2e is not None
        if not self.e2e.approved:
            self._notice(
                "This device is not approved itself, so it cannot approve others: approve "
                "it from a device you already use.",
                "error",
            )
            return False
        device = self._own_device(words[0])
        if device is None:
            return False
        if device.this_device:
            self._notice("That is this device.", "error")
            return False
        if not self.approve_device(device.device):
            return False
        self._notice(
            f"Asked your device {device.device} to compare codes: accept there, "
            "then compare the emoji on both screens."
        )
        return True

    def _own_device(self, wanted: str) -> DeviceView | None:
        """One of this user's devices with keys, by id, or by the name /devices shows."""
        mine = self.e2e_devices(self.username or "")
        ids = {d.device: d for d in mine}
        if wanted in ids:
            return ids[wanted]
        named = [d.device for d in self.account.devices or () if d.name == wanted]
        if len(named) == 1 and named[0] in ids:
            return ids[named[0]]
        known = ", ".join(sorted(ids)) or "none yet"
        self._notice(
            f"There is no device '{wanted}' of yours with encryption keys (known: {known}). "
            "Type /devices to list them.",
            "error",
        )
        return None

    def _cmd_acknowledge(self, args: str) -> bool:
        user = self._other_user("acknowledge", args)
        if user is None or not self._has_link():
            return False
        assert self.e2e is not None
        if user not in self.e2e.lock([user]).changed:
            self._notice(f"{user}'s identity has not changed: there is nothing to accept.")
            return False
        return self.acknowledge_identity(user)

    def _cmd_reset_identity(self, args: str) -> bool:
        answer = args.strip().lower()
        if answer not in ("", CONFIRM_RESET):
            return self._e2e_usage("reset-identity")
        if not self._has_link():
            return False
        if answer == CONFIRM_RESET:
            return self.reset_identity()
        if self.view.account_command("reset-identity", ""):
            return True  # the view asks whether the user is sure, then resets
        self._notice(
            f"{RESET_IDENTITY_WARNING} To do it, type /reset-identity {CONFIRM_RESET}.", "error"
        )
        return False

    def _cmd_devices(self, args: str) -> bool:
        """``/devices``: the account's devices (3.4), with their keys as the view prints
        them; ``/devices USER``: USER's devices with their keys."""
        if not args.strip():
            self.refresh_devices()
            return True
        user = self._other_user("devices", args)
        if user is None or not self._has_link():
            return False
        assert self.e2e is not None
        devices = self.e2e_devices(user)
        if not self._known_or_fetch("devices", user, bool(devices), "the list"):
            return True
        if not devices:
            self._notice(f"{user} has no device with encryption keys yet.")
            return True
        lock = self.e2e.lock([user])
        if user in lock.verified:
            state = f"{user} is verified"
        elif user in lock.changed:
            state = f"{user}'s identity changed (/acknowledge {user}, then /verify {user})"
        else:
            state = f"{user} is not verified (/verify {user})"
        lines = [f"{user}'s devices ({len(devices)}); {state}:"]
        lines += [device_line(d) for d in devices]
        self._notice("\n".join(lines))
        return True


# The command's name has a hyphen, as typed; the controller looks up _cmd_<name>.
setattr(E2ECommands, "_cmd_reset-identity", E2ECommands._cmd_reset_identity)


def device_line(device: DeviceView) -> str:
    """``  DEVICE  key: abcd efgh ...  signed``: one device and its end-to-end key."""
    signed = "signed" if device.signed else f"NOT signed by {device.user}'s identity"
    here = ", this device" if device.this_device else ""
    return f"  {device.device}  key: {device.fingerprint}  ({signed}{here})"


def _whose(flow: VerificationInProgress) -> str:
    if not flow.user:
        return "the other device"
    if flow.kind == "device":
        return f"your device {flow.device}"
    return f"{flow.user}'s device {flow.device}"
