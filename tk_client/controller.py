"""What the user's input means. No tkinter here.

The controller sits between a session (:class:`tk_client.session.ChatSession`, or a
fake in the tests) and a view (the Tk main window, the terminal printer, or a
recorder in the tests). It turns input lines into requests; the state they act
on, and what the session's events do to it, is :class:`tk_client.chat_state.ChatState`,
which the controller extends. The desktop and the terminal client share both.

The commands, their usage and their help are the table in :mod:`tk_client.commands`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from chatproto.limits import MAX_ROOM_MEMBERS_AT_CREATION
from chatproto.messages import ROOM_NAME_RE, USERNAME_RE

from .account import (
    REVOKE_DEVICE,
    TURN_ON_2FA,
    AccountActionFailed,
    AccountActions,
    AccountEvent,
    DeviceInfo,
    DevicesListed,
)
from .backup_actions import BackupActions
from .chat_state import ControllerView, Pending, SessionAPI, Transfers
from .commands import (
    COMMANDS,
    Invocation,
    Text,
    UnknownCommand,
    argument_kinds,
    canonical,
    help_text,
    parse_create,
    parse_line,
    room_argument,
    unquote_path,
)
from .completion import Completer, Completion
from .e2e.errors import E2EError
from .e2e.link import WAIT_FOR_APPROVAL
from .e2e_actions import E2EActions
from .e2e_commands import E2ECommands
from .events import LoggedIn, NotConnected, Received, RequestStatus, RequestUpdate
from .files import TransferError
from .model import LOBBY, ChatMessage, ConversationKey, MessageState, Room, pm_key, room_key
from .secure import NEEDS_A_DEVICE, conversation_id, is_end_to_end
from .secure_files import FILES_NEED_A_DEVICE

# The views and the tests know these by the controller's name.
__all__ = ["ChatController", "ControllerView", "SessionAPI", "Transfers"]


class ChatController(BackupActions, E2ECommands, E2EActions):
    """Commands in, conversations out. Call :meth:`handle` with every session event."""

    _revoke_by_name: str | None = None  # /revoke NAME typed before the list of devices came
    _starts_after_enrolment = False  # logged in to set up two-factor login first (3.4)

    @cached_property
    def completer(self) -> Completer:
        """Tab completion of the input line; a submitted or edited line resets it."""
        kinds = argument_kinds()
        return Completer(list(kinds), kinds, self.candidates)

    def candidates(self, kind: str) -> list[str]:
        """Names for Tab completion, by argument kind."""
        if kind == "user":
            return [u for u in self.all_users if u != self.username]
        if kind == "room":
            return list(self.rooms)
        if kind == "joined_room":
            return [r.name for r in self.joined_rooms() if r.name != LOBBY]
        if kind == "private_room":
            return [r.name for r in self.joined_rooms() if r.private]
        if kind == "command":
            return list(COMMANDS)
        if kind == "on_off":
            return ["on", "off"]
        if kind == "backup_step":
            return ["setup", "reset"]
        if kind == "device":
            devices = self.account.devices or ()
            return [d.name for d in devices if d.name.split() == [d.name]] + [
                d.device for d in devices
            ]
        return []

    def complete(self, text: str, cursor: int) -> Completion | None:
        """Tab pressed in the input line (see :mod:`tk_client.completion`)."""
        return self.completer.complete(text, cursor)

    # --- the account (PROTOCOL.md 3.4; results arrive at ControllerView.account_event) ---------

    @cached_property
    def account(self) -> AccountActions:
        return AccountActions(self.session, self._account_event)

    @property
    def two_factor(self) -> bool | None:
        """Two-factor login as far as this client has seen: on, off, or None (unknown)."""
        return self.account.two_factor

    @property
    def otp_enrolment_required(self) -> bool:
        """The server requires two-factor login and the account has none yet."""
        return self.account.otp_enrolment_required

    @property
    def starting_after_enrolment(self) -> bool:
        """Two-factor login was just turned on and the server's ``rooms`` push, which starts
        the session in full, has not come yet: a chat line now would find no room."""
        return self._starts_after_enrolment and not self.account.otp_enrolment_required

    def change_password(self, current: str, new: str) -> None:
        """-> PasswordChanged, or AccountActionFailed (e.g. the current password is wrong)."""
        self.account.change_password(current, new)

    def start_otp_setup(self) -> None:
        """-> OtpSetupStarted(secret, uri): show the QR code, then :meth:`confirm_otp`."""
        self.account.start_otp_setup()

    def confirm_otp(self, code: str) -> None:
        """-> OtpEnabled(backup_codes), shown once."""
        self.account.confirm_otp(code)

    def disable_otp(self, password: str, code: str) -> None:
        """-> OtpDisabled."""
        self.account.disable_otp(password, code)

    def refresh_devices(self) -> None:
        """-> DevicesListed."""
        self.account.refresh_devices()

    def revoke_device(self, device: str) -> None:
        """-> DeviceRevoked(device), then a fresh DevicesListed. ``device`` is the id."""
        self.account.revoke_device(device)

    def log_out(self) -> None:
        """Send ``logout`` and forget this device's token; the session then stops."""
        try:
            self.session.log_out()
        except NotConnected:
            self.account.failed_to_log_out()

    def _account_event(self, event: AccountEvent) -> None:
        if isinstance(event, DevicesListed) and self._revoke_by_name is not None:
            wanted, self._revoke_by_name = self._revoke_by_name, None
            self._revoke_named(wanted, event.devices)
        self.view.account_event(event)

    def handle(self, event: Any) -> None:
        """Take one event from the session's queue (on the user interface's thread)."""
        if isinstance(event, RequestUpdate) and self.account.handle(event):
            return
        if isinstance(event, LoggedIn):
            self.account.logged_in(event)
            if event.otp_enrolment_required:
                self._enrolling(event)
                return
        super().handle(event)
        started = isinstance(event, Received) and event.message.get("type") == "rooms"
        if self._starts_after_enrolment and started:
            # Two-factor login is on: the server started the session in full (3.4).
            self._starts_after_enrolment = False
            self.select(self.current if self.current.name in self.rooms else room_key(LOBBY))

    def _enrolling(self, event: LoggedIn) -> None:
        """Logged in, but only two-factor setup is served until it is on: no history yet
        (it would be refused); the ``rooms`` push after ``otp_confirm`` starts the rest."""
        self._set_rooms(event.rooms)  # before the username: no room to leave, none to show
        self.username = event.username
        self._starts_after_enrolment = True
        self._notice(TURN_ON_2FA, "error")

    # --- input lines -------------------------------------------------------------------------

    def submit(self, line: str) -> bool:
        """Carry out one input line. False: it was refused (keep it in the input to fix it)."""
        self.completer.reset()
        typed = parse_line(line)
        if isinstance(typed, Text):
            return self._send_text(self.current, typed.text)
        if isinstance(typed, UnknownCommand):
            self._notice(
                f"Unknown command /{typed.word}. Type /help for the list of commands.", "error"
            )
            return False
        if isinstance(typed, Invocation):
            return bool(getattr(self, f"_cmd_{typed.name}")(typed.args))
        return False  # a blank line

    # --- commands ----------------------------------------------------------------------------

    def _usage(self, name: str, problem: str = "") -> bool:
        prefix = f"{problem} " if problem else ""
        self._notice(prefix + help_text(name), "error")
        return False

    def _check_user(self, name: str, user: str) -> bool:
        if not USERNAME_RE.fullmatch(user):
            return self._usage(name, f"'{user}' is not a valid username.")
        if self.all_users and user not in self.all_users:
            self._notice(
                f"There is no user named '{user}'. Type /users to see who is here.", "error"
            )
            return False
        return True

    def _check_room(self, name: str, room: str) -> bool:
        if not ROOM_NAME_RE.fullmatch(room):
            return self._usage(
                name,
                f"'{room}' is not a valid room name (lowercase letters, digits, - and _, "
                "at most 32, starting with a letter or digit).",
            )
        return True

    def _cmd_pm(self, args: str) -> bool:
        user, _, text = args.partition(" ")
        if not user:
            return self._usage("pm")
        if not self._check_user("pm", user):
            return False
        if user == self.username:
            self._notice("You cannot send a private message to yourself.", "error")
            return False
        if not text.strip():
            self.select(pm_key(user))
            return True
        return self._send_text(pm_key(user), text)

    def _cmd_file(self, args: str) -> bool:
        user, _, path = args.partition(" ")
        if not user:
            return self._usage("file")
        return self.send_file(user, path)

    def send_file(self, user: str, path: str = "") -> bool:
        """Offer ``user`` the file at ``path`` (``/file``, the Send file button, a drop).

        Without a path the view asks for one. False when refused (a notice says why).
        """
        if not self._check_user("file", user):
            return False
        if user == self.username:
            self._notice("You cannot send a file to yourself.", "error")
            return False
        if self.transfers is None:
            self._notice("Sending files is not available in this version yet.", "error")
            return False
        if self.e2e is None:  # 4.12: only end to end, never a plain offer
            self._notice(f"Not sent: {FILES_NEED_A_DEVICE}", "error")
            return False
        if not self.e2e.can_send:
            self._notice(f"Not sent: {WAIT_FOR_APPROVAL}", "error")
            return False
        path = unquote_path(path)  # pasted or dropped into a terminal with quotes around it
        if not path:
            self.view.choose_file(user)
            return True
        try:
            self.transfers.offer(user, path, end_to_end=True)
        except TransferError as exc:
            self._notice(f"Not sent: {exc}", "error")
            return False
        return True

    def _cmd_join(self, args: str) -> bool:
        parts = args.split()
        if len(parts) != 1:
            return self._usage("join")
        room = room_argument(parts[0])
        if not self._check_room("join", room):
            return False
        if any(r.name == room for r in self.joined_rooms()):
            self.select(room_key(room))
            return True
        self._request("join", Pending("join", room_key(room), room), room=room)
        return True

    def _cmd_leave(self, args: str) -> bool:
        parts = args.split()
        if len(parts) > 1:
            return self._usage("leave")
        if parts:
            room = room_argument(parts[0])
        elif self.current.kind == "room":
            room = self.current.name
        else:
            return self._usage("leave", "This is a private chat, not a room.")
        if not self._check_room("leave", room):
            return False
        if room == LOBBY:
            self._notice("Everyone stays in the lobby; it cannot be left.", "error")
            return False
        if not any(r.name == room for r in self.joined_rooms()):
            self._notice(f"You are not in #{room}.", "error")
            return False
        self._request("leave", Pending("leave", room_key(room), room), room=room)
        return True

    def _cmd_create(self, args: str) -> bool:
        parsed = parse_create(args)
        if parsed is None:
            return self._usage("create")
        room, members = parsed.room, list(parsed.members)
        if not self._check_room("create", room):
            return False
        if room in self.rooms:
            self._notice(f"#{room} already exists. Type /join {room} to join it.", "error")
            return False
        if len(members) > MAX_ROOM_MEMBERS_AT_CREATION:
            return self._usage("create", f"At most {MAX_ROOM_MEMBERS_AT_CREATION} members.")
        for user in members:
            if not self._check_user("create", user):
                return False
        members = [m for m in members if m != self.username]
        private = parsed.private or bool(members)
        self._request(
            "create_room",
            Pending("create", room_key(room), room, tuple(members)),
            room=room,
            private=private,
            members=members,
        )
        return True

    def _cmd_invite(self, args: str) -> bool:
        parts = args.split()
        if len(parts) != 2:
            return self._usage("invite")
        room, user = room_argument(parts[0]), parts[1]
        if not self._check_room("invite", room) or not self._check_user("invite", user):
            return False
        known = self.rooms.get(room)
        if known is not None and not known.private:
            self._notice(
                f"#{room} is public: anyone can /join it; invitations are for private rooms.",
                "error",
            )
            return False
        self._request(
            "invite", Pending("invite", room_key(room), room, (user,)), room=room, user=user
        )
        return True

    def _cmd_users(self, args: str) -> bool:
        online, offline = self.users_by_presence()
        lines = [f"Online ({len(online)}): {', '.join(online) or 'nobody'}"]
        if offline:
            lines.append(f"Offline ({len(offline)}): {', '.join(offline)}")
        self._notice("\n".join(lines))
        return True

    def _cmd_rooms(self, args: str) -> bool:
        def describe(room: Room) -> str:
            return f"#{room.name}" + (" (private)" if room.private else "")

        lines = ["Your rooms: " + ", ".join(describe(r) for r in self.joined_rooms())]
        others = self.other_rooms()
        if others:
            lines.append("Other rooms (/join ROOM): " + ", ".join(describe(r) for r in others))
        self._notice("\n".join(lines))
        return True

    def _cmd_history(self, args: str) -> bool:
        if not self.load_older(self.current):
            self._notice(f"There are no older messages in {self.current}.")
        return True

    def _cmd_help(self, args: str) -> bool:
        name = canonical(args.strip().removeprefix("/"))
        if name and name not in COMMANDS:
            self._notice(f"Unknown command /{name}. " + help_text(), "error")
            return False
        self._notice(help_text(name or None))
        return True

    def _cmd_password(self, args: str) -> bool:
        if args:
            return self._usage("password", "Type /password alone; you are then asked.")
        return self._ask_view("password", "", "change your password")

    def _cmd_2fa(self, args: str) -> bool:
        choice = args.strip().lower()
        if choice not in ("on", "off"):
            return self._usage("2fa")
        return self._ask_view("2fa", choice, f"turn two-factor login {choice}")

    def _ask_view(self, command: str, args: str, what: str) -> bool:
        if self.view.account_command(command, args):
            return True
        self._notice(f"Open the Account window to {what}.", "error")
        return False

    def _cmd_revoke(self, args: str) -> bool:
        wanted = args.strip()
        if not wanted:
            return self._usage("revoke", "Name the device (its id or name; /devices lists them).")
        if self.account.devices is None:
            self._revoke_by_name = wanted  # resolved when the list arrives
            self.refresh_devices()
            return True
        return self._revoke_named(wanted, self.account.devices)

    def _revoke_named(self, wanted: str, devices: tuple[DeviceInfo, ...]) -> bool:
        """Sign out the device with id ``wanted``, else the one device named so."""
        by_id = [d for d in devices if d.device == wanted]
        by_name = [d for d in devices if d.name == wanted] or [
            d for d in devices if d.name.casefold() == wanted.casefold()
        ]
        matches = by_id or by_name
        if len(matches) == 1:
            self.revoke_device(matches[0].device)
            return True
        if matches:
            ids = ", ".join(d.device for d in matches)
            words = f"Several devices are named '{wanted}'; name one by its id: {ids}."
        else:
            words = f"There is no device '{wanted}'. Type /devices to list them."
        self.view.account_event(AccountActionFailed(REVOKE_DEVICE, "unknown_device", words))
        return False

    def _cmd_logout(self, args: str) -> bool:
        self.log_out()
        return True

    def _cmd_quit(self, args: str) -> bool:
        self.view.quit()
        return True

    # --- sending -----------------------------------------------------------------------------

    def _send_text(self, key: ConversationKey, text: str) -> bool:
        if not text.strip():
            return False
        if len(text) > self.max_text:
            self._notice(
                f"Your message is {len(text)} characters long; the limit is {self.max_text}. "
                "It was not sent.",
                "error",
            )
            return False
        if key.kind == "room" and not any(r.name == key.name for r in self.joined_rooms()):
            self._notice(f"You are not in #{key.name}. Type /join {key.name} first.", "error")
            return False
        if is_end_to_end(key, self.rooms):
            return self._send_encrypted(key, text)
        # A public room: the only conversation whose text the server reads (4.1).
        status = self._request("send", Pending("send", key), room=key.name, text=text)
        if status is None:
            return False
        message = ChatMessage(sender=self.username or "", text=text, own=True, request_id=status.id)
        message.state = MessageState.QUEUED
        self._append(key, message)
        return True

    def _send_encrypted(self, key: ConversationKey, text: str) -> bool:
        """Send ``text`` end to end (section 4): never as plain text, whatever happens."""
        if self.e2e is None:
            self._notice(NEEDS_A_DEVICE, "error")
            return False
        message = ChatMessage(
            sender=self.username or "",
            text=text,
            own=True,
            private=key.kind == "pm",
            state=MessageState.QUEUED,
            encrypted=True,
        )

        def on_request(status: RequestStatus | None) -> None:
            if status is None:  # this device turned out to need approval first
                message.state, message.error = MessageState.FAILED, WAIT_FOR_APPROVAL
                self.view.message_changed(key, message)
                return
            message.request_id = status.id
            self._pending[status.id] = Pending("send", key)

        conversation = conversation_id(key, self.username or "")
        try:
            events = self.e2e.encrypt(conversation, self.members_of(key), text, on_request)
        except E2EError as exc:
            self._notice(str(exc), "error")
            return False
        self._append(key, message)
        if key != self.current and key.kind == "pm":
            self.view.conversations_changed()  # a new private chat appears in the list
        self._e2e_events(events)
        return True
