"""The main window's content: conversations, messages, input line, users, status bar.

It implements :class:`~tk_client.controller.ControllerView`: the controller says
what changed and this view redraws it from the controller's state. Everything
the user does goes back to the controller (``submit``, ``select``, ``complete``).
"""

from __future__ import annotations

import functools
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from ..commands import carries_secret
from ..controller import ChatController, ControllerView
from ..events import Phase
from ..model import ChatMessage, ConversationKey
from ..presence import UsersChange
from . import theme
from .message_view import MessageView
from .sidebar import ConversationList, UserList
from .tkutil import release_images
from .transfers import TransferPanel
from .verify import lock_image

HISTORY_SIZE = 200  # input lines remembered for Up/Down


class InputHistory:
    """Up/Down through the lines already sent, like a shell; the draft is kept."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.position = 0
        self.draft = ""

    def add(self, line: str) -> None:
        """Remember ``line``, unless it is the last one again or carries a secret."""
        if carries_secret(line):
            self.position, self.draft = len(self.lines), ""
            return
        if line and (not self.lines or self.lines[-1] != line):
            self.lines.append(line)
            del self.lines[:-HISTORY_SIZE]
        self.position = len(self.lines)
        self.draft = ""

    def previous(self, current: str) -> str | None:
        if self.position == 0:
            return None
        if self.position == len(self.lines):
            self.draft = current
        self.position -= 1
        return self.lines[self.position]

    def next(self) -> str | None:
        if self.position >= len(self.lines):
            return None
        self.position += 1
        return self.draft if self.position == len(self.lines) else self.lines[self.position]


class MainView(ttk.Frame, ControllerView):
    """The chat itself. ``on_quit`` is called for /quit."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: ChatController,
        *,
        fingerprint: str,
        address: str,
        on_quit: Callable[[], None],
        on_reconnect: Callable[[], None],
        on_send_file: Callable[[], None] | None = None,
        on_cancel_transfer: Callable[[str], None] | None = None,
        on_verify: Callable[[str], object] | None = None,
        on_recover: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(master)
        self.fonts = fonts
        self.controller = controller
        self.on_quit = on_quit
        self.on_reconnect = on_reconnect
        self.on_verify = on_verify or (lambda user: None)
        self.address = address
        self.history = InputHistory()
        self._retry_at: float | None = None
        self._phase = Phase.ONLINE
        self._phase_detail = ""
        self._countdown: str | None = None

        self.columnconfigure(1, weight=1)
        self.rowconfigure(0, weight=1)
        self.conversations = ConversationList(self, fonts, self._select, self._join)
        self.conversations.grid(row=0, column=0, rowspan=2, sticky="ns")
        self.conversations.grid_propagate(False)

        centre = ttk.Frame(self, style="Surface.TFrame")
        centre.grid(row=0, column=1, sticky="nsew")
        centre.columnconfigure(0, weight=1)
        centre.rowconfigure(2, weight=1)
        heading = ttk.Frame(centre, style="Header.TFrame")
        heading.grid(row=0, column=0, sticky="ew")
        header = ttk.Frame(heading, style="Header.TFrame", padding=(18, 12, 18, 4))
        header.pack(fill="x")
        self.title_label = ttk.Label(header, text="", style="Heading.TLabel")
        self.title_label.pack(side="left")
        self.badge = ttk.Label(header, text=" PRIVATE ", style="Badge.TLabel")
        self.subtitle = ttk.Label(header, text="", style="Sub.TLabel")
        self.subtitle.pack(side="left", padx=(10, 0), pady=(3, 0))
        # What protects the conversation (4.1, 4.8), in words, below the title.
        self._lock = lock_image(self, theme.PRIVATE)
        security = ttk.Frame(heading, style="Header.TFrame", padding=(18, 0, 18, 8))
        security.pack(fill="x")
        self.security_label = ttk.Label(security, text="", style="Sub.TLabel", compound="left")
        self.security_label.pack(side="left")
        self.verify_button = ttk.Button(
            security, text="Verify\u2026", style="Small.TButton", command=self.verify_clicked
        )
        # A device that needs approval, of a user with a key backup: the recovery key (4.13).
        self.recover_button = ttk.Button(
            security,
            text="Enter recovery key\u2026",
            style="Small.TButton",
            command=on_recover or (lambda: None),
        )
        self.verify_menu = tk.Menu(self, tearoff=False)
        ttk.Separator(centre, orient="horizontal").grid(row=1, column=0, sticky="ew")
        self.messages = MessageView(centre, fonts, self._load_older)
        self.messages.grid(row=2, column=0, sticky="nsew")
        ttk.Separator(centre, orient="horizontal").grid(row=3, column=0, sticky="ew")
        # File transfers in progress (shown only while there are some).
        self.transfers = TransferPanel(centre, on_cancel_transfer or (lambda transfer: None))
        self.transfers.place_at(row=4, column=0, sticky="ew")

        composer = ttk.Frame(centre, style="Surface.TFrame", padding=(14, 10, 14, 4))
        composer.grid(row=5, column=0, sticky="ew")
        composer.columnconfigure(0, weight=1)
        self.entry = ttk.Entry(composer, font=fonts.body)
        self.entry.grid(row=0, column=0, sticky="ew", ipady=3)
        self.send_button = ttk.Button(
            composer, text="Send", style="Accent.TButton", command=self._send
        )
        self.send_button.grid(row=0, column=1, padx=(8, 0))
        self.send_file_button = ttk.Button(
            composer, text="Send file\u2026", command=on_send_file or (lambda: None)
        )
        self.send_file_button.grid(row=0, column=2, padx=(8, 0))
        self.default_hint = (
            "Enter sends  \u00b7  Tab completes names  \u00b7  /help lists the commands"
        )
        self.hint = ttk.Label(composer, text=self.default_hint, style="Hint.TLabel")
        self.hint.grid(row=1, column=0, columnspan=3, sticky="w", pady=(4, 2))

        ttk.Separator(self, orient="vertical").grid(row=0, column=2, sticky="ns")
        self.users = UserList(self, fonts, self._open_user)
        self.users.grid(row=0, column=3, sticky="ns")
        self.users.grid_propagate(False)
        self.users.fill(controller)

        status = ttk.Frame(self, style="Status.TFrame", padding=(10, 3))
        status.grid(row=1, column=1, columnspan=3, sticky="ew")
        self.status_label = ttk.Label(status, text="", style="Status.TLabel")
        self.status_label.pack(side="left")
        self.reconnect_button = ttk.Button(status, text="Reconnect now", command=self.on_reconnect)
        self.key_label = ttk.Label(
            status, text=f"Server key {fingerprint}", style="StatusKey.TLabel", cursor="hand2"
        )
        self.key_label.pack(side="right")
        self.key_label.bind("<Button-1>", lambda e: self._copy(fingerprint))

        self.entry.bind("<Return>", self._send)
        self.entry.bind("<KP_Enter>", self._send)
        self.entry.bind("<Up>", self._history_previous)
        self.entry.bind("<Down>", self._history_next)
        self.entry.bind("<Tab>", self._complete)
        self.entry.bind("<Key>", self._typed, add="+")
        self.entry.bind("<Prior>", lambda e: self.messages.text.yview_scroll(-1, "pages"))
        self.entry.bind("<Next>", lambda e: self.messages.text.yview_scroll(1, "pages"))
        self._show_status()

    # --- user actions ---------------------------------------------------------------------

    def _send(self, event: object = None) -> str:
        line = self.entry.get()
        if self.controller.submit(line):
            self.history.add(line)
            self.entry.delete(0, "end")
        self._hint_default()
        return "break"

    def _history_previous(self, event: object = None) -> str:
        line = self.history.previous(self.entry.get())
        if line is not None:
            self._set_input(line)
        return "break"

    def _history_next(self, event: object = None) -> str:
        line = self.history.next()
        if line is not None:
            self._set_input(line)
        return "break"

    def _set_input(self, text: str, cursor: int | None = None) -> None:
        self.entry.delete(0, "end")
        self.entry.insert(0, text)
        self.entry.icursor(len(text) if cursor is None else cursor)
        self.entry.xview_moveto(1.0)

    def _complete(self, event: object = None) -> str:
        result = self.controller.complete(self.entry.get(), self.entry.index("insert"))
        if result is None:
            self.bell()
        else:
            self._set_input(result.text, result.cursor)
            if len(result.candidates) > 1:
                shown = [
                    f"[{c}]" if i == result.index else c for i, c in enumerate(result.candidates)
                ]
                self.hint.configure(text="Tab: " + "  ".join(shown[:12]))
        return "break"

    def _typed(self, event: tk.Event) -> None:
        if event.keysym not in ("Tab", "Shift_L", "Shift_R", "ISO_Left_Tab"):
            self.controller.completer.reset()

    def _hint_default(self) -> None:
        self.hint.configure(text=self.default_hint)

    def _select(self, key: ConversationKey) -> None:
        if key != self.controller.current:
            self.controller.select(key)
        self.entry.focus_set()

    def _join(self, room: str) -> None:
        self.controller.submit(f"/join {room}")
        self.entry.focus_set()

    def _open_user(self, user: str) -> None:
        if user == self.controller.username:
            return
        self._set_input(f"/pm {user} ")
        self.entry.focus_set()

    def verify_clicked(self) -> None:
        """Verify...: the partner of a private chat, or a member of a private room (a menu)."""
        users = self._verifiable()
        if len(users) == 1 and self.controller.current.kind == "pm":
            self.on_verify(users[0])
            return
        if not users:
            self.bell()
            return
        menu = self.verify_menu
        menu.delete(0, "end")
        for user in users:
            menu.add_command(label=user, command=functools.partial(self.on_verify, user))
        button = self.verify_button
        menu.post(button.winfo_rootx(), button.winfo_rooty() + button.winfo_height())

    def _verifiable(self) -> list[str]:
        """Whom Verify... can verify in the conversation shown: its members but me."""
        key = self.controller.current
        if not self._end_to_end(key):
            return []
        me = self.controller.username
        return [u for u in self.controller.members_of(key) if u != me]

    def _end_to_end(self, key: ConversationKey) -> bool:
        room = self.controller.rooms.get(key.name) if key.kind == "room" else None
        return key.kind == "pm" or (room is not None and room.private)

    def _load_older(self) -> None:
        if self.controller.load_older(self.controller.current):
            self.messages.refresh_top()

    def _copy(self, text: str) -> None:
        self.clipboard_clear()
        self.clipboard_append(text)
        self.status_label.configure(text="Fingerprint copied to the clipboard")
        self.after(2000, self._show_status)

    # --- ControllerView ---------------------------------------------------------------------

    def message_added(self, key: ConversationKey, message: ChatMessage) -> None:
        if key == self.controller.current:
            if self.messages.conversation is None:
                self._draw_current()
            else:
                self.messages.append(message)

    def message_changed(self, key: ConversationKey, message: ChatMessage) -> None:
        if key == self.controller.current:
            self.messages.show(
                self.controller.conversation(key), self.controller.username, keep_anchor=0
            )

    def conversation_changed(self, key: ConversationKey, older: int = 0) -> None:
        if key == self.controller.current:
            self.messages.show(
                self.controller.conversation(key), self.controller.username, keep_anchor=older
            )

    def conversations_changed(self) -> None:
        self.conversations.update_from(self.controller)
        self._title()

    def current_changed(self, key: ConversationKey) -> None:
        self._draw_current()
        self.conversations.update_from(self.controller)
        self._title()

    def users_changed(self, change: UsersChange) -> None:
        """Only the rows of the users in ``change`` move (PROTOCOL.md 3.2 presence deltas)."""
        self.users.apply(change, self.controller)
        self.conversations.presence_changed(change, self.controller)
        self._header()

    def status_changed(self, phase: Phase, detail: str, retry_at: float | None) -> None:
        self._phase, self._phase_detail, self._retry_at = phase, detail, retry_at
        self._show_status()
        self.messages.online = phase is Phase.ONLINE
        if phase is Phase.ONLINE and self.messages.conversation is not None:
            self._draw_current()

    def quit(self) -> None:
        self.on_quit()

    # --- drawing ----------------------------------------------------------------------------

    def _draw_current(self) -> None:
        key = self.controller.current
        self.messages.show(self.controller.conversation(key), self.controller.username)
        self._header()
        self._show_status()

    def _header(self) -> None:
        key = self.controller.current
        title, _, subtitle = self.controller.title(key).partition(" - ")
        self.title_label.configure(text=title)
        self.subtitle.configure(text=subtitle)
        if self._end_to_end(key):
            self.badge.pack(side="left", padx=(10, 0), pady=(3, 0), before=self.subtitle)
        else:
            self.badge.pack_forget()
        self.refresh_security()

    def refresh_security(self) -> None:
        """The lock and words below the title, and Verify... where there is someone to verify."""
        if not self.winfo_exists():
            return
        key = self.controller.current
        words = self.controller.security(key)
        private = self._end_to_end(key)
        self.security_label.configure(
            text=f" {words}" if private else words, image=self._lock if private else ""
        )
        if self._verifiable():
            if not self.verify_button.winfo_manager():
                self.verify_button.pack(side="left", padx=(12, 0))
        else:
            self.verify_button.pack_forget()
        if self.controller.can_recover:
            if not self.recover_button.winfo_manager():
                self.recover_button.pack(side="left", padx=(12, 0))
        else:
            self.recover_button.pack_forget()

    def _title(self) -> None:
        unread = self.controller.total_unread()
        where = self.controller.server_name or self.address
        prefix = f"({unread}) " if unread else ""
        self.winfo_toplevel().title(f"{prefix}{self.controller.current} - {where} - Chat")

    def _show_status(self) -> None:
        if not self.winfo_exists():
            return
        self.reconnect_button.pack_forget()
        phase = self._phase
        if phase is Phase.ONLINE:
            text = f"\u25cf Connected to {self.address} as {self.controller.username or ''}"
            colour = theme.SUCCESS
        elif phase is Phase.RECONNECTING:
            colour = theme.WARNING
            if self._retry_at is not None:
                seconds = max(0, round(self._retry_at - time.monotonic()))
                text = f"\u25cc Connection lost. Reconnecting in {seconds} s..."
                self.reconnect_button.pack(side="left", padx=(10, 0))
                if self._countdown is None and seconds > 0:
                    self._countdown = self.after(1000, self._tick)
            else:
                text = "\u25cc Reconnecting..."
        elif phase is Phase.STOPPED:
            text, colour = f"\u25cf Disconnected. {self._phase_detail}", theme.DANGER
        else:
            text, colour = f"\u25cc {phase.value.capitalize()}...", theme.WARNING
        self.status_label.configure(text=text, foreground=colour)

    def _tick(self) -> None:
        self._countdown = None
        if self._phase is Phase.RECONNECTING:
            self._show_status()

    def focus_input(self) -> None:
        self.entry.focus_set()

    def destroy(self) -> None:
        if self._countdown is not None:
            self.after_cancel(self._countdown)
            self._countdown = None
        super().destroy()
        release_images(self._lock)
