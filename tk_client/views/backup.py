"""The key backup in the desktop client (PROTOCOL.md 4.13): its section and its two windows.

- :class:`BackupSection` (in the Account window): the backup's state in words, and the
  buttons that fit it: set up, reset, enter the recovery key.
- :class:`RecoveryKeyWindow`: set-up and reset. A reset asks for the password first and
  says that the old key stops working; then the recovery key is shown once, large and
  grouped, with Copy and Save (a file only the user can read); then the user types it
  back before "Turn on backup".
- :class:`RecoveryDialog`: type the recovery key on a device that has no other to approve
  it; a typo is refused at once, and a progress line follows the restore.

Widgets only: the steps are the controller's (:mod:`tk_client.backup_actions`), whose
events the App hands to :meth:`handle`. The key leaves the screen with the window.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import filedialog, ttk
from typing import Any

from chatproto.crypto_utils import write_secret_file

from ..backup_actions import (
    NOT_TURNED_ON,
    RESET_WARNING,
    TYPE_IT_BACK,
    WHAT_THE_KEY_IS,
    BackupChanged,
    BackupEnabled,
    BackupProblem,
    BackupRecovered,
    BackupRefused,
    BackupRestored,
    BackupRestoreProgress,
    BackupStatus,
    key_rows,
    progress_text,
)
from . import theme
from .sections import BackupController, Section
from .tkutil import release

RECOVERY_KEY_FILE = "chat-recovery-key.txt"
RECOVER_EXPLAINED = (
    "Type the recovery key you were shown when you set up the key backup (14 groups of 4 "
    "letters and digits; spaces and capitals do not matter). This device then reads your "
    "encrypted conversations, as your other devices do."
)


def ask_recovery_key_path(parent: tk.Misc) -> str:
    """Where to save the recovery key; "" when the user cancels (tests replace it)."""
    return filedialog.asksaveasfilename(
        parent=parent,
        title="Save the recovery key",
        initialfile=RECOVERY_KEY_FILE,
        defaultextension=".txt",
        filetypes=[("Text files", "*.txt"), ("All files", "*")],
    )


def recovery_key_text(username: str, key: str) -> str:
    """The recovery key as saved: whose it is, what it opens, then the key."""
    lines = [
        f"Recovery key for {username}'s encrypted chat history.",
        "Type it on a new device (Enter recovery key..., or /recover KEY) to read your",
        "encrypted conversations there. Keep it somewhere safe, away from this computer.",
        "",
        key,
    ]
    return "\n".join(lines) + "\n"


class BackupSection(Section):
    """The key backup's state, and Set up / Reset / Enter recovery key as they fit."""

    def __init__(
        self,
        master: tk.Misc,
        actions: BackupController,
        *,
        on_setup: Callable[[bool], object],
        on_recover: Callable[[], object],
    ) -> None:
        super().__init__(master, "Key backup")
        self.actions = actions
        self.status = ttk.Label(
            self, text="", style="Surface.TLabel", wraplength=380, justify="left"
        )
        self.status.grid(row=0, column=0, columnspan=3, sticky="w")
        buttons = ttk.Frame(self, style="Surface.TFrame")
        buttons.grid(row=1, column=0, columnspan=3, sticky="w", pady=(8, 0))
        self.setup_button = ttk.Button(
            buttons,
            text="Set up key backup\u2026",
            style="Accent.TButton",
            command=lambda: on_setup(False),
        )
        self.reset_button = ttk.Button(
            buttons, text="Reset key backup\u2026", command=lambda: on_setup(True)
        )
        self.recover_button = ttk.Button(
            buttons, text="Enter recovery key\u2026", command=on_recover
        )
        self.place_message(2)
        self.refresh()

    def set_enabled(self, enabled: bool) -> None:
        """Off while two-factor login must be set up first (nothing else is served)."""
        for button in (self.setup_button, self.reset_button, self.recover_button):
            button.configure(state="normal" if enabled else "disabled")

    def refresh(self) -> None:
        """Words and buttons for the backup's state now."""
        status = self.actions.backup_status
        self.status.configure(text=self.actions.backup_status_text())
        signed = self.actions.can_back_up  # only an approved device makes a backup
        shown = {
            self.setup_button: signed and status in (BackupStatus.NONE, BackupStatus.UNKNOWN),
            self.recover_button: status is BackupStatus.NEEDS_KEY,
            self.reset_button: signed and status in (BackupStatus.ON, BackupStatus.NEEDS_KEY),
        }
        for button, show in shown.items():
            button.pack_forget()
            if show:
                button.pack(side="left", padx=(0, 8))

    def handle(self, event: Any) -> None:
        """A backup event from the controller: the words change, a reset elsewhere is said."""
        elsewhere = isinstance(event, BackupChanged) and not event.by_me
        if elsewhere and event.reset:
            self.show_error(event.text)
        elif elsewhere or isinstance(event, BackupEnabled | BackupRestored | BackupRecovered):
            self.show_done(event.text)
        self.refresh()


class _BackupWindow(tk.Toplevel):
    """What both windows share: a surface, a title, words, a message line, closing."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: BackupController,
        title: str,
        on_close: Callable[[Any], object],
    ) -> None:
        super().__init__(master)
        self.withdraw()
        self.title(title)
        self.configure(background=theme.SURFACE)
        self.transient(master.winfo_toplevel())
        self.resizable(False, False)
        self.fonts = fonts
        self.controller = controller
        self.on_close = on_close
        self._closed = False
        self.body = ttk.Frame(self, style="Surface.TFrame", padding=(26, 22, 26, 18))
        self.body.pack(fill="both", expand=True)
        self.protocol("WM_DELETE_WINDOW", self.close)
        self.bind("<Escape>", lambda e: self.close())

    def words(self, master: tk.Misc, text: str, style: str = "Surface.TLabel") -> ttk.Label:
        label = ttk.Label(master, text=text, style=style, wraplength=600, justify="left")
        label.pack(anchor="w", pady=(0, 8))
        return label

    def say(self, label: ttk.Label, text: str, kind: str = "info") -> None:
        style = {"info": "Muted.TLabel", "error": "Error.TLabel", "done": "Success.TLabel"}[kind]
        label.configure(text=text, style=style)

    def present(self) -> None:
        self.update_idletasks()
        master = self.master.winfo_toplevel()
        x = master.winfo_rootx() + max(0, (master.winfo_width() - self.winfo_reqwidth()) // 2)
        y = master.winfo_rooty() + max(0, (master.winfo_height() - self.winfo_reqheight()) // 4)
        self.geometry(f"+{x}+{y}")
        self.deiconify()
        self.lift()

    def fit(self) -> None:
        if self.winfo_exists():
            self.update_idletasks()
            self.geometry("")

    def handle(self, event: Any) -> None:
        """A backup event from the controller (the App hands every one to each window)."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.on_close(self)
        self.destroy()


class RecoveryKeyWindow(_BackupWindow):
    """Set up (or reset) the key backup: password (reset), the key once, typed back, on."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: BackupController,
        *,
        reset: bool,
        on_close: Callable[[Any], object] = lambda window: None,
    ) -> None:
        title = "Reset the key backup" if reset else "Set up key backup"
        super().__init__(master, fonts, controller, title, on_close)
        self.reset = reset
        self.key = ""
        self.stage = ""
        self.password = tk.StringVar()
        self.typed = tk.StringVar()
        ttk.Label(self.body, text=title, style="Heading.TLabel").pack(anchor="w", pady=(0, 8))
        self.stages = ttk.Frame(self.body, style="Surface.TFrame")
        self.stages.pack(fill="x")

        # A reset: why, and the password.
        self.password_frame = ttk.Frame(self.stages, style="Surface.TFrame")
        self.words(self.password_frame, RESET_WARNING)
        row = ttk.Frame(self.password_frame, style="Surface.TFrame")
        row.pack(anchor="w", pady=(4, 0))
        ttk.Label(row, text="Password", style="Surface.TLabel").pack(side="left", padx=(0, 12))
        self.password_entry = ttk.Entry(row, textvariable=self.password, show="\u2022", width=26)
        self.password_entry.pack(side="left")
        self.password_entry.bind("<Return>", lambda e: self.password_given())
        self.continue_button = ttk.Button(
            self.password_frame,
            text="Make a new recovery key",
            style="Accent.TButton",
            command=self.password_given,
        )
        self.continue_button.pack(anchor="e", pady=(12, 0))

        # The key, once: what it is, the key large, Copy and Save.
        self.key_frame = ttk.Frame(self.stages, style="Surface.TFrame")
        self.words(self.key_frame, WHAT_THE_KEY_IS)
        self.key_label = ttk.Label(
            self.key_frame,
            text="",
            style="Code.TLabel",
            font=fonts.safety,
            padding=(16, 12),
            justify="center",
            anchor="center",
        )
        self.key_label.pack(fill="x", pady=(4, 10))
        key_buttons = ttk.Frame(self.key_frame, style="Surface.TFrame")
        key_buttons.pack(fill="x")
        self.copy_button = ttk.Button(key_buttons, text="Copy", command=self.copy_key)
        self.copy_button.pack(side="left")
        self.save_button = ttk.Button(key_buttons, text="Save\u2026", command=self.save_key)
        self.save_button.pack(side="left", padx=(8, 0))
        self.kept_button = ttk.Button(
            key_buttons, text="I have kept it", style="Accent.TButton", command=self.kept
        )
        self.kept_button.pack(side="right")

        # Typed back: the check that the user kept it.
        self.check_frame = ttk.Frame(self.stages, style="Surface.TFrame")
        self.words(self.check_frame, TYPE_IT_BACK)
        self.typed_entry = ttk.Entry(
            self.check_frame, textvariable=self.typed, font=fonts.mono, width=72
        )
        self.typed_entry.pack(anchor="w", fill="x", pady=(0, 10))
        self.typed_entry.bind("<Return>", lambda e: self.turn_on())
        check_buttons = ttk.Frame(self.check_frame, style="Surface.TFrame")
        check_buttons.pack(fill="x")
        self.back_button = ttk.Button(check_buttons, text="Show the key again", command=self.back)
        self.back_button.pack(side="left")
        self.turn_on_button = ttk.Button(
            check_buttons, text="Turn on backup", style="Accent.TButton", command=self.turn_on
        )
        self.turn_on_button.pack(side="right")

        self.message = ttk.Label(self.body, text="", style="Muted.TLabel", wraplength=600)
        self.message.pack(anchor="w", pady=(10, 0))
        bottom = ttk.Frame(self.body, style="Surface.TFrame")
        bottom.pack(fill="x", pady=(12, 0))
        self.close_button = ttk.Button(bottom, text="Cancel", command=self.close)
        self.close_button.pack(side="right")

        if reset:
            self._show(self.password_frame, "password")
            self.password_entry.focus_set()
        else:
            self._make_key()

    # --- stages -------------------------------------------------------------------------------

    def _show(self, frame: ttk.Frame, stage: str) -> None:
        for other in (self.password_frame, self.key_frame, self.check_frame):
            other.pack_forget()
        frame.pack(fill="x")
        self.stage = stage
        self.fit()

    def _make_key(self) -> None:
        try:
            self.key = self.controller.begin_backup_setup()
        except BackupRefused as exc:
            self.stage = "refused"
            for frame in (self.password_frame, self.key_frame, self.check_frame):
                frame.pack_forget()
            self.say(self.message, str(exc), "error")
            self.close_button.configure(text="Close")
            return
        self.key_label.configure(text="\n".join(key_rows(self.key)))
        self.say(self.message, "")
        self._show(self.key_frame, "key")
        self.kept_button.focus_set()

    # --- user actions -------------------------------------------------------------------------

    def password_given(self) -> None:
        if not self.password.get():
            self.say(self.message, "Enter your password to reset the key backup.", "error")
            self.password_entry.focus_set()
            return
        self._make_key()

    def copy_key(self) -> None:
        self.clipboard_clear()
        self.clipboard_append(self.key)
        self.say(
            self.message,
            "The recovery key is on the clipboard: paste it into your password manager.",
            "done",
        )

    def save_key(self) -> None:
        path = ask_recovery_key_path(self)
        if not path:
            return
        text = recovery_key_text(self.controller.username or "", self.key)
        try:
            write_secret_file(path, text.encode("utf-8"), replace=True)
        except OSError as exc:
            self.say(
                self.message,
                f"The key was not saved ({exc.strerror or exc}). Choose another place.",
                "error",
            )
            return
        self.say(self.message, f"Saved to {path} (readable only by you).", "done")

    def kept(self) -> None:
        self.say(self.message, "")
        self._show(self.check_frame, "check")
        self.typed_entry.focus_set()

    def back(self) -> None:
        self._show(self.key_frame, "key")

    def turn_on(self) -> None:
        if self.stage != "check":
            return
        password = self.password.get() if self.reset else None
        # Publishing from here on: what the controller reports (even at once) follows it.
        self.stage = "publishing"
        self.turn_on_button.configure(state="disabled")
        self.back_button.configure(state="disabled")
        self.say(self.message, "Turning the key backup on\u2026")
        try:
            self.controller.finish_backup_setup(self.typed.get(), password)
        except BackupRefused as exc:
            self.stage = "check"
            self.turn_on_button.configure(state="normal")
            self.back_button.configure(state="normal")
            self.say(self.message, str(exc), "error")
            self.typed_entry.focus_set()

    # --- the controller's events --------------------------------------------------------------

    def handle(self, event: Any) -> None:
        if self.stage != "publishing":
            return
        if isinstance(event, BackupEnabled):
            self.stage = "done"
            self._forget()
            self.check_frame.pack_forget()
            self.say(self.message, "\u2714 " + event.text, "done")
            self.close_button.configure(text="Close")
            self.close_button.focus_set()
            self.fit()
        elif isinstance(event, BackupProblem):
            self.stage = "failed"
            self._forget()
            self.check_frame.pack_forget()
            self.say(self.message, f"{event.text} {NOT_TURNED_ON}", "error")
            self.close_button.configure(text="Close")
            self.fit()

    def _forget(self) -> None:
        self.key = ""
        self.key_label.configure(text="")
        self.password.set("")
        self.typed.set("")

    def destroy(self) -> None:
        # Closed (Cancel, Close, Escape, the app going): the controller forgets the key too.
        self.key = ""
        self.controller.cancel_backup_setup()
        release(self.password, self.typed)
        super().destroy()


class RecoveryDialog(_BackupWindow):
    """Type the recovery key: a typo at once, then progress, then what was restored."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: BackupController,
        *,
        on_close: Callable[[Any], object] = lambda window: None,
    ) -> None:
        super().__init__(master, fonts, controller, "Enter your recovery key", on_close)
        self.restoring = False
        self.typed = tk.StringVar()
        ttk.Label(self.body, text="Enter your recovery key", style="Heading.TLabel").pack(
            anchor="w", pady=(0, 8)
        )
        self.words(self.body, RECOVER_EXPLAINED)
        self.entry = ttk.Entry(self.body, textvariable=self.typed, font=fonts.mono, width=72)
        self.entry.pack(anchor="w", fill="x", pady=(0, 6))
        self.entry.bind("<Return>", lambda e: self.restore())
        self.message = ttk.Label(self.body, text="", style="Muted.TLabel", wraplength=600)
        self.message.pack(anchor="w", pady=(4, 0))
        bottom = ttk.Frame(self.body, style="Surface.TFrame")
        bottom.pack(fill="x", pady=(12, 0))
        self.close_button = ttk.Button(bottom, text="Cancel", command=self.close)
        self.close_button.pack(side="right")
        self.restore_button = ttk.Button(
            bottom, text="Restore", style="Accent.TButton", command=self.restore
        )
        self.restore_button.pack(side="right", padx=(0, 8))
        self.entry.focus_set()

    def restore(self) -> None:
        if self.restoring:
            return
        # Restoring from here on: what the controller reports (even at once) follows it.
        self.restoring = True
        self.restore_button.configure(state="disabled")
        self.say(self.message, "Checking the recovery key against your key backup\u2026")
        try:
            self.controller.restore_with_recovery_key(self.typed.get())
        except BackupRefused as exc:
            self.restoring = False
            self.restore_button.configure(state="normal")
            self.say(self.message, str(exc), "error")
            self.entry.focus_set()

    def handle(self, event: Any) -> None:
        if isinstance(event, BackupRecovered):  # approved by the key; the restore follows
            self.restoring = True
            self.say(self.message, event.text, "done")
        elif isinstance(event, BackupRestoreProgress):
            self.restoring = True
            self.restore_button.configure(state="disabled")
            self.say(self.message, progress_text(event))
        elif isinstance(event, BackupRestored):
            self.restoring = False
            self.typed.set("")
            self.entry.configure(state="disabled")
            self.say(self.message, "\u2714 " + event.text, "done")
            self.close_button.configure(text="Close")
            self.close_button.focus_set()
        elif isinstance(event, BackupProblem) and self.restoring:
            self.restoring = False
            self.restore_button.configure(state="normal")
            self.say(self.message, event.text, "error")
            self.entry.focus_set()
        self.fit()

    def destroy(self) -> None:
        release(self.typed)
        super().destroy()
