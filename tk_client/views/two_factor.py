"""The Account window's two-factor part: turn on (QR code, secret, confirm), backup codes, off.

The secret and its QR code stay on the screen only while the setup is open;
the backup codes are shown once (PROTOCOL.md 3.4: the server never shows them
again) and can be copied or saved to a file that only the user can read.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from chatproto.limits import MAX_OTP_LENGTH

from . import theme
from .qr import QR_MISSING, QrCanvas
from .sections import AccountController, Section
from .tkutil import release
from .windows import ask_text_file_path, copy_and_save, save_secret_text

BACKUP_CODES_FILE = "chat-backup-codes.txt"
OTP_DIGITS = 6  # RFC 6238 as PROTOCOL.md 3.4 uses it


def ask_backup_codes_path(parent: tk.Misc) -> str:
    """Where to save the backup codes; "" when the user cancels (tests replace it)."""
    return ask_text_file_path(parent, "Save the backup codes", BACKUP_CODES_FILE)


def backup_codes_text(username: str, codes: tuple[str, ...]) -> str:
    """The backup codes as saved or copied: what they are for, then one per line."""
    lines = [
        f"Backup codes for {username}'s chat account.",
        "Each works once, in place of the code from your authenticator app.",
        "Keep them somewhere safe, away from this computer.",
        "",
        *codes,
    ]
    return "\n".join(lines) + "\n"


class TwoFactorSection(Section):
    """Off, setting up (QR code, secret, confirm), backup codes, on (turn off)."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        actions: AccountController,
    ) -> None:
        super().__init__(master, "Two-factor login")
        self.actions = actions
        self.backup_codes: tuple[str, ...] = ()
        self.stage = ""
        self.status = ttk.Label(self, text="", style="Surface.TLabel", wraplength=380)
        self.status.grid(row=0, column=0, columnspan=3, sticky="w")
        self.body = ttk.Frame(self, style="Surface.TFrame")
        self.body.grid(row=1, column=0, columnspan=3, sticky="nsew", pady=(8, 0))
        self.body.columnconfigure(1, weight=1)
        self.place_message(2)

        # Off: Turn on. Not known (no login with a code seen yet): Turn off... as well.
        self.off_frame = ttk.Frame(self.body, style="Surface.TFrame")
        self.turn_on_button = ttk.Button(
            self.off_frame, text="Turn on", style="Accent.TButton", command=self.turn_on
        )
        self.turn_on_button.pack(side="left")
        self.show_off_form_button = ttk.Button(
            self.off_frame, text="Turn off\u2026", command=lambda: self.show_state(True)
        )

        # Setup: the QR code, the secret beside it, the code, Confirm.
        self.setup_frame = ttk.Frame(self.body, style="Surface.TFrame")
        self.qr = QrCanvas(self.setup_frame)
        self.qr.grid(row=0, column=0, rowspan=6, sticky="nw", padx=(0, 16))
        ttk.Label(
            self.setup_frame,
            text="Scan the code with your authenticator app, or type this secret into it:",
            style="Surface.TLabel",
            wraplength=220,
            justify="left",
        ).grid(row=0, column=1, sticky="w")
        self.secret = tk.StringVar()
        self.secret_entry = ttk.Entry(
            self.setup_frame, textvariable=self.secret, font=fonts.mono_small, width=33
        )
        self.secret_entry.configure(state="readonly")  # selectable and copyable, not editable
        self.secret_entry.grid(row=1, column=1, sticky="ew", pady=(4, 10))
        ttk.Label(
            self.setup_frame,
            text="Then type the 6-digit code the app shows:",
            style="Surface.TLabel",
            wraplength=220,
        ).grid(row=2, column=1, sticky="w")
        self.code = tk.StringVar()
        self.code_entry = ttk.Entry(
            self.setup_frame, textvariable=self.code, font=fonts.mono, width=10
        )
        self.code_entry.grid(row=3, column=1, sticky="w", pady=(4, 8))
        self.code_entry.bind("<Return>", lambda e: self.confirm())
        setup_buttons = ttk.Frame(self.setup_frame, style="Surface.TFrame")
        setup_buttons.grid(row=4, column=1, sticky="w")
        self.confirm_button = ttk.Button(
            setup_buttons, text="Confirm", style="Accent.TButton", command=self.confirm
        )
        self.confirm_button.pack(side="left")
        self.cancel_setup_button = ttk.Button(
            setup_buttons, text="Cancel", command=self.cancel_setup
        )
        self.cancel_setup_button.pack(side="left", padx=(8, 0))

        # Enabled: the backup codes, once.
        self.codes_frame = ttk.Frame(self.body, style="Surface.TFrame")
        ttk.Label(
            self.codes_frame,
            text="These backup codes are shown only this once: "
            "each works once in place of a code, if you lose your phone. "
            "Save or copy them now and keep them somewhere safe.",
            style="Surface.TLabel",
            wraplength=400,
            justify="left",
        ).pack(anchor="w")
        self.codes_text = tk.Text(
            self.codes_frame,
            height=10,
            width=24,
            font=fonts.mono,
            relief="solid",
            borderwidth=1,
            background=theme.NOTICE_BACKGROUND,
        )
        self.codes_text.pack(anchor="w", pady=(6, 6))
        codes_buttons = ttk.Frame(self.codes_frame, style="Surface.TFrame")
        codes_buttons.pack(anchor="w")
        self.copy_button, self.save_button = copy_and_save(
            codes_buttons, self.copy_codes, self.save_codes
        )
        self.done_button = ttk.Button(
            codes_buttons, text="I have saved them", command=self.codes_saved
        )
        self.done_button.pack(side="left", padx=(8, 0))

        # On: turn off with the password and a code.
        self.on_frame = ttk.Frame(self.body, style="Surface.TFrame")
        self.on_frame.columnconfigure(1, weight=1)
        ttk.Label(
            self.on_frame,
            text="To turn it off, enter your password and a current code:",
            style="Surface.TLabel",
        ).grid(row=0, column=0, columnspan=2, sticky="w", pady=(0, 4))
        self.off_password = tk.StringVar()
        self.off_code = tk.StringVar()
        ttk.Label(self.on_frame, text="Password", style="Surface.TLabel").grid(
            row=1, column=0, sticky="w", padx=(0, 12), pady=3
        )
        self.off_password_entry = ttk.Entry(
            self.on_frame, textvariable=self.off_password, show="\u2022", width=22
        )
        self.off_password_entry.grid(row=1, column=1, sticky="ew", pady=3)
        ttk.Label(self.on_frame, text="Code", style="Surface.TLabel").grid(
            row=2, column=0, sticky="w", padx=(0, 12), pady=3
        )
        self.off_code_entry = ttk.Entry(
            self.on_frame, textvariable=self.off_code, font=fonts.mono, width=10
        )
        self.off_code_entry.grid(row=2, column=1, sticky="w", pady=3)
        self.turn_off_button = ttk.Button(self.on_frame, text="Turn off", command=self.turn_off)
        self.turn_off_button.grid(row=3, column=1, sticky="w", pady=(6, 0))
        for entry in (self.off_password_entry, self.off_code_entry):
            entry.bind("<Return>", lambda e: self.turn_off())

        self.show_state(actions.two_factor)

    # --- states -----------------------------------------------------------------------------

    def show_state(self, on: bool | None) -> None:
        """Off: the Turn on button; on: the form that turns it off; unknown: both ways."""
        self._only(self.on_frame if on else self.off_frame)
        self.stage = "on" if on else "off"
        if on is None:
            self.show_off_form_button.pack(side="left", padx=(8, 0))
        else:
            self.show_off_form_button.pack_forget()
        if on:
            self.status.configure(
                text="Two-factor login is on: logging in with the password also needs a code "
                "from your authenticator app."
            )
        elif on is None:
            self.status.configure(
                text="Two-factor login asks for a code from an authenticator app (such as "
                "Aegis, Google Authenticator or 1Password) each time you log in with your "
                "password, which protects your account if the password leaks. Turn it on, "
                "or off if it is on already."
            )
        else:
            self.status.configure(
                text="Two-factor login is off. Turn it on to need a code from an "
                "authenticator app as well as your password."
            )

    def _only(self, frame: ttk.Frame) -> None:
        for other in (self.off_frame, self.setup_frame, self.codes_frame, self.on_frame):
            if other is not frame:
                other.grid_forget()
        frame.grid(row=0, column=0, columnspan=2, sticky="nsew")

    def setup_started(self, secret: str, uri: str) -> None:
        self.stage = "setup"
        self.status.configure(text="Add this account to your authenticator app.")
        drawn = self.qr.show(uri)
        self.secret.set(secret)
        self.code.set("")
        self.show_info("" if drawn else QR_MISSING)
        self._only(self.setup_frame)
        self.code_entry.focus_set()

    def enabled(self, codes: tuple[str, ...]) -> None:
        self._forget_setup()
        self.stage = "codes"
        self.backup_codes = tuple(codes)
        self.status.configure(text="Two-factor login is on.")
        self.codes_text.configure(state="normal")
        self.codes_text.delete("1.0", "end")
        self.codes_text.insert("1.0", "\n".join(codes))
        self.codes_text.configure(state="disabled", height=max(1, len(codes)))
        self.show_info("")
        self._only(self.codes_frame)

    def disabled(self) -> None:
        self.off_password.set("")
        self.off_code.set("")
        self.show_state(False)
        self.show_done("Two-factor login is off.")

    def _forget_setup(self) -> None:
        self.qr.clear()
        self.secret.set("")
        self.code.set("")

    # --- user actions -------------------------------------------------------------------------

    def turn_on(self) -> None:
        self.show_info("Asking the server for a new secret...")
        self.actions.start_otp_setup()

    def confirm(self) -> None:
        code = self.code.get().strip().replace(" ", "")
        if not code.isdigit() or len(code) != OTP_DIGITS:
            self.show_error("Type the 6 digits that your authenticator app shows for this account.")
            self.code_entry.focus_set()
            return
        self.show_info("Checking the code...")
        self.actions.confirm_otp(code)

    def cancel_setup(self) -> None:
        self._forget_setup()
        self.show_state(self.actions.two_factor)
        self.show_info("Two-factor login was not turned on.")

    def turn_off(self) -> None:
        password, code = self.off_password.get(), self.off_code.get().strip()
        if not password:
            self.show_error("Enter your password to turn two-factor login off.")
            self.off_password_entry.focus_set()
        elif not code or len(code) > MAX_OTP_LENGTH:
            self.show_error("Enter a current code from your authenticator app, or a backup code.")
            self.off_code_entry.focus_set()
        else:
            self.show_info("Turning two-factor login off...")
            self.actions.disable_otp(password, code)

    def copy_codes(self) -> None:
        self.clipboard_clear()
        self.clipboard_append(backup_codes_text(self.actions.username or "", self.backup_codes))
        self.show_done("The backup codes are on the clipboard. Paste them somewhere safe.")

    def save_codes(self) -> None:
        path = ask_backup_codes_path(self)
        if not path:
            return
        text = backup_codes_text(self.actions.username or "", self.backup_codes)
        saved, said = save_secret_text(path, text, "The codes were not saved")
        (self.show_done if saved else self.show_error)(said)

    def codes_saved(self) -> None:
        self.backup_codes = ()
        self.codes_text.configure(state="normal")
        self.codes_text.delete("1.0", "end")
        self.show_state(True)
        self.show_info("")

    def release(self) -> None:
        self.backup_codes = ()
        self.qr.clear()
        release(self.secret, self.code, self.off_password, self.off_code)
