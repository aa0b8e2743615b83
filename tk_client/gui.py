"""The desktop client's wiring: one Tk window, a session, a controller, and the views.

The session's thread only fills a queue; :meth:`App._pump` drains it every few
milliseconds with ``after()`` on Tk's thread (Tk is single-threaded) and hands
each event to the controller, which updates the views. The login view is shown
until ``login_ok``; then the main view. Trust decisions are dialogs.

A login remembered on this computer (PROTOCOL.md 3.4) is resumed at start, so
the main window opens without the password; the Account window (password,
two-factor login, devices, log out) hears the controller's account events
through :meth:`App.account_event`. The device name sent with "Remember me" is
the computer's host name, which only this module asks for: the views do no
networking.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import socket
import sys
import tkinter as tk
from pathlib import Path
from tkinter import messagebox, simpledialog
from typing import Any

from chatproto.limits import MAX_DEVICE_NAME_LENGTH

from .address import AddressError, ServerAddress, parse_address
from .backup_actions import BACKUP_EVENTS
from .chat_state import unsent_messages
from .config import Settings, load_settings, save_settings
from .controller import ChatController, ControllerView
from .e2e.link import E2ELink, KeysFetched, OwnDeviceToApprove
from .e2e.verification import (
    CodesReady,
    VerificationCancelled,
    VerificationRequested,
    VerificationStarted,
    Verified,
)
from .entry import TERMINAL_CLIENT_HINT, program_name
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
    Stopped,
    TrustRequired,
)
from .files import TransferError, TransferInfo, TransferManager
from .known_servers import FINGERPRINT_COMMAND, KnownServers
from .model import ChatMessage, ConversationKey
from .partials import JOURNAL_FOLDER, PartialFiles
from .presence import UsersChange
from .session import ChatSession
from .views.account import AccountWindow
from .views.backup import RecoveryDialog, RecoveryKeyWindow
from .views.dialogs import KeyChangedDialog, OtpDialog, TrustDialog
from .views.login import LoginView
from .views.main_window import MainView
from .views.theme import apply_theme
from .views.transfers import (
    OfferPrompt,
    RecipientDialog,
    ask_open_path,
    ask_save_path,
    enable_file_drop,
)
from .views.verify import ApprovalDialog, CodesDialog, VerificationWindow, VerifyDialog

PUMP_MS = 30  # how often the session's queue is drained
E2E_TICK_MS = 3000  # how often idle verifications are looked at (and the lock redrawn)
EVENTS_PER_PUMP = 300  # at most this many per turn, so the window stays responsive
# session_ended reasons after which the user logs in again in the login form (no reconnect)
LOGGED_OUT_REASONS = frozenset({"revoked", "password_changed", "logged_out"})


def device_name() -> str:
    """The name this computer gets in the account's list of devices: its host name."""
    name = socket.gethostname().strip() or "this computer"
    return name[:MAX_DEVICE_NAME_LENGTH]


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
        # Temporary files of downloads that a killed earlier run left behind go now.
        self.partials = PartialFiles(config_folder / JOURNAL_FOLDER if config_folder else None)
        self.partials.remove_stale()
        if server:
            self.settings.server = server
        if username:
            self.settings.username = username
        self.fonts = apply_theme(root)
        self.session: ChatSession | None = None
        self.controller: ChatController | None = None
        self.transfers: TransferManager | None = None
        self.offer_prompts: dict[str, OfferPrompt] = {}
        self.drop_enabled = False
        self.recipient_dialog: RecipientDialog | None = None
        self.address: ServerAddress | None = None
        self.events: queue.Queue[Any] = queue.Queue()
        self.login_view: LoginView | None = None
        self.main_view: MainView | None = None
        self.dialog: tk.Toplevel | None = None
        self.account_window: AccountWindow | None = None
        self.verification_windows: list[VerificationWindow] = []
        self.backup_windows: list[RecoveryKeyWindow | RecoveryDialog] = []
        self._resume_at_start = True  # a remembered login is resumed once, when the app starts
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
        self._tick_id = root.after(E2E_TICK_MS, self._e2e_tick)

    # --- screens ------------------------------------------------------------------------------

    def _build_menu(self) -> None:
        menubar = tk.Menu(self.root)
        chat = tk.Menu(menubar, tearoff=False)
        chat.add_command(label="Join a room...", command=self._ask_join)
        chat.add_command(label="New room...", command=self._ask_create)
        chat.add_separator()
        chat.add_command(label="Verify\u2026", command=self._verify_current)
        chat.add_command(label="Account\u2026", command=self.open_account)
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
            remembered=self._remembered,
        )
        self.login_view.pack(fill="both", expand=True)
        self.login_view.focus_first_empty()
        self._address_changed(self.settings.server)
        if message:
            self.login_view.show_error(message, keep=True)

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
            on_send_file=self._send_file_clicked,
            on_cancel_transfer=self._cancel_transfer,
            on_verify=self.open_verify,
            on_recover=self.open_recovery,
        )
        self.main_view.pack(fill="both", expand=True)
        self.drop_enabled = enable_file_drop(self.main_view, self._files_dropped)
        if self.drop_enabled:
            self.main_view.default_hint += "  \u00b7  drop a file here to send it"
            self.main_view.hint.configure(text=self.main_view.default_hint)
        for info in self.transfers.transfers() if self.transfers else ():
            self.main_view.transfers.show(info)
        self.main_view.focus_input()

    # --- the session --------------------------------------------------------------------------

    def _new_session(self, address: ServerAddress) -> None:
        self._end_session()
        self.address = address
        self.events = queue.Queue()
        self.session = ChatSession(address, self.known_servers, self.events)
        self.transfers = TransferManager(self.session, self.events, partials=self.partials)
        self.controller = ChatController(
            self.session, self, transfers=self.transfers, e2e_opener=E2ELink.opener(self.session)
        )
        self.session.start()
        if self.login_view is not None:
            self.login_view.show_connecting(address.key)
        if self._resume_at_start:
            self._resume_at_start = False
            self._resume(address)

    def _resume(self, address: ServerAddress) -> None:
        """Log in with the login remembered for this server and the last user, if there is one.

        Only a server whose key is pinned can have one: tokens are kept per server key.
        """
        assert self.session is not None
        fingerprint = self.known_servers.get(address)
        if fingerprint is None:
            return
        tokens = self.session.device_tokens
        wanted = (self.settings.username, tokens.last_username(fingerprint))
        username = next((u for u in wanted if u and tokens.get(fingerprint, u)), None)
        if username is None:
            return
        self.session.resume(username)
        if self.login_view is not None:
            self.login_view.username.set(username)
            self.login_view.set_busy(
                True, f"Logging in as {username} (remembered on this computer)..."
            )

    def _end_session(self) -> None:
        self._close_account()
        for window in list(self.verification_windows):
            window.close()
        if self.transfers is not None:
            self.transfers.close()  # cancels them: no partial file stays behind
        if self.session is not None:
            self.session.close()
        for prompt in self.offer_prompts.values():
            prompt.destroy()
        self.offer_prompts.clear()
        self.session = None
        self.controller = None
        self.transfers = None

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

    def _log_in(self, username: str, password: str, register: bool, remember: bool) -> None:
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
        if not password:  # the login view offers this only for a remembered user
            self.session.resume(username)
            return
        self.session.login(
            username, password, register=register, remember=device_name() if remember else None
        )

    def _remembered(self, username: str) -> bool:
        """This computer keeps a login for ``username`` on the server in the login form."""
        if self.login_view is None or self.session is None:
            return False
        try:
            address = parse_address(self.login_view.server.get())
        except AddressError:
            return False
        fingerprint = self.known_servers.get(address)
        tokens = self.session.device_tokens
        return fingerprint is not None and tokens.get(fingerprint, username) is not None

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
            if isinstance(event, LoggedIn) and self.controller.otp_enrolment_required:
                self.open_account()
        self._pump_id = self.root.after(PUMP_MS, self._pump)

    def _logged_in(self) -> None:
        assert self.login_view is not None and self.address is not None
        if isinstance(self.dialog, OtpDialog):  # logged in meanwhile (another way): not needed
            self.dialog.destroy()
            self.dialog = None
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

    def users_changed(self, change: UsersChange) -> None:
        if self.main_view is not None:
            self.main_view.users_changed(change)

    def status_changed(self, phase: Phase, detail: str, retry_at: float | None) -> None:
        if self.main_view is not None:
            self.main_view.status_changed(phase, detail, retry_at)
        elif self.login_view is not None and phase is Phase.IDLE and detail:
            self.login_view.set_busy(False)
            self.login_view.show_error(detail)

    def quit(self) -> None:
        if self._closed:
            return
        running = len(self.transfers.transfers()) if self.transfers else 0
        if running and not messagebox.askyesno(
            "Quit",
            f"{running} file transfer{'s are' if running > 1 else ' is'} not finished; "
            "quitting cancels them. Quit anyway?",
            parent=self.root,
        ):
            return
        unsent = unsent_messages(self.session.pending() if self.session else [])
        if unsent and not messagebox.askyesno(
            "Quit",
            f"{len(unsent)} message{'s are' if len(unsent) > 1 else ' is'} not sent yet. "
            "Quit anyway?",
            parent=self.root,
        ):
            return
        self.close()

    @property
    def closed(self) -> bool:
        """The window is gone (Quit, Ctrl+Q, or :meth:`close`); the App is of no further use."""
        return self._closed

    def close(self) -> None:
        """End the session and destroy the window."""
        if self._closed:
            return
        self._closed = True
        self.root.after_cancel(self._pump_id)
        self.root.after_cancel(self._tick_id)
        transfers = self.transfers  # _end_session forgets it
        self._end_session()
        if transfers is None or not transfers.busy():
            self.partials.close()  # every temporary file is gone: the journal can go too
        # else a worker still holds one: the journal stays, and the next start removes it.
        for view in (self.dialog, self.account_window, self.main_view, self.login_view):
            if view is not None:
                view.destroy()
        self.fonts.release()
        self.root.destroy()

    def log_out(self) -> None:
        """The menu's Log out: the Account window's, which asks first and shows what happened
        beside it (offline, nothing is sent and the saved login stays)."""
        self.open_account()
        if self.account_window is not None:
            self.account_window.log_out()

    # --- the Account window ---------------------------------------------------------------------

    def open_account(self) -> None:
        """Show the Account window (menu "Account..."; at login when 2FA must be set up)."""
        controller = self.controller
        if self.main_view is None or controller is None:
            return
        window = self.account_window
        if window is not None and window.winfo_exists():
            window.set_enrolment_required(controller.otp_enrolment_required)
            window.present()
            return
        window = AccountWindow(
            self.root,
            self.fonts,
            controller,
            on_close=self._account_closed,
            on_backup_setup=self.open_backup_setup,
            on_recover=self.open_recovery,
        )
        self.account_window = window
        window.present()
        if not controller.otp_enrolment_required:
            window.devices.refresh()

    def _account_closed(self) -> None:
        self.account_window = None

    def _close_account(self) -> None:
        window, self.account_window = self.account_window, None
        if window is not None:
            window.close()

    def account_event(self, event: Any) -> None:
        if self.account_window is not None:
            self.account_window.handle(event)

    def account_command(self, command: str, args: str) -> bool:
        """``/backup setup`` or ``/backup reset`` typed: the window that shows the key."""
        if command != "backup":
            return False  # the controller says to open the Account window
        return self.open_backup_setup(reset=args == "reset") is not None

    # --- the key backup's windows (4.13) -------------------------------------------------------

    def open_backup_setup(self, reset: bool = False) -> RecoveryKeyWindow | None:
        """Set up (or reset) the key backup: the window that shows the recovery key once."""
        controller = self.controller
        if controller is None or self.main_view is None:
            return None
        for open_ in self.backup_windows:
            if isinstance(open_, RecoveryKeyWindow):
                open_.present()  # one key at a time: finish or cancel that one first
                return open_
        window = RecoveryKeyWindow(
            self.root, self.fonts, controller, reset=reset, on_close=self._backup_closed
        )
        self.backup_windows.append(window)
        window.present()
        return window

    def open_recovery(self) -> RecoveryDialog | None:
        """Enter the recovery key (Account > Key backup, or the button above the chat)."""
        controller = self.controller
        if controller is None or self.main_view is None:
            return None
        for open_ in self.backup_windows:
            if isinstance(open_, RecoveryDialog):
                open_.present()
                return open_
        window = RecoveryDialog(self.root, self.fonts, controller, on_close=self._backup_closed)
        self.backup_windows.append(window)
        window.present()
        return window

    def _backup_closed(self, window: RecoveryKeyWindow | RecoveryDialog) -> None:
        if window in self.backup_windows:
            self.backup_windows.remove(window)

    def _backup_event(self, event: Any) -> None:
        for window in list(self.backup_windows):
            window.handle(event)
        if self.account_window is not None and self.account_window.winfo_exists():
            self.account_window.backup.handle(event)
        if self.main_view is not None:
            self.main_view.refresh_security()

    # --- end to end: the lock, verification and approval windows (4.7-4.8) -------------------

    def _e2e_tick(self) -> None:
        """Idle verifications time out; the lock is redrawn (a key may have changed)."""
        if self._closed:
            return
        if self.controller is not None:
            self.controller.e2e_tick()
        if self.main_view is not None:
            self.main_view.refresh_security()
        for window in self.verification_windows:
            if isinstance(window, VerifyDialog):
                window.refresh()
        if self.account_window is not None and self.account_window.winfo_exists():
            self.account_window.backup.refresh()  # the server's answer about the backup came
        self._tick_id = self.root.after(E2E_TICK_MS, self._e2e_tick)

    def _verify_current(self) -> None:
        """The menu's Verify...: as the header's button (a member is asked for in a room)."""
        if self.main_view is not None:
            self.main_view.verify_clicked()

    def open_verify(self, user: str) -> VerifyDialog | None:
        """The Verify window for ``user`` (the one already open is brought forward)."""
        controller = self.controller
        if controller is None or self.main_view is None:
            return None
        for window in self.verification_windows:
            if isinstance(window, VerifyDialog) and window.user == user:
                window.refresh()
                window.present()
                return window
        window = VerifyDialog(self.root, self.fonts, controller, user, self._window_closed)
        self.verification_windows.append(window)
        return window

    def _window_closed(self, window: VerificationWindow) -> None:
        if window in self.verification_windows:
            self.verification_windows.remove(window)

    def _window_for(self, txn: str, *, first: bool = True) -> VerificationWindow | None:
        """The window following ``txn``, or (``first``: the event may be a comparison's
        first) the one that started a comparison and waits for it: the controller does not
        say which transaction it started."""
        for window in self.verification_windows:
            if window.txn == txn:
                return window
        if not first:
            return None
        for window in self.verification_windows:
            if window.txn is None and window.waiting:
                return window
        return None

    def e2e_event(self, event: Any) -> None:
        controller = self.controller
        if controller is None or self.main_view is None:
            return
        if isinstance(event, BACKUP_EVENTS):
            self._backup_event(event)
        elif isinstance(event, KeysFetched):  # a Verify window may wait for these keys
            for waiting in self.verification_windows:
                if isinstance(waiting, VerifyDialog) and waiting.user in event.users:
                    waiting.refresh()
        elif isinstance(event, VerificationStarted):  # names the window's comparison
            for starting in self.verification_windows:
                if starting.starting and starting.txn is None:
                    starting.txn = event.txn
        elif isinstance(event, OwnDeviceToApprove):
            self._ask_approval(controller, event)
        elif isinstance(event, VerificationRequested):
            self._verification_requested(controller, event)
        elif isinstance(event, CodesReady):
            window = self._window_for(event.txn)
            if window is None:  # started elsewhere (a typed /verify or /approve)
                window = CodesDialog(self.root, self.fonts, controller, self._window_closed)
                self.verification_windows.append(window)
            window.codes(event)
        elif isinstance(event, Verified | VerificationCancelled):
            window = self._window_for(event.txn, first=isinstance(event, VerificationCancelled))
            if window is not None:
                if isinstance(event, Verified):
                    window.verified(event)
                else:
                    window.cancelled(event)
            self.main_view.refresh_security()

    def _ask_approval(self, controller: ChatController, event: OwnDeviceToApprove) -> None:
        device, label = event.device, event.label
        self.verification_windows.append(
            ApprovalDialog(
                self.root,
                self.fonts,
                controller,
                title="Approve a new device",
                question=f"Approve the new device {label}?",
                detail=(
                    f"{label} logged in to your account. Approve it only if it is yours: "
                    "both devices then show codes to compare. If it is not yours, choose "
                    "Not mine and log it out in Account \u2026 Devices."
                ),
                yes="Approve",
                no="Not mine",
                on_yes=lambda: controller.approve_device(device),
                on_no=lambda: None,
                whom=f"{label} to accept",
                on_close=self._window_closed,
            )
        )

    def _verification_requested(
        self, controller: ChatController, event: VerificationRequested
    ) -> None:
        if event.kind == "device":
            question = f"Your device {event.device} asks to approve this one"
            detail = (
                "Accept, then compare the codes on both devices: once they match, this "
                "device reads your encrypted conversations."
            )
        else:
            question = f"{event.user} wants to verify you"
            detail = (
                f"Accept, then compare the codes with {event.user} (in person or on a call): "
                "once they match, each of you knows the other's keys are genuine."
            )
        txn = event.txn
        self.verification_windows.append(
            ApprovalDialog(
                self.root,
                self.fonts,
                controller,
                title="Verification request",
                question=question,
                detail=detail,
                yes="Accept",
                no="Decline",
                on_yes=lambda: controller.accept_verification(txn),
                on_no=lambda: controller.cancel_verification(txn),
                whom="the codes",
                on_close=self._window_closed,
                txn=txn,
            )
        )

    # --- file transfers ------------------------------------------------------------------------

    def file_offered(self, offer: TransferInfo) -> bool:
        transfer = offer.transfer
        self.offer_prompts[transfer] = OfferPrompt(
            self.root,
            offer,
            on_accept=lambda: self._accept_offer(transfer),
            on_decline=lambda: self._decline_offer(transfer),
        )
        return True

    def transfer_changed(self, info: TransferInfo) -> None:
        if self.main_view is not None:
            self.main_view.transfers.show(info)
        prompt = self.offer_prompts.get(info.transfer)
        if prompt is not None and info.over:
            self.offer_prompts.pop(info.transfer, None)
            if prompt.winfo_exists():
                prompt.ended(info.message)

    def _accept_offer(self, transfer: str) -> None:
        prompt = self.offer_prompts.get(transfer)
        if prompt is None or self.transfers is None:
            return
        try:
            name = self.transfers.default_name(transfer)
        except TransferError as exc:
            prompt.ended(str(exc))
            return
        path = ask_save_path(prompt, prompt.info, name)
        if not path or self.transfers is None or not prompt.winfo_exists():
            return  # the prompt stays: choose again, or decline
        try:
            # The save dialog asked before choosing an existing file: replacing it is agreed.
            self.transfers.accept(transfer, path, overwrite=os.path.isfile(path))
        except TransferError as exc:
            prompt.show_problem(str(exc))
            return
        self.offer_prompts.pop(transfer, None)
        prompt.over = True
        prompt.destroy()

    def _decline_offer(self, transfer: str) -> None:
        self.offer_prompts.pop(transfer, None)
        if self.transfers is not None:
            self.transfers.decline(transfer)

    def _cancel_transfer(self, transfer: str) -> None:
        if self.transfers is not None:
            self.transfers.cancel(transfer)

    def choose_file(self, user: str) -> None:
        path = ask_open_path(self.root, f"Send a file to {user}")
        if path and self.controller is not None:
            self.controller.send_file(user, path)

    def _send_file_clicked(self) -> None:
        path = ask_open_path(self.root)
        if path:
            self._send_files([path])

    def _files_dropped(self, paths: list[str]) -> None:
        self._send_files(paths)

    def _send_files(self, paths: list[str]) -> None:
        """Send to the partner of the private chat shown, or ask to whom."""
        controller = self.controller
        if controller is None or self.main_view is None or not paths:
            return
        if controller.current.kind == "pm":
            for path in paths:
                controller.send_file(controller.current.name, path)
            return
        me = controller.username
        online, offline = controller.users_by_presence()
        users = [u for u in online + offline if u != me]
        what = os.path.basename(paths[0]) if len(paths) == 1 else f"{len(paths)} files"

        def chosen(user: str) -> None:
            self.recipient_dialog = None
            if self.controller is controller:
                for path in paths:
                    controller.send_file(user, path)

        self.recipient_dialog = RecipientDialog(self.root, self.fonts, what, users, chosen)

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
        elif isinstance(event, OtpRequired):
            self._ask_otp(event)
        elif isinstance(event, LoginNeeded):
            if self.main_view is not None:
                self._end_session()
                self.show_login(event.message)
            elif login is not None:
                login.set_busy(False)
                login.show_error(event.message, keep=True)
                login.focus_first_empty()
        elif isinstance(event, Stopped):
            if event.reason in LOGGED_OUT_REASONS and self.main_view is not None:
                # Words, not an error: the user (or their other device) did this.
                self._end_session()
                self.show_login()
                if self.login_view is not None:
                    self.login_view.show_info(event.message, keep=True)
            elif self.main_view is not None and self.dialog is None:
                self._end_session()
                self.show_login(event.message)
            elif login is not None and self.dialog is None:
                login.set_busy(False)
                login.show_error(event.message)

    def _ask_otp(self, event: OtpRequired) -> None:
        """The login needs a two-factor code: ask for it, then send the login again with it."""
        session = self.session
        if isinstance(self.dialog, OtpDialog):
            self.dialog.destroy()
        if self.login_view is not None:
            self.login_view.show_info("Waiting for your two-factor code...")

        def answered(code: str) -> None:
            self.dialog = None
            if session is self.session and session is not None:
                try:
                    session.answer_otp(code)
                except NotConnected as exc:
                    self._otp_abandoned(f"The code was not sent: {exc}.")

        def cancelled() -> None:
            self.dialog = None
            self._otp_abandoned("Login cancelled. Log in again to continue.")

        self.dialog = OtpDialog(
            self.root,
            self.fonts,
            event.username,
            retry=event.retry,
            on_code=answered,
            on_cancel=cancelled,
        )

    def _otp_abandoned(self, message: str) -> None:
        if self.main_view is not None:  # a reconnect's login: without the code it cannot go on
            self._end_session()
            self.show_login(message)
            return
        login = self.login_view
        if login is not None:
            login.set_busy(False)
            login.show_error(message)
            login.password_entry.focus_set()

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
            f"Your administrator sees the same fingerprint with `{FINGERPRINT_COMMAND}`.",
            parent=self.root,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the desktop client until its window closes; 1 if no window can be opened.

    Ctrl+C in the terminal that started it closes the window as Quit would, without
    asking (nobody is at the window to answer): the session ends and unfinished
    downloads are removed. ``chat-desktop`` calls this function directly.
    """
    parser = argparse.ArgumentParser(prog=program_name("tk_client"), description="Encrypted chat.")
    parser.add_argument("--server", help="prefill the server address")
    parser.add_argument("--user", help="prefill the username")
    args = parser.parse_args(argv)
    try:
        root = tk.Tk(className="Chat")
    except tk.TclError as exc:
        print(
            f"error: cannot open a window ({exc}). The desktop client needs a graphical session; "
            f"in a terminal, use {TERMINAL_CLIENT_HINT}",
            file=sys.stderr,
        )
        return 1
    app = App(root, server=args.server, username=args.user)
    report = root.report_callback_exception

    def callback_failed(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        # Ctrl+C lands in whichever Python code runs: Tk's loop, or a callback such as the pump.
        if issubclass(kind, KeyboardInterrupt):
            app.close()
        else:
            report(kind, value, tb)

    root.report_callback_exception = callback_failed
    try:
        root.mainloop()
    except KeyboardInterrupt:
        app.close()
    return 0
