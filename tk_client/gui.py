"""The desktop client's wiring: one Tk window, a session, a controller, and the views.

The session's thread only fills a queue; :meth:`App._pump` drains it every few
milliseconds with ``after()`` on Tk's thread (Tk is single-threaded) and hands
each event to the controller, which updates the views. The login view is shown
until ``login_ok``; then the main view. Trust decisions are dialogs.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import sys
import tkinter as tk
from pathlib import Path
from tkinter import messagebox, simpledialog
from typing import Any

from .address import AddressError, ServerAddress, parse_address
from .config import Settings, load_settings, save_settings
from .controller import ChatController, ControllerView
from .events import (
    ConnectFailed,
    Greeted,
    KeyChanged,
    LoggedIn,
    LoginRejected,
    Phase,
    Stopped,
    TrustRequired,
)
from .known_servers import KnownServers
from .model import ChatMessage, ConversationKey
from .session import ChatSession
from .views.dialogs import KeyChangedDialog, TrustDialog
from .views.login import LoginView
from .views.main_window import MainView
from .views.theme import apply_theme

PUMP_MS = 30  # how often the session's queue is drained
EVENTS_PER_PUMP = 300  # at most this many per turn, so the window stays responsive


class App(ControllerView):
    """The desktop client in one Tk root. Tests build it on a root of their own."""

    def __init__(
        self,
        root: tk.Tk,
        *,
        known_servers: KnownServers | None = None,
        config_folder: Path | None = None,
        server: str | None = None,
        username: str | None = None,
    ) -> None:
        self.root = root
        self.config_folder = config_folder
        self.known_servers = known_servers or KnownServers(
            config_folder / "known_servers" if config_folder else None
        )
        self.settings = load_settings(config_folder)
        if server:
            self.settings.server = server
        if username:
            self.settings.username = username
        self.fonts = apply_theme(root)
        self.session: ChatSession | None = None
        self.controller: ChatController | None = None
        self.address: ServerAddress | None = None
        self.events: queue.Queue[Any] = queue.Queue()
        self.login_view: LoginView | None = None
        self.main_view: MainView | None = None
        self.dialog: tk.Toplevel | None = None
        self._closed = False
        root.title("Chat")
        root.geometry("1120x720")
        root.minsize(760, 480)
        root.protocol("WM_DELETE_WINDOW", self.quit)
        root.bind_all("<Control-q>", lambda e: self.quit())
        root.bind_all("<Control-Q>", lambda e: self.quit())
        self._build_menu()
        self.show_login()
        self._pump_id = root.after(PUMP_MS, self._pump)

    # --- screens ------------------------------------------------------------------------------

    def _build_menu(self) -> None:
        menubar = tk.Menu(self.root)
        chat = tk.Menu(menubar, tearoff=False)
        chat.add_command(label="Join a room...", command=self._ask_join)
        chat.add_command(label="New room...", command=self._ask_create)
        chat.add_separator()
        chat.add_command(label="Log out", command=self.log_out)
        chat.add_command(label="Quit", accelerator="Ctrl+Q", command=self.quit)
        menubar.add_cascade(label="Chat", menu=chat)
        help_menu = tk.Menu(menubar, tearoff=False)
        help_menu.add_command(label="Commands", command=lambda: self._submit("/help"))
        help_menu.add_command(label="Server key", command=self._show_key)
        menubar.add_cascade(label="Help", menu=help_menu)
        self.root.configure(menu=menubar)
        self.menubar = menubar

    def show_login(self, message: str = "") -> None:
        if self.main_view is not None:
            self.main_view.destroy()
            self.main_view = None
        self.root.title("Chat")
        self.login_view = LoginView(
            self.root,
            self.fonts,
            server=self.settings.server,
            username=self.settings.username,
            on_address=self._address_changed,
            on_submit=self._log_in,
        )
        self.login_view.pack(fill="both", expand=True)
        self.login_view.focus_first_empty()
        self._address_changed(self.settings.server)
        if message:
            self.login_view.show_error(message)

    def _show_main(self) -> None:
        assert self.controller is not None and self.session is not None and self.address
        if self.login_view is not None:
            self.login_view.destroy()
            self.login_view = None
        self.main_view = MainView(
            self.root,
            self.fonts,
            self.controller,
            fingerprint=self.session.fingerprint or "",
            address=self.address.key,
            on_quit=self.quit,
            on_reconnect=self._reconnect_now,
        )
        self.main_view.pack(fill="both", expand=True)
        self.main_view.focus_input()

    # --- the session --------------------------------------------------------------------------

    def _new_session(self, address: ServerAddress) -> None:
        self._end_session()
        self.address = address
        self.events = queue.Queue()
        self.session = ChatSession(address, self.known_servers, self.events)
        self.controller = ChatController(self.session, self)
        self.session.start()
        if self.login_view is not None:
            self.login_view.show_connecting(address.key)

    def _end_session(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None
        self.controller = None

    def _address_changed(self, text: str) -> None:
        if self.login_view is None or not text.strip():
            return
        try:
            address = parse_address(text)
        except AddressError as exc:
            self.login_view.show_unreachable(str(exc))
            return
        if (
            self.session is not None
            and self.address == address
            and self.session.phase is not Phase.STOPPED
        ):
            return
        self._new_session(address)

    def _log_in(self, username: str, password: str, register: bool) -> None:
        assert self.login_view is not None
        try:
            address = parse_address(self.login_view.server.get())
        except AddressError as exc:
            self.login_view.show_error(str(exc))
            return
        if self.session is None or self.address != address or self.session.phase is Phase.STOPPED:
            self._new_session(address)
        assert self.session is not None
        self.login_view.set_busy(True, "Creating the account..." if register else "Logging in...")
        self.session.login(username, password, register=register)

    def _reconnect_now(self) -> None:
        if self.session is not None:
            self.session.reconnect_now()

    def _pump(self) -> None:
        """Hand the session's events to the controller, on Tk's thread."""
        if self._closed:
            return
        for _ in range(EVENTS_PER_PUMP):
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if self.controller is None:
                continue
            if isinstance(event, LoggedIn) and self.main_view is None:
                self._logged_in()
            self.controller.handle(event)
        self._pump_id = self.root.after(PUMP_MS, self._pump)

    def _logged_in(self) -> None:
        assert self.login_view is not None and self.address is not None
        self.settings = Settings(
            server=self.login_view.server.get().strip(),
            username=self.login_view.username.get().strip(),
        )
        self.login_view.password.set("")
        # Remembering the address is a convenience; failing to is no reason to stop.
        with contextlib.suppress(OSError):
            save_settings(self.settings, self.config_folder)
        self._show_main()

    # --- ControllerView: forwarded to the main view ----------------------------------------------

    def message_added(self, key: ConversationKey, message: ChatMessage) -> None:
        if self.main_view is not None:
            self.main_view.message_added(key, message)

    def message_changed(self, key: ConversationKey, message: ChatMessage) -> None:
        if self.main_view is not None:
            self.main_view.message_changed(key, message)

    def conversation_changed(self, key: ConversationKey, older: int = 0) -> None:
        if self.main_view is not None:
            self.main_view.conversation_changed(key, older)

    def conversations_changed(self) -> None:
        if self.main_view is not None:
            self.main_view.conversations_changed()

    def current_changed(self, key: ConversationKey) -> None:
        if self.main_view is not None:
            self.main_view.current_changed(key)

    def users_changed(self) -> None:
        if self.main_view is not None:
            self.main_view.users_changed()

    def status_changed(self, phase: Phase, detail: str, retry_at: float | None) -> None:
        if self.main_view is not None:
            self.main_view.status_changed(phase, detail, retry_at)
        elif self.login_view is not None and phase is Phase.IDLE and detail:
            self.login_view.set_busy(False)
            self.login_view.show_error(detail)

    def quit(self) -> None:
        if self._closed:
            return
        unsent = [
            r for r in (self.session.pending() if self.session else []) if r.type in ("send", "pm")
        ]
        if unsent and not messagebox.askyesno(
            "Quit",
            f"{len(unsent)} message{'s are' if len(unsent) > 1 else ' is'} not sent yet. "
            "Quit anyway?",
            parent=self.root,
        ):
            return
        self.close()

    def close(self) -> None:
        """End the session and destroy the window."""
        if self._closed:
            return
        self._closed = True
        self.root.after_cancel(self._pump_id)
        self._end_session()
        for view in (self.dialog, self.main_view, self.login_view):
            if view is not None:
                view.destroy()
        self.fonts.release()
        self.root.destroy()

    def log_out(self) -> None:
        if self.main_view is None:
            return
        self._end_session()
        self.show_login()

    # --- login-phase events -------------------------------------------------------------------

    def session_event(self, event: Any) -> None:
        login = self.login_view
        if isinstance(event, Greeted):
            if login is not None:
                login.show_greeting(event.greeting, event.fingerprint)
        elif isinstance(event, TrustRequired):
            self._ask_trust(event)
        elif isinstance(event, KeyChanged):
            self._key_changed(event)
        elif isinstance(event, ConnectFailed):
            if login is not None:
                login.set_busy(False)
                login.show_unreachable(event.message)
        elif isinstance(event, LoginRejected):
            if login is not None:
                login.rejected(event.message, event.retry_after)
        elif isinstance(event, Stopped):
            if self.main_view is not None and self.dialog is None:
                self._end_session()
                self.show_login(event.message)
            elif login is not None and self.dialog is None:
                login.set_busy(False)
                login.show_error(event.message)

    def _ask_trust(self, event: TrustRequired) -> None:
        session = self.session

        def answer(trusted: bool) -> None:
            self.dialog = None
            if session is not self.session or session is None:
                return
            if trusted:
                try:
                    session.trust(event.fingerprint)
                except ValueError as exc:  # another client pinned a key meanwhile
                    self._after_refusal(f"The key was not trusted: {exc}.")
            else:
                self._end_session()
                message = "You did not trust the server's key, so nothing was sent."
                if self.main_view is not None:
                    self.show_login(message)
                elif self.login_view is not None:
                    self.login_view.set_busy(False)
                    self.login_view.show_unreachable(message)

        self.dialog = TrustDialog(self.root, self.fonts, event.address, event.fingerprint, answer)

    def _key_changed(self, event: KeyChanged) -> None:
        address = self.address

        def accept() -> None:
            self.dialog = None
            if address is None:
                return
            try:
                self.known_servers.replace(address, event.expected, event.received)
            except ValueError as exc:
                self._after_refusal(f"The new key was not saved: {exc}.")
                return
            self._after_refusal("The new key is trusted. Log in to continue.", error=False)

        def refused() -> None:
            self.dialog = None
            self._after_refusal(
                "The server's key changed, so the connection was refused. Nothing was sent."
            )

        self.dialog = KeyChangedDialog(
            self.root, self.fonts, event.address, event.expected, event.received, accept, refused
        )

    def _after_refusal(self, message: str, *, error: bool = True) -> None:
        self._end_session()
        if self.main_view is not None:
            self.show_login()
        login = self.login_view
        if login is None:
            return
        login.set_busy(False)
        if error:
            login.show_unreachable(message)
        else:
            self._address_changed(login.server.get())
            login.show_info(message)

    # --- menu actions ---------------------------------------------------------------------------

    def _submit(self, line: str) -> None:
        if self.controller is not None and self.main_view is not None:
            self.controller.submit(line)

    def _ask_join(self) -> None:
        if self.main_view is None:
            return
        room = simpledialog.askstring("Join a room", "Room name:", parent=self.root)
        if room:
            self._submit(f"/join {room.strip()}")

    def _ask_create(self) -> None:
        if self.main_view is None:
            return
        spec = simpledialog.askstring(
            "New room",
            "Room name, then the members of a private room (none for a public room):",
            parent=self.root,
        )
        if spec:
            self._submit(f"/create {spec.strip()}")

    def _show_key(self) -> None:
        if self.session is None or self.address is None:
            return
        messagebox.showinfo(
            "Server key",
            f"Server: {self.address.key}\n"
            f"Key fingerprint: {self.session.fingerprint or 'unknown'}\n\n"
            "Your administrator sees the same fingerprint with `python manage.py server_key`.",
            parent=self.root,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tk_client", description="Encrypted chat.")
    parser.add_argument("--server", help="prefill the server address")
    parser.add_argument("--user", help="prefill the username")
    args = parser.parse_args(argv)
    try:
        root = tk.Tk(className="Chat")
    except tk.TclError as exc:
        print(
            f"error: cannot open a window ({exc}). The desktop client needs a graphical session; "
            "in a terminal, use python -m tk_client.cli",
            file=sys.stderr,
        )
        return 1
    App(root, server=args.server, username=args.user)
    root.mainloop()
    return 0
