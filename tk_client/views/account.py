"""The Account window: password, two-factor login, devices, key backup, log out (3.4, 4.13).

Widgets only. Every action goes to the controller (:class:`AccountController`:
:class:`tk_client.controller.ChatController` has them), and what the server
answered comes back through :meth:`AccountWindow.handle` with the events of
:mod:`tk_client.account`. A refusal is shown beside the action it belongs to,
in the words the controller gives, so the user sees what to do next there.

Secrets on screen: the two-factor secret and its QR code stay only while the
setup is open; the backup codes are shown once and go with the window. Nothing
typed here is kept after the window closes (:func:`tkutil.release`).
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Any

from ..account import (
    CHANGE_PASSWORD,
    CONFIRM_OTP,
    DISABLE_OTP,
    LOG_OUT,
    REFRESH_DEVICES,
    REVOKE_DEVICE,
    START_OTP_SETUP,
    AccountActionFailed,
    DeviceRevoked,
    DevicesListed,
    OtpDisabled,
    OtpEnabled,
    OtpSetupStarted,
    PasswordChanged,
)
from . import sections, theme
from .backup import BackupSection
from .devices import DevicesSection
from .sections import AccountController, Section
from .tkutil import release
from .two_factor import TwoFactorSection
from .windows import place_over

OTHER_DEVICES_NOTE = "Your other devices are logged out when the password changes."
LOG_OUT_QUESTION = (
    "Log out of this computer? It forgets the saved login; you will need your password to "
    "log in again."
)


class PasswordSection(Section):
    """Current, new and repeated password; the repetition is checked here."""

    def __init__(self, master: tk.Misc, on_change: Callable[[str, str], object]) -> None:
        super().__init__(master, "Password")
        self.on_change = on_change
        self.current = tk.StringVar()
        self.new = tk.StringVar()
        self.repeat = tk.StringVar()
        self.current_entry = self.field(0, "Current password", self.current, show="\u2022")
        self.new_entry = self.field(1, "New password", self.new, show="\u2022")
        self.repeat_entry = self.field(2, "Repeat new password", self.repeat, show="\u2022")
        self.button = ttk.Button(self, text="Change password", command=self.submit)
        self.button.grid(row=3, column=1, sticky="e", pady=(8, 0))
        self.place_message(4)
        self.show_info(OTHER_DEVICES_NOTE)
        for entry in (self.current_entry, self.new_entry, self.repeat_entry):
            entry.bind("<Return>", lambda e: self.submit())

    def submit(self) -> None:
        current, new, repeat = self.current.get(), self.new.get(), self.repeat.get()
        if not current:
            self.show_error("Enter your current password.")
            self.current_entry.focus_set()
        elif not new:
            self.show_error("Enter the new password.")
            self.new_entry.focus_set()
        elif new != repeat:
            self.show_error("The two new passwords differ: repeat the new one exactly.")
            self.repeat.set("")
            self.repeat_entry.focus_set()
        elif new == current:
            self.show_error("The new password is the same as the current one.")
            self.new_entry.focus_set()
        else:
            self.show_info("Changing the password...")
            self.on_change(current, new)

    def changed(self) -> None:
        for variable in (self.current, self.new, self.repeat):
            variable.set("")
        self.show_done(
            "Password changed. Your other devices were logged out; this one stays logged in."
        )

    def set_enabled(self, enabled: bool) -> None:
        state = "normal" if enabled else "disabled"
        for widget in (self.current_entry, self.new_entry, self.repeat_entry, self.button):
            widget.configure(state=state)

    def release(self) -> None:
        release(self.current, self.new, self.repeat)


# AccountActionFailed.action -> the section that shows it (anything else: beside Log out).
_SECTION_OF = {
    CHANGE_PASSWORD: "password",
    START_OTP_SETUP: "two_factor",
    CONFIRM_OTP: "two_factor",
    DISABLE_OTP: "two_factor",
    REFRESH_DEVICES: "devices",
    REVOKE_DEVICE: "devices",
    LOG_OUT: "log_out",
}


class AccountWindow(tk.Toplevel):
    """A window of its own beside the chat; closing it only hides what it showed."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        actions: AccountController,
        *,
        on_close: Callable[[], None] = lambda: None,
        on_backup_setup: Callable[[bool], object] = lambda reset: None,
        on_recover: Callable[[], object] = lambda: None,
    ) -> None:
        """``on_backup_setup(reset)`` and ``on_recover()``: open the key backup's windows
        (the App keeps them, as they outlive this one)."""
        super().__init__(master)
        self.withdraw()
        self.actions = actions
        self.on_close = on_close
        self._closed = False
        self.title(f"Account \u2014 {actions.username}" if actions.username else "Account")
        self.configure(background=theme.SURFACE)
        self.transient(master.winfo_toplevel())
        self.protocol("WM_DELETE_WINDOW", self.close)
        self.bind("<Escape>", lambda e: self.close())

        body = ttk.Frame(self, style="Surface.TFrame", padding=(16, 12, 16, 12))
        body.pack(fill="both", expand=True)
        body.columnconfigure(0, weight=1)
        body.columnconfigure(1, weight=1)
        body.rowconfigure(2, weight=1)
        self.banner = ttk.Label(
            body,
            text="This server requires two-factor login. Turn it on (on the right) to "
            "continue; until then you cannot chat.",
            style="Banner.TLabel",
            wraplength=820,
        )
        self.password = PasswordSection(body, actions.change_password)
        self.password.grid(row=1, column=0, sticky="new", padx=(0, 10))
        self.devices = DevicesSection(body, actions)
        self.devices.grid(row=2, column=0, sticky="nsew", padx=(0, 10), pady=(8, 0))
        self.two_factor = TwoFactorSection(body, fonts, actions)
        self.two_factor.grid(row=1, column=1, rowspan=2, sticky="nsew")
        self.backup = BackupSection(body, actions, on_setup=on_backup_setup, on_recover=on_recover)
        self.backup.grid(row=3, column=1, sticky="nsew", pady=(8, 0))

        self.log_out_section = Section(body, "Log out")
        self.log_out_section.grid(row=3, column=0, sticky="sew", padx=(0, 10), pady=(8, 0))
        ttk.Label(
            self.log_out_section,
            text="Forget the saved login on this computer: the next start asks for your password.",
            style="Muted.TLabel",
            wraplength=300,
        ).grid(row=0, column=0, sticky="w")
        self.log_out_button = ttk.Button(self.log_out_section, text="Log out", command=self.log_out)
        self.log_out_button.grid(row=0, column=2, sticky="e", padx=(12, 0))
        self.log_out_section.columnconfigure(1, weight=1)
        self.log_out_section.place_message(1)
        self.close_button = ttk.Button(body, text="Close", command=self.close)
        self.close_button.grid(row=4, column=1, sticky="se", pady=(8, 0))
        self.set_enrolment_required(actions.otp_enrolment_required)

    def present(self) -> None:
        """Show the window over the main one, or raise it if it is already shown."""
        place_over(self, self.master)
        self.focus_force()

    def set_enrolment_required(self, required: bool) -> None:
        """Until two-factor login is on, only its section (and Log out) can be used."""
        if required:
            self.banner.grid(row=0, column=0, columnspan=2, sticky="ew", pady=(0, 10))
        else:
            self.banner.grid_forget()
        self.password.set_enabled(not required)
        self.devices.set_enabled(not required)
        self.backup.set_enabled(not required)

    # --- what the controller tells this window ---------------------------------------------------

    def handle(self, event: Any) -> None:
        """One account event (:mod:`tk_client.account`) for the section it belongs to."""
        if isinstance(event, PasswordChanged):
            self.password.changed()
            self.devices.refresh()  # the other devices are gone now
        elif isinstance(event, OtpSetupStarted):
            self.two_factor.setup_started(event.secret, event.uri)
        elif isinstance(event, OtpEnabled):
            self.two_factor.enabled(event.backup_codes)
            self.set_enrolment_required(False)
        elif isinstance(event, OtpDisabled):
            self.two_factor.disabled()
        elif isinstance(event, DevicesListed):
            self.devices.listed(event.devices)
        elif isinstance(event, DeviceRevoked):
            self.devices.revoked(event.device)
        elif isinstance(event, AccountActionFailed):
            self.section_of(event.action).show_error(event.message)

    def section_of(self, action: str) -> Section:
        name = _SECTION_OF.get(action, "log_out")
        return {
            "password": self.password,
            "two_factor": self.two_factor,
            "devices": self.devices,
            "log_out": self.log_out_section,
        }[name]

    # --- user actions -------------------------------------------------------------------------

    def log_out(self) -> None:
        if not sections.ask_yes_no(self, "Log out", LOG_OUT_QUESTION):
            return
        self.log_out_section.show_info("Logging out...")
        self.actions.log_out()

    def close(self) -> None:
        """Close the window (Close, Escape, the window manager); the app forgets it."""
        if self._closed:
            return
        self.destroy()
        self.on_close()

    def destroy(self) -> None:
        self._closed = True
        self.password.release()
        self.two_factor.release()
        super().destroy()
