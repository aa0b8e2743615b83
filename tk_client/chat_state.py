"""The state of every conversation, kept up to date from the session's events. No tkinter.

:class:`ChatState` turns what the session reports (answers to requests, pushed
messages, the connection's phase, file transfers) into conversations: rooms and
private chats, each a list of messages in display order, with unread counts and
history paging. :class:`tk_client.controller.ChatController` builds on it with
what the user's commands mean; the views read the state from its attributes and
hear what changed through :class:`ControllerView`, so they never interpret
protocol messages themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chatproto.limits import HISTORY_DEFAULT_LIMIT, MAX_TEXT

from .e2e.engine import Notice, NotShown, Shown
from .e2e.errors import E2EError
from .e2e.files import FileOfferRefused, FileOfferVerified
from .events import (
    ConnectFailed,
    Greeted,
    KeyChanged,
    LoggedIn,
    LoginNeeded,
    LoginRejected,
    NotConnected,
    OtpRequired,
    Phase,
    PhaseChanged,
    Received,
    RequestState,
    RequestStatus,
    RequestUpdate,
    Stopped,
    TrustRequired,
    refusal_words,
)
from .files import FileOffered, TransferChanged, TransferInfo, TransferState
from .files.events import OfferToSeal, SealedOfferArrived
from .model import (
    LOBBY,
    ChatMessage,
    Conversation,
    ConversationKey,
    MessageState,
    Room,
    message_from_wire,
    pm_key,
    room_key,
    rooms_from_wire,
)
from .presence import PresenceError, UserDirectory, UsersChange, parse_presence, parse_snapshot
from .secure import (
    CANNOT_READ_HERE,
    DECRYPTING,
    OLD_PLAIN,
    PUBLIC_ROOM,
    encrypted_line,
    is_end_to_end,
    key_of,
)
from .secure_files import SealedTransfers, open_offer, seal_offer, take_verdict

if TYPE_CHECKING:
    from .e2e.link import E2ELink

E2EOpener = Callable[[str, str], "E2ELink"]
"""Opens the end-to-end link of (username, device) on the session; may raise StoreError."""

# --- the interfaces on both sides ----------------------------------------------------------------


class SessionAPI(Protocol):
    """What the controller needs from a session (ChatSession has it; tests pass a fake)."""

    def request(self, type_: str, *, durable: bool = True, **fields: Any) -> RequestStatus: ...
    def send_message(self, message: dict[str, Any]) -> None: ...
    def log_out(self) -> RequestStatus: ...


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

    def users_changed(self, change: UsersChange) -> None:
        """Who exists or who is online changed: exactly the users in ``change`` (move those
        rows; a snapshot that changed nothing is not reported)."""

    def status_changed(self, phase: Phase, detail: str, retry_at: float | None) -> None:
        """The connection's phase (for the status bar)."""

    def session_event(self, event: Any) -> None:
        """Events the controller leaves to the view: trust, login answers (``LoginRejected``,
        ``OtpRequired``: ask for a code, ``LoginNeeded``: show the login form), the end."""

    def account_event(self, event: Any) -> None:
        """An account action's result (:data:`tk_client.account.AccountEvent`): the password
        changed, two-factor login set up / on / off, the devices, a refusal in words."""

    def account_command(self, command: str, args: str) -> bool:
        """``/password`` or ``/2fa on|off`` typed: ask what it needs (passwords without echo,
        a code), then call the controller's account method. False: this view cannot ask
        (the controller then says where to do it)."""
        return False

    def quit(self) -> None:
        """The user typed /quit."""

    def choose_file(self, user: str) -> None:
        """``/file USER`` without a path: ask the user for one (a file dialog)."""

    def file_offered(self, offer: TransferInfo) -> bool:
        """Someone offers a file: True if the view asks the user (else it is declined)."""
        return False

    def transfer_changed(self, info: TransferInfo) -> None:
        """A file transfer's stage or progress changed (for progress bars)."""

    def e2e_event(self, event: Any) -> None:
        """An end-to-end event that needs the user (section 4.7-4.8): a verification asked
        for (:class:`~tk_client.e2e.verification.VerificationRequested`), codes to compare
        (``CodesReady``), one ended (``Verified``, ``VerificationCancelled``), one of the
        user's new devices to approve (``OwnDeviceToApprove``). Their words are also shown
        as notices by the controller; a view with dialogs opens them here."""


class Transfers(SealedTransfers, Protocol):
    """The file-transfer side (:class:`tk_client.files.TransferManager`).

    ``offer`` raises :class:`~tk_client.files.TransferError` with words
    for the user when it cannot start; ``end_to_end`` (4.12) whenever there is a link.
    """

    def offer(self, user: str, path: str, *, end_to_end: bool = False) -> None: ...
    def decline(self, transfer: str) -> None: ...
    def handle(self, message: dict[str, Any]) -> bool: ...


def unsent_messages(requests: Iterable[RequestStatus]) -> list[RequestStatus]:
    """The chat messages among requests not answered yet, which quitting would lose.

    Both clients warn about them (the desktop asks, the terminal names each one).
    """
    return [request for request in requests if request.type in ("send", "pm")]


@dataclass(frozen=True)
class Pending:
    """What a request was for, to make sense of its answer."""

    action: str
    key: ConversationKey | None = None
    arg: str = ""
    extra: tuple[str, ...] = ()


class ChatState:
    """Session events in, conversations out. Call :meth:`handle` with every session event."""

    def __init__(
        self,
        session: SessionAPI,
        view: ControllerView | None = None,
        *,
        transfers: Transfers | None = None,
        autoload_history: bool = True,
        e2e_opener: E2EOpener | None = None,
    ) -> None:
        """``autoload_history``: load a conversation's recent messages when it is shown
        (the desktop); the terminal client loads history only on /history.

        ``e2e_opener``: how to open this device's end-to-end link after a login with a
        remembered device; without it (or without a device) private conversations are
        neither sent nor read (there is no plaintext fallback)."""
        self.session = session
        self.autoload_history = autoload_history
        self.view = view or ControllerView()
        self.transfers = transfers
        self.username: str | None = None
        self.server_name = ""
        self.max_text = MAX_TEXT
        self.phase = Phase.IDLE
        self.rooms: dict[str, Room] = {}
        self.users = UserDirectory()  # the snapshot and the presence deltas since
        self.conversations: dict[ConversationKey, Conversation] = {}
        self.current = room_key(LOBBY)
        self._pending: dict[str, Pending] = {}
        self._declined_here: set[str] = set()  # offers this controller declined for the view
        self._e2e_opener = e2e_opener
        self.e2e: E2ELink | None = None

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

    @property
    def online(self) -> set[str]:
        """Who is online now (read only: :attr:`users` changes it)."""
        return self.users.online

    @property
    def all_users(self) -> list[str]:
        """Everyone, in display order (read only: :attr:`users` changes it)."""
        return self.users.ordered

    def users_by_presence(self) -> tuple[list[str], list[str]]:
        """Everyone, online ones first: (online, offline), each in the order of ``all_users``."""
        return self.users.by_presence()

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

    def security(self, key: ConversationKey) -> str:
        """What protects the conversation, in words for beside its title (4.1, 4.8)."""
        if not is_end_to_end(key, self.rooms):
            return PUBLIC_ROOM
        if self.e2e is None:
            return "end-to-end encrypted (this device cannot take part: not remembered)"
        return self.e2e.lock(self.members_of(key)).text

    def members_of(self, key: ConversationKey) -> list[str]:
        """Who reads the conversation: the room's members, or the two users."""
        if key.kind == "pm":
            return sorted({key.name, self.username or ""} - {""})
        room = self.rooms.get(key.name)
        return list(room.members) if room is not None else []

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
        self._ask_history(key, "history", before=conversation.oldest_id())
        return True

    def _ask_history(self, key: ConversationKey, action: str, before: int | None = None) -> None:
        """One page of ``key``'s history: before ``before``, or the newest page."""
        fields: dict[str, Any] = {"limit": HISTORY_DEFAULT_LIMIT}
        fields["room" if key.kind == "room" else "with"] = key.name
        if before is not None:
            fields["before"] = before
        self.conversation(key).loading = True
        self._request("history", Pending(action, key), **fields)

    def _request(self, type_: str, pending: Pending, **fields: Any) -> RequestStatus | None:
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
            if self.e2e is not None and self.e2e.owns(event.request.id):
                self._e2e_events(self.e2e.answered(event.request, event.answer))
                return
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
            event,
            TrustRequired
            | KeyChanged
            | ConnectFailed
            | LoginRejected
            | OtpRequired
            | LoginNeeded
            | Stopped,
        ):
            self.view.session_event(event)
        elif isinstance(event, FileOffered | TransferChanged):
            self._on_transfer(event)
        elif isinstance(event, OfferToSeal | SealedOfferArrived):
            self._on_sealed_file(event)

    def _on_sealed_file(self, event: OfferToSeal | SealedOfferArrived) -> None:
        """4.12: an offer to seal (ours) or to open (theirs), by the end-to-end link."""
        transfers = self.transfers
        if transfers is None:
            return
        if isinstance(event, OfferToSeal):
            self._e2e_events(seal_offer(self.e2e, transfers, event))
            return
        events, words = open_offer(self.e2e, transfers, event)
        if words is not None:
            self._notice(words, "error")
        self._e2e_events(events)

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
        self._start_e2e(event)
        if not event.again:
            self.select(self.current if self.current.name in self.rooms else room_key(LOBBY))
            return
        # Back after an outage: fetch what was missed in every conversation already loaded.
        for key, conversation in self.conversations.items():
            if conversation.has_more is not None and not conversation.loading:
                self._ask_history(key, "refresh")

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
        if pending.action == "users":
            self._on_users(answer)
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

    def _on_failed(self, pending: Pending, status: RequestStatus) -> None:
        reason = status.error or "the server refused it"
        what = {
            "join": f"Could not join #{pending.arg}",
            "leave": f"Could not leave #{pending.arg}",
            "create": f"Could not create #{pending.arg}",
            "invite": f"Could not add {''.join(pending.extra)} to #{pending.arg}",
            "history": "Could not load older messages",
            "users": "Could not fetch the list of users",
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

    def _on_history(self, pending: Pending, answer: dict[str, Any]) -> None:
        key = pending.key
        assert key is not None
        conversation = self.conversation(key)
        conversation.loading = False
        raw = answer.get("messages")
        incoming = []
        later: list[Any] = []
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, dict) and "e2e" in item:
                message, events = self._read_encrypted(item, key.kind == "pm")
                later.extend(events)
            else:
                message = (
                    message_from_wire(item, self.username, key.kind == "pm")
                    if isinstance(item, dict)
                    else None
                )
                if message is not None and is_end_to_end(key, self.rooms):
                    message.error = OLD_PLAIN
            if message is not None:
                incoming.append(message)
        if pending.action == "history" or conversation.has_more is None:
            conversation.has_more = bool(answer.get("has_more"))
        newest = conversation.newest_id()
        if pending.action == "refresh" and newest is not None:
            # Missed while offline and newer than everything shown: they simply come next.
            for message in sorted(incoming, key=lambda m: m.msg_id or 0):
                if message.msg_id is not None and message.msg_id > newest:
                    self._receive(key, message)
            incoming = [m for m in incoming if m.msg_id is not None and m.msg_id <= newest]
        added_at_top, added_inside = conversation.merge(incoming)
        if added_at_top or added_inside:
            self.view.conversation_changed(key, older=0 if added_inside else added_at_top)
        elif pending.action == "history" and key == self.current:
            self.view.conversation_changed(key, older=0)
        self._e2e_events(later)

    def _on_push(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("message", "private") and "e2e" in message:
            chat, events = self._read_encrypted(message, kind == "private")
            if chat is not None:
                self._receive_wire(message, chat)
            self._e2e_events(events)
        elif kind in ("to_device", "devices_changed", "backup_changed"):
            if self.e2e is not None:
                self._e2e_events(self.e2e.pushed(message))
        elif kind == "message":
            room = message.get("room")
            chat = message_from_wire(message, self.username, private=False)
            if isinstance(room, str) and chat is not None:
                self._receive(room_key(room), chat)
        elif kind == "private":
            chat = message_from_wire(message, self.username, private=True)
            if chat is not None:
                self._receive_wire(message, chat)
        elif kind == "users":
            self._on_users(message)  # the snapshot (pushed by a revision 1 server)
        elif kind == "presence":
            self._on_presence(message)
        elif kind == "rooms":
            if isinstance(message.get("rooms"), list):
                self._set_rooms(message["rooms"])
        elif kind == "error":
            words = refusal_words(message) if message.get("message") else message.get("code")
            self._notice(f"The server says: {words}", "error")
        elif isinstance(kind, str) and kind.startswith("file_"):
            if self.transfers is not None and self.transfers.handle(message):
                return
            if kind == "file_offer" and isinstance(message.get("transfer"), str):
                self._decline_offer(message)

    def _receive_wire(self, message: dict[str, Any], chat: ChatMessage) -> None:
        """Add a pushed ``message`` or ``private`` to its conversation."""
        if message.get("type") == "message":
            room = message.get("room")
            if isinstance(room, str):
                self._receive(room_key(room), chat)
            return
        partner = message.get("to") if message.get("from") == self.username else message.get("from")
        if isinstance(partner, str):
            self._receive(pm_key(partner), chat)

    # --- end to end (section 4) --------------------------------------------------------------

    def _start_e2e(self, event: LoggedIn) -> None:
        """Open this device's end-to-end link (once per device) and catch it up."""
        if event.device is None or self._e2e_opener is None:
            self.e2e = None
            return
        link = self.e2e
        if link is None or (link.user, link.device) != (event.username, event.device):
            try:
                link = self._e2e_opener(event.username, event.device)
            except E2EError as exc:
                self.e2e = None
                self._notice(f"End-to-end encryption is not available: {exc}.", "error")
                return
            self.e2e = link
        link.set_rooms(self._private_rooms())  # keys are forwarded only for these (4.6)
        self._e2e_events(link.logged_in())

    def _read_encrypted(
        self, item: dict[str, Any], private: bool
    ) -> tuple[ChatMessage | None, list[Any]]:
        """The line for an encrypted message now (its text, or why not), and the other
        events that reading it produced."""
        if self.e2e is None:
            return encrypted_line(item, self.username, private, CANNOT_READ_HERE, True), []
        events = self.e2e.read(item)
        text, unreadable = "", True
        rest = []
        for event in events:
            if isinstance(event, Shown | NotShown) and event.msg_id == item.get("msg_id"):
                text, unreadable = event.text, isinstance(event, NotShown)
            else:
                rest.append(event)
        if not text:  # the sender's devices are being fetched: the line changes after
            text = DECRYPTING
        return encrypted_line(item, self.username, private, text, unreadable), rest

    def _e2e_events(self, events: Iterable[Any]) -> None:
        """Show what the end-to-end link reported: readable messages, notices, dialogs."""
        for event in events:
            if isinstance(event, Shown | NotShown):
                self._e2e_line(event)
            elif isinstance(event, FileOfferVerified | FileOfferRefused):
                transfers = self.transfers
                words = take_verdict(transfers, event) if transfers is not None else None
                if words is not None:
                    self._notice(words, "error")
            elif isinstance(event, Notice):
                self._notice(event.text, "error" if "paused" in event.text else "info")
            else:
                text = getattr(event, "text", None)
                if isinstance(text, str):
                    self._notice(text)
                self.view.e2e_event(event)

    def _e2e_line(self, event: Shown | NotShown) -> None:
        """A held message became readable (or still is not): change its line in place."""
        key = key_of(event.conversation, self.username or "")
        if key is None or type(event.msg_id) is not int:
            return
        message = self.conversation(key).find(event.msg_id)
        if message is None:
            return  # not shown here (yet): history brings it with its text
        message.text, message.unreadable = event.text, isinstance(event, NotShown)
        self.view.message_changed(key, message)

    def _on_users(self, message: dict[str, Any]) -> None:
        try:
            snapshot = parse_snapshot(message)
        except PresenceError:
            return  # keep what we have; a later snapshot or delta brings it up to date
        self._users_changed(self.users.replace(snapshot))

    def _on_presence(self, message: dict[str, Any]) -> None:
        try:
            delta = parse_presence(message)
        except PresenceError:
            # Applying part of it, or nothing, would leave the list wrong: start again.
            self._request("users", Pending("users"))
            return
        self._users_changed(self.users.apply(delta))

    def _users_changed(self, change: UsersChange) -> None:
        if not change:
            return
        self.view.users_changed(change)
        if self.current.kind == "pm" and self.current.name in change.moved:
            self.view.current_changed(self.current)  # the heading says online/offline

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
        position = conversation.position(message.msg_id)
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
        fresh = rooms_from_wire(rooms)
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
        if self.e2e is not None:
            self.e2e.set_rooms(self._private_rooms())
        self.view.conversations_changed()

    def _private_rooms(self) -> list[str]:
        """The private rooms the user is a member of (what the end-to-end link is told)."""
        return [n for n, r in self.rooms.items() if r.private and self.username in r.members]
