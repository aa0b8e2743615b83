"""What the user's input means, and the state of every conversation. No tkinter here.

The controller sits between a session (:class:`tk_client.session.ChatSession`, or a
fake in the tests) and a view (the Tk main window, the terminal printer, or a
recorder in the tests). It turns input lines into requests, and session events
into conversations: rooms and private chats, each a list of messages in display
order, with unread counts and history paging. The view is told what changed
through the small :class:`ControllerView` interface and reads the rest from the
controller's attributes; it never interprets protocol messages itself.

Commands (``/help`` prints the same table)::

    TEXT                    send to the current conversation (``//text`` sends "/text")
    /pm USER [TEXT]         private message; without TEXT, switch to the chat with USER
    /file USER [PATH]       offer USER a file
    /join ROOM              join a public room, or switch to a room you are in
    /leave [ROOM]           leave ROOM (default: the current room)
    /create ROOM [USER...]  a public room; with users, a private room with them as members
    /create ROOM --private  a private room with only you (add people with /invite)
    /invite ROOM USER       add USER to your private room ROOM
    /users, /rooms          who is here, which rooms there are
    /history                older messages of the current conversation
    /help [COMMAND], /quit
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from chatproto.limits import HISTORY_DEFAULT_LIMIT, MAX_ROOM_MEMBERS_AT_CREATION, MAX_TEXT
from chatproto.messages import ROOM_NAME_RE, USERNAME_RE

from .completion import REPEAT, Completer, Completion
from .events import (
    ConnectFailed,
    Greeted,
    KeyChanged,
    LoggedIn,
    LoginRejected,
    NotConnected,
    Phase,
    PhaseChanged,
    Received,
    RequestState,
    RequestStatus,
    RequestUpdate,
    Stopped,
    TrustRequired,
)
from .files import FileOffered, TransferChanged, TransferError, TransferInfo, TransferState
from .model import (
    LOBBY,
    ChatMessage,
    Conversation,
    ConversationKey,
    MessageState,
    Room,
    pm_key,
    room_key,
)

# --- the interfaces on both sides ----------------------------------------------------------------


class SessionAPI(Protocol):
    """What the controller needs from a session (ChatSession has it; tests pass a fake)."""

    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus: ...
    def send_message(self, message: dict[str, Any]) -> None: ...


class ControllerView:
    """What a view hears from the controller. Every method may be left as this no-op."""

    def message_added(self, key: ConversationKey, message: ChatMessage) -> None:
        """``message`` was appended to the end of the conversation."""

    def message_changed(self, key: ConversationKey, message: ChatMessage) -> None:
        """A message in the conversation changed state (sent, delivered, failed)."""

    def conversation_changed(self, key: ConversationKey, older: int = 0) -> None:
        """Messages were inserted; ``older`` > 0: exactly that many at the top (history)."""

    def conversations_changed(self) -> None:
        """Rooms, private chats or unread counts changed."""

    def current_changed(self, key: ConversationKey) -> None:
        """The user switched to another conversation."""

    def users_changed(self) -> None:
        """Who exists or who is online changed."""

    def status_changed(self, phase: Phase, detail: str, retry_at: float | None) -> None:
        """The connection's phase (for the status bar)."""

    def session_event(self, event: Any) -> None:
        """Events the controller leaves to the view: trust, login answers, the session's end."""

    def quit(self) -> None:
        """The user typed /quit."""

    def choose_file(self, user: str) -> None:
        """``/file USER`` without a path: ask the user for one (a file dialog)."""

    def file_offered(self, offer: TransferInfo) -> bool:
        """Someone offers a file: True if the view asks the user (else it is declined)."""
        return False

    def transfer_changed(self, info: TransferInfo) -> None:
        """A file transfer's stage or progress changed (for progress bars)."""


class Transfers(Protocol):
    """The file-transfer side (:class:`tk_client.files.TransferManager`).

    ``offer`` raises :class:`~tk_client.files.TransferError` with words
    for the user when it cannot start.
    """

    def offer(self, user: str, path: str) -> None: ...
    def decline(self, transfer: str) -> None: ...
    def handle(self, message: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    arguments: tuple[str, ...] = ()  # completion kinds, see :meth:`ChatController.candidates`


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command(
            "pm",
            "/pm USER [TEXT]",
            "send USER a private message; without TEXT, switch to the chat with USER",
            ("user",),
        ),
        Command("file", "/file USER [PATH]", "offer USER a file", ("user",)),
        Command(
            "join", "/join ROOM", "join a public room, or switch to a room you are in", ("room",)
        ),
        Command(
            "leave", "/leave [ROOM]", "leave ROOM (the current room if none)", ("joined_room",)
        ),
        Command(
            "create",
            "/create ROOM [USER...]",
            "create a public room; with users (or --private), a private room with them",
            ("new_room", "user" + REPEAT),
        ),
        Command(
            "invite",
            "/invite ROOM USER",
            "add USER to your private room ROOM",
            ("private_room", "user"),
        ),
        Command("users", "/users", "list the users, online ones first"),
        Command("rooms", "/rooms", "list the rooms you can see"),
        Command("history", "/history", "load older messages of this conversation"),
        Command("help", "/help [COMMAND]", "show the commands, or one command", ("command",)),
        Command("quit", "/quit", "quit"),
    )
}
ALIASES = {"msg": "pm", "query": "pm", "part": "leave", "exit": "quit", "who": "users"}


def help_text(name: str | None = None) -> str:
    """The command table (or one command's usage), as shown by /help."""
    if name is not None:
        command = COMMANDS[name]
        return f"Usage: {command.usage} -- {command.help}"
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = ["Commands:"]
    lines += [f"  {c.usage.ljust(width)}  {c.help}" for c in COMMANDS.values()]
    lines.append("Anything else is sent to the current conversation; start it with // to send /.")
    lines.append("Tab completes commands, usernames and room names.")
    return "\n".join(lines)


@dataclass(frozen=True)
class _Pending:
    """What a request was for, to make sense of its answer."""

    action: str
    key: ConversationKey | None = None
    arg: str = ""
    extra: tuple[str, ...] = ()


# --- the controller ----------------------------------------------------------------------------


class ChatController:
    """Commands in, conversations out. Call :meth:`handle` with every session event."""

    def __init__(
        self,
        session: SessionAPI,
        view: ControllerView | None = None,
        *,
        transfers: Transfers | None = None,
        autoload_history: bool = True,
    ) -> None:
        """``autoload_history``: load a conversation's recent messages when it is shown
        (the desktop); the terminal client loads history only on /history."""
        self.session = session
        self.autoload_history = autoload_history
        self.view = view or ControllerView()
        self.transfers = transfers
        self.username: str | None = None
        self.server_name = ""
        self.max_text = MAX_TEXT
        self.phase = Phase.IDLE
        self.rooms: dict[str, Room] = {}
        self.online: set[str] = set()
        self.all_users: list[str] = []
        self.conversations: dict[ConversationKey, Conversation] = {}
        self.current = room_key(LOBBY)
        self._pending: dict[str, _Pending] = {}
        self._declined_here: set[str] = set()  # offers this controller declined for the view
        self.completer = Completer(
            list(COMMANDS) + list(ALIASES),
            {name: c.arguments for name, c in COMMANDS.items()}
            | {alias: COMMANDS[name].arguments for alias, name in ALIASES.items()},
            self.candidates,
        )

    # --- queries for the views ---------------------------------------------------------------

    def conversation(self, key: ConversationKey) -> Conversation:
        if key not in self.conversations:
            self.conversations[key] = Conversation(key)
        return self.conversations[key]

    def joined_rooms(self) -> list[Room]:
        """The rooms the user is a member of: the lobby first, then by name."""
        rooms = [r for r in self.rooms.values() if self.username in r.members or r.name == LOBBY]
        return sorted(rooms, key=lambda r: (r.name != LOBBY, r.name))

    def other_rooms(self) -> list[Room]:
        """Public rooms the user could join."""
        joined = {r.name for r in self.joined_rooms()}
        return sorted(
            (r for r in self.rooms.values() if r.name not in joined), key=lambda r: r.name
        )

    def private_chats(self) -> list[ConversationKey]:
        return sorted(k for k in self.conversations if k.kind == "pm")

    def total_unread(self) -> int:
        return sum(c.unread for c in self.conversations.values())

    def title(self, key: ConversationKey) -> str:
        """A heading for the conversation, e.g. ``#dev - private, 3 members``."""
        if key.kind == "pm":
            state = "online" if key.name in self.online else "offline"
            return f"{key.name} - private conversation ({state})"
        room = self.rooms.get(key.name)
        if room is None:
            return f"#{key.name}"
        if room.name == LOBBY:
            return f"#{LOBBY} - everyone"
        members = len(room.members)
        kind = "private" if room.private else "public"
        return f"#{room.name} - {kind}, {members} member{'s' if members != 1 else ''}"

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
        return []

    def complete(self, text: str, cursor: int) -> Completion | None:
        """Tab pressed in the input line (see :mod:`tk_client.completion`)."""
        return self.completer.complete(text, cursor)

    # --- user actions ------------------------------------------------------------------------

    def select(self, key: ConversationKey) -> None:
        """Show ``key``: it becomes current, its unread count clears, its history loads."""
        conversation = self.conversation(key)
        self.current = key
        conversation.unread = 0
        self.view.current_changed(key)
        self.view.conversations_changed()
        if self.autoload_history and conversation.has_more is None and not conversation.loading:
            self.load_older(key)

    def load_older(self, key: ConversationKey | None = None) -> bool:
        """Ask for the page of history before the oldest message shown; False if none is left."""
        key = key or self.current
        conversation = self.conversation(key)
        if conversation.loading or conversation.has_more is False:
            return False
        fields: dict[str, Any] = {"limit": HISTORY_DEFAULT_LIMIT}
        fields["room" if key.kind == "room" else "with"] = key.name
        oldest = conversation.oldest_id()
        if oldest is not None:
            fields["before"] = oldest
        conversation.loading = True
        self._request("history", _Pending("history", key), **fields)
        return True

    def submit(self, line: str) -> bool:
        """Carry out one input line. False: it was refused (keep it in the input to fix it)."""
        self.completer.reset()
        text = line.rstrip("\r\n")
        if not text.strip():
            return False
        if text.startswith("/") and not text.startswith("//"):
            return self._command(text)
        if text.startswith("//"):
            text = text[1:]
        return self._send_text(self.current, text)

    # --- commands ----------------------------------------------------------------------------

    def _command(self, line: str) -> bool:
        name, _, rest = line[1:].partition(" ")
        name = ALIASES.get(name.lower(), name.lower())
        command = COMMANDS.get(name)
        if command is None:
            self._notice(
                f"Unknown command /{line[1:].split(' ')[0]}. Type /help for the list of commands.",
                "error",
            )
            return False
        return getattr(self, f"_cmd_{name}")(rest.strip())

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
        path = path.strip()
        if len(path) > 1 and path[0] == path[-1] and path[0] in "'\"":
            path = path[1:-1]  # pasted or dropped into a terminal with quotes around it
        if not path:
            self.view.choose_file(user)
            return True
        try:
            self.transfers.offer(user, path)
        except TransferError as exc:
            self._notice(f"Not sent: {exc}", "error")
            return False
        return True

    def _cmd_join(self, args: str) -> bool:
        parts = args.split()
        if len(parts) != 1:
            return self._usage("join")
        room = parts[0].removeprefix("#")
        if not self._check_room("join", room):
            return False
        if any(r.name == room for r in self.joined_rooms()):
            self.select(room_key(room))
            return True
        self._request("join", _Pending("join", room_key(room), room), room=room)
        return True

    def _cmd_leave(self, args: str) -> bool:
        parts = args.split()
        if len(parts) > 1:
            return self._usage("leave")
        if parts:
            room = parts[0].removeprefix("#")
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
        self._request("leave", _Pending("leave", room_key(room), room), room=room)
        return True

    def _cmd_create(self, args: str) -> bool:
        parts = args.split()
        private = "--private" in parts
        parts = [p for p in parts if p != "--private"]
        if not parts:
            return self._usage("create")
        room, members = parts[0].removeprefix("#"), list(dict.fromkeys(parts[1:]))
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
        private = private or bool(members)
        self._request(
            "create_room",
            _Pending("create", room_key(room), room, tuple(members)),
            room=room,
            private=private,
            members=members,
        )
        return True

    def _cmd_invite(self, args: str) -> bool:
        parts = args.split()
        if len(parts) != 2:
            return self._usage("invite")
        room, user = parts[0].removeprefix("#"), parts[1]
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
            "invite", _Pending("invite", room_key(room), room, (user,)), room=room, user=user
        )
        return True

    def _cmd_users(self, args: str) -> bool:
        online = [u for u in self.all_users if u in self.online]
        offline = [u for u in self.all_users if u not in self.online]
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
        name = args.strip().removeprefix("/").lower()
        name = ALIASES.get(name, name)
        if name and name not in COMMANDS:
            self._notice(f"Unknown command /{name}. " + help_text(), "error")
            return False
        self._notice(help_text(name or None))
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
        if key.kind == "room":
            if not any(r.name == key.name for r in self.joined_rooms()):
                self._notice(f"You are not in #{key.name}. Type /join {key.name} first.", "error")
                return False
            status = self._request("send", _Pending("send", key), room=key.name, text=text)
        else:
            status = self._request("pm", _Pending("send", key), to=key.name, text=text)
        if status is None:
            return False
        message = ChatMessage(
            sender=self.username or "",
            text=text,
            own=True,
            private=key.kind == "pm",
            state=MessageState.QUEUED,
            request_id=status.id,
        )
        self._append(key, message)
        if key != self.current and key.kind == "pm":
            self.view.conversations_changed()  # a new private chat appears in the list
        return True

    def _request(self, type_: str, pending: _Pending, **fields: Any) -> RequestStatus | None:
        try:
            status = self.session.request(type_, **fields)
        except NotConnected as exc:  # the session ended
            self._notice(f"Not sent: {exc}.", "error")
            return None
        self._pending[status.id] = pending
        return status

    # --- session events ----------------------------------------------------------------------

    def handle(self, event: Any) -> None:
        """Take one event from the session's queue (on the user interface's thread)."""
        if isinstance(event, RequestUpdate):
            self._on_update(event.request, event.answer)
        elif isinstance(event, Received):
            self._on_push(event.message)
        elif isinstance(event, PhaseChanged):
            self.phase = event.phase
            self.view.status_changed(event.phase, event.detail, event.retry_at)
        elif isinstance(event, LoggedIn):
            self._on_logged_in(event)
        elif isinstance(event, Greeted):
            self.server_name = str(event.greeting.get("server") or "")
            limits = event.greeting.get("limits")
            if isinstance(limits, dict) and type(limits.get("max_text")) is int:
                self.max_text = min(MAX_TEXT, max(1, limits["max_text"]))
            self.view.session_event(event)
        elif isinstance(
            event, TrustRequired | KeyChanged | ConnectFailed | LoginRejected | Stopped
        ):
            self.view.session_event(event)
        elif isinstance(event, FileOffered | TransferChanged):
            self._on_transfer(event)

    def _on_transfer(self, event: FileOffered | TransferChanged) -> None:
        info = event.info
        if isinstance(event, FileOffered):
            if not self.view.file_offered(info) and self.transfers is not None:
                self._declined_here.add(info.transfer)
                self.transfers.decline(info.transfer)
                self._notice(
                    f"{info.peer} offered you the file {info.name}, but this client cannot ask "
                    "you where to save it; it was declined.",
                    "error",
                )
            return
        self.view.transfer_changed(info)
        if info.over and info.transfer not in self._declined_here:
            chosen = info.local and info.reason in ("rejected", "cancelled")  # the user's choice
            failed = info.stage is TransferState.FAILED and not chosen
            self._notice(info.message, "error" if failed else "info")
        if info.over:
            self._declined_here.discard(info.transfer)

    def _on_logged_in(self, event: LoggedIn) -> None:
        self.username = event.username
        self._set_rooms(event.rooms)
        if not event.again:
            self.select(self.current if self.current.name in self.rooms else room_key(LOBBY))
            return
        # Back after an outage: fetch what was missed in every conversation already loaded.
        for key, conversation in self.conversations.items():
            if conversation.has_more is not None and not conversation.loading:
                fields: dict[str, Any] = {"limit": HISTORY_DEFAULT_LIMIT}
                fields["room" if key.kind == "room" else "with"] = key.name
                conversation.loading = True
                self._request("history", _Pending("refresh", key), **fields)

    def _on_update(self, status: RequestStatus, answer: dict[str, Any] | None) -> None:
        pending = self._pending.get(status.id)
        if pending is None:
            return
        if status.state in (RequestState.DONE, RequestState.FAILED):
            del self._pending[status.id]
        if pending.action == "send":
            self._on_send_update(pending.key, status, answer)
            return
        if status.state is RequestState.FAILED:
            self._on_failed(pending, status)
            return
        if status.state is not RequestState.DONE or answer is None:
            return
        if pending.action in ("history", "refresh"):
            self._on_history(pending, answer)
            return
        if isinstance(answer.get("rooms"), list):
            self._set_rooms(answer["rooms"])
        room = pending.arg
        if pending.action == "join":
            self.select(room_key(room))
            self._notice(f"You joined #{room}.")
        elif pending.action == "leave":
            self._notice(f"You left #{room}.")
            if self.current == room_key(room):
                self.select(room_key(LOBBY))
            if room not in self.rooms:
                self.conversations.pop(room_key(room), None)
            self.view.conversations_changed()
        elif pending.action == "create":
            self.select(room_key(room))
            created = self.rooms.get(room)
            if created is not None and created.private:
                others = [m for m in created.members if m != self.username]
                who = ", ".join(others) if others else "only you so far (add people with /invite)"
                self._notice(f"You created the private room #{room}, with {who}.")
            else:
                self._notice(f"You created the public room #{room}; anyone can /join it.")
        elif pending.action == "invite":
            self._notice(f"{pending.extra[0]} is now a member of #{room}.")

    def _on_failed(self, pending: _Pending, status: RequestStatus) -> None:
        reason = status.error or "the server refused it"
        what = {
            "join": f"Could not join #{pending.arg}",
            "leave": f"Could not leave #{pending.arg}",
            "create": f"Could not create #{pending.arg}",
            "invite": f"Could not add {''.join(pending.extra)} to #{pending.arg}",
            "history": "Could not load older messages",
            "refresh": "Could not load the messages missed while offline",
        }.get(pending.action, "The request failed")
        if pending.action == "join" and status.code == "unknown_room":
            reason = (
                f"there is no public room #{pending.arg} (create it with /create {pending.arg})"
            )
        if pending.key is not None and pending.action in ("history", "refresh"):
            self.conversation(pending.key).loading = False
        self._notice(f"{what}: {reason}", "error")

    def _on_send_update(
        self, key: ConversationKey | None, status: RequestStatus, answer: dict[str, Any] | None
    ) -> None:
        assert key is not None
        conversation = self.conversation(key)
        message = next((m for m in conversation.messages if m.request_id == status.id), None)
        if message is None:
            return
        if status.state is RequestState.SENT:
            message.state = MessageState.SENDING
        elif status.state is RequestState.FAILED:
            message.state = MessageState.FAILED
            message.error = status.error
        elif status.state is RequestState.DONE and answer is not None:
            msg_id, ts = answer.get("msg_id"), answer.get("ts")
            if type(msg_id) is int and conversation.find(msg_id) is not None:
                # The server's echo arrived before the ack: keep that one.
                conversation.messages.remove(message)
                self.view.conversation_changed(key)
                return
            message.state = MessageState.DELIVERED
            message.msg_id = msg_id if type(msg_id) is int else None
            message.ts = ts if isinstance(ts, str) else None
        else:
            return
        self.view.message_changed(key, message)

    def _on_history(self, pending: _Pending, answer: dict[str, Any]) -> None:
        key = pending.key
        assert key is not None
        conversation = self.conversation(key)
        conversation.loading = False
        raw = answer.get("messages")
        incoming = []
        for item in raw if isinstance(raw, list) else []:
            message = self._from_wire(item, key.kind == "pm") if isinstance(item, dict) else None
            if message is not None:
                incoming.append(message)
        if pending.action == "history" or conversation.has_more is None:
            conversation.has_more = bool(answer.get("has_more"))
        newest = max(
            (m.msg_id for m in conversation.messages if m.msg_id is not None), default=None
        )
        if pending.action == "refresh" and newest is not None:
            # Missed while offline and newer than everything shown: they simply come next.
            for message in sorted(incoming, key=lambda m: m.msg_id or 0):
                if message.msg_id is not None and message.msg_id > newest:
                    self._receive(key, message)
            incoming = [m for m in incoming if m.msg_id is not None and m.msg_id <= newest]
        added_at_top, added_inside = self._merge(conversation, incoming)
        if added_at_top or added_inside:
            self.view.conversation_changed(key, older=0 if added_inside else added_at_top)
        elif pending.action == "history" and key == self.current:
            self.view.conversation_changed(key, older=0)

    def _merge(self, conversation: Conversation, incoming: list[ChatMessage]) -> tuple[int, int]:
        """Insert server messages in msg_id order; how many went to the top, how many inside."""
        top = inside = 0
        for message in sorted(incoming, key=lambda m: m.msg_id or 0, reverse=True):
            if message.msg_id is None or conversation.find(message.msg_id) is not None:
                continue
            index = self._position(conversation, message.msg_id)
            conversation.messages.insert(index, message)
            if index == 0:
                top += 1
            else:
                inside += 1
        return top, inside

    @staticmethod
    def _position(conversation: Conversation, msg_id: int) -> int:
        for index in range(len(conversation.messages) - 1, -1, -1):
            other = conversation.messages[index].msg_id
            if other is not None and other < msg_id:
                return index + 1
        return 0

    def _from_wire(self, message: dict[str, Any], private: bool) -> ChatMessage | None:
        sender, text = message.get("from"), message.get("text")
        msg_id, ts = message.get("msg_id"), message.get("ts")
        if not isinstance(sender, str) or not isinstance(text, str) or type(msg_id) is not int:
            return None
        return ChatMessage(
            sender=sender,
            text=text,
            ts=ts if isinstance(ts, str) else None,
            msg_id=msg_id,
            own=sender == self.username,
            private=private,
        )

    def _on_push(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "message":
            room = message.get("room")
            chat = self._from_wire(message, private=False)
            if isinstance(room, str) and chat is not None:
                self._receive(room_key(room), chat)
        elif kind == "private":
            chat = self._from_wire(message, private=True)
            partner = (
                message.get("to") if message.get("from") == self.username else message.get("from")
            )
            if isinstance(partner, str) and chat is not None:
                self._receive(pm_key(partner), chat)
        elif kind == "users":
            online, everyone = message.get("online"), message.get("all")
            if isinstance(online, list) and isinstance(everyone, list):
                self.online = {u for u in online if isinstance(u, str)}
                self.all_users = sorted(
                    {u for u in everyone if isinstance(u, str)} | self.online, key=str.lower
                )
                self.view.users_changed()
                if self.current.kind == "pm":
                    self.view.current_changed(self.current)  # the heading says online/offline
        elif kind == "rooms":
            if isinstance(message.get("rooms"), list):
                self._set_rooms(message["rooms"])
        elif kind == "error":
            self._notice(
                f"The server says: {message.get('message') or message.get('code')}", "error"
            )
        elif isinstance(kind, str) and kind.startswith("file_"):
            if self.transfers is not None and self.transfers.handle(message):
                return
            if kind == "file_offer" and isinstance(message.get("transfer"), str):
                self._decline_offer(message)

    def _decline_offer(self, offer: dict[str, Any]) -> None:
        # Offline: nothing to do, the server expires the offer by itself.
        with contextlib.suppress(NotConnected):
            self.session.send_message({"type": "file_reject", "transfer": offer["transfer"]})
        self._notice(
            f"{offer.get('from', 'Someone')} wanted to send you the file "
            f"'{offer.get('name', '?')}', but this version cannot receive files yet; "
            "it was declined.",
            "error",
        )

    def _receive(self, key: ConversationKey, message: ChatMessage) -> None:
        conversation = self.conversation(key)
        assert message.msg_id is not None
        if conversation.find(message.msg_id) is not None:
            return  # our own message, already acknowledged
        position = self._position(conversation, message.msg_id)
        if position == len(conversation.messages) or all(
            m.msg_id is None for m in conversation.messages[position:]
        ):
            self._append(key, message)
        else:
            conversation.messages.insert(position, message)
            self.view.conversation_changed(key)
        if key != self.current and not message.own:
            conversation.unread += 1
            self.view.conversations_changed()

    def _append(self, key: ConversationKey, message: ChatMessage) -> None:
        self.conversation(key).messages.append(message)
        self.view.message_added(key, message)

    def _notice(self, text: str, level: str = "info") -> None:
        self._append(self.current, ChatMessage(sender="", text=text, notice=True, level=level))

    def _set_rooms(self, rooms: Iterable[Any]) -> None:
        fresh: dict[str, Room] = {}
        for room in rooms:
            if not isinstance(room, dict) or not isinstance(room.get("name"), str):
                continue
            members = room.get("members")
            fresh[room["name"]] = Room(
                name=room["name"],
                private=bool(room.get("private")),
                owner=room.get("owner") if isinstance(room.get("owner"), str) else None,
                members=[m for m in members if isinstance(m, str)]
                if isinstance(members, list)
                else [],
            )
        lost = [
            name
            for name, room in self.rooms.items()
            if name not in fresh
            or (self.username in room.members and self.username not in fresh[name].members)
        ]
        self.rooms = fresh
        for name in lost:
            if name in fresh:
                continue  # a public room we left: still visible
            self.conversations.pop(room_key(name), None)
        if self.current.kind == "room" and self.current.name not in fresh and self.username:
            gone = self.current.name
            self.select(room_key(LOBBY))
            self._notice(f"You are no longer a member of #{gone}.")
        self.view.conversations_changed()
