"""What the Account window's parts share: the controller's side, a framed section, a question.

Widgets only; see :mod:`tk_client.views.account` for the window.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import messagebox, ttk
from typing import Protocol

from ..backup_actions import BackupStatus


class BackupController(Protocol):
    """What the key backup's views ask of the controller
    (:class:`~tk_client.backup_actions.BackupActions` has them)."""

    @property
    def username(self) -> str | None: ...
    @property
    def backup_status(self) -> BackupStatus | None: ...
    @property
    def can_recover(self) -> bool: ...
    @property
    def can_back_up(self) -> bool: ...

    def backup_status_text(self) -> str: ...
    def begin_backup_setup(self) -> str: ...
    def finish_backup_setup(self, typed: str, password: str | None = None) -> None: ...
    def cancel_backup_setup(self) -> None: ...
    def restore_with_recovery_key(self, text: str) -> None: ...


class AccountController(BackupController, Protocol):
    """What the window asks of the controller; answers come back as account events."""

    @property
    def username(self) -> str | None: ...
    @property
    def two_factor(self) -> bool | None: ...
    @property
    def otp_enrolment_required(self) -> bool: ...

    def change_password(self, current: str, new: str) -> object: ...
    def start_otp_setup(self) -> object: ...
    def confirm_otp(self, code: str) -> object: ...
    def disable_otp(self, password: str, code: str) -> object: ...
    def refresh_devices(self) -> object: ...
    def revoke_device(self, device: str) -> object: ...
    def log_out(self) -> object: ...


def ask_yes_no(parent: tk.Misc, title: str, question: str) -> bool:
    """Ask before something that cannot be undone (tests replace this function)."""
    return bool(messagebox.askyesno(title, question, parent=parent, icon="warning"))


class Section(ttk.Labelframe):
    """A framed part of the window, with a line for what happened to its action."""

    def __init__(self, master: tk.Misc, title: str) -> None:
        super().__init__(master, text=title, style="Section.TLabelframe", padding=(14, 6, 14, 10))
        self.columnconfigure(1, weight=1)
        self.message = ttk.Label(self, text="", style="Error.TLabel", wraplength=400)

    def place_message(self, row: int) -> None:
        self.message.grid(row=row, column=0, columnspan=3, sticky="w", pady=(6, 0))

    def show_error(self, text: str) -> None:
        self.message.configure(text=text, style="Error.TLabel")

    def show_done(self, text: str) -> None:
        self.message.configure(text=text, style="Success.TLabel")

    def show_info(self, text: str) -> None:
        self.message.configure(text=text, style="Muted.TLabel")

    def field(
        self, row: int, label: str, variable: tk.StringVar, *, show: str = "", width: int = 22
    ) -> ttk.Entry:
        ttk.Label(self, text=label, style="Surface.TLabel").grid(
            row=row, column=0, sticky="w", padx=(0, 12), pady=3
        )
        entry = ttk.Entry(self, textvariable=variable, show=show, width=width)
        entry.grid(row=row, column=1, sticky="ew", pady=3)
        return entry
