"""The modal dialogs: trusting a server on first contact or after its key changed, and the
code of a two-factor login."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chatproto.limits import MAX_OTP_LENGTH

from ..known_servers import FINGERPRINT_COMMAND, FORGET_COMMAND, normalise_fingerprint
from . import theme
from .tkutil import release
from .windows import place_over, surface_window


class _Dialog(tk.Toplevel):
    """A modal dialog over ``master``; Escape cancels."""

    def __init__(self, master: tk.Misc, title: str) -> None:
        super().__init__(master)
        self.body = surface_window(self, master, title)
        self.protocol("WM_DELETE_WINDOW", self.cancel)
        self.bind("<Escape>", lambda e: self.cancel())

    def present(self) -> None:
        place_over(self, self.master, down=3)
        self.wait_visibility()
        self.grab_set()
        self.focus_force()

    def text(self, words: str, style: str = "Surface.TLabel", **grid: object) -> ttk.Label:
        label = ttk.Label(self.body, text=words, style=style, wraplength=500, justify="left")
        label.pack(anchor="w", **grid)  # type: ignore[arg-type]  # pack options are typed per keyword
        return label

    def fingerprint_field(self, value: str, fonts: theme.Fonts) -> ttk.Entry:
        """The fingerprint in a read-only field: selectable and copyable, not editable."""
        field = ttk.Entry(self.body, font=fonts.mono, width=len(value) + 2)
        field.insert(0, value)
        field.configure(state="readonly")
        field.pack(anchor="w", pady=(4, 12), fill="x")
        return field

    def cancel(self) -> None:
        self.close()

    def close(self) -> None:
        self.grab_release()
        self.destroy()


class TrustDialog(_Dialog):
    """First contact: show the fingerprint; ``on_answer(True)`` only on Trust."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        address: str,
        fingerprint: str,
        on_answer: Callable[[bool], None],
    ) -> None:
        super().__init__(master, "Trust this server?")
        self.on_answer = on_answer
        self.fingerprint = fingerprint
        self.text("New server", "Heading.TLabel", pady=(0, 8))
        self.text(
            f"This is your first connection to {address}. The server identifies itself "
            "with this key fingerprint:"
        )
        self.fingerprint_field(fingerprint, fonts)
        self.text(
            "Ask your administrator for the server's fingerprint (they see it with "
            f"`{FINGERPRINT_COMMAND}`) and trust the server only if both are the same. "
            "The key is then remembered, and you will be warned if it ever changes.",
            "Muted.TLabel",
        )
        buttons = ttk.Frame(self.body, style="Surface.TFrame")
        buttons.pack(anchor="e", pady=(18, 0))
        self.cancel_button = ttk.Button(buttons, text="Cancel", command=self.cancel)
        self.cancel_button.pack(side="left")
        self.trust_button = ttk.Button(
            buttons, text="Trust", style="Accent.TButton", command=self.trust
        )
        self.trust_button.pack(side="left", padx=(10, 0))
        self.present()
        self.cancel_button.focus_set()

    def trust(self) -> None:
        self.close()
        self.on_answer(True)

    def cancel(self) -> None:
        self.close()
        self.on_answer(False)


class KeyChangedDialog(_Dialog):
    """A changed key: refused. Accepting the new key requires entering its fingerprint.

    Typing (or pasting) the fingerprint the administrator gave is the check
    itself: it cannot be waved through with one click.
    """

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        address: str,
        expected: str,
        received: str,
        on_accept: Callable[[], None],
        on_refuse: Callable[[], None],
    ) -> None:
        super().__init__(master, "Warning: server key changed")
        self.on_accept = on_accept
        self.on_refuse = on_refuse
        self.received = received
        heading = self.text("\u26a0  The server's key has changed!", "Heading.TLabel", pady=(0, 8))
        heading.configure(foreground=theme.DANGER)
        self.text(
            f"The server at {address} presented another key than the one you trusted. "
            "The connection was refused and nothing was sent."
        )
        self.text("Trusted before:", "Muted.TLabel", pady=(10, 0))
        self.fingerprint_field(expected, fonts)
        self.text("Presented now:", "Muted.TLabel")
        self.fingerprint_field(received, fonts)
        self.text(
            "Someone may be intercepting your connection, or the administrator replaced the "
            "server's key. Ask the administrator for the new fingerprint (they see it with "
            f"`{FINGERPRINT_COMMAND}`). Only if it matches, enter it here to trust the "
            f"new key (or run `{FORGET_COMMAND.format(address=address)}`).",
            "Muted.TLabel",
        )
        self.text("The new fingerprint, as your administrator gave it:", pady=(12, 0))
        self.typed = tk.StringVar()
        self.entry = ttk.Entry(self.body, textvariable=self.typed, font=fonts.mono)
        self.entry.pack(fill="x", pady=(4, 2))
        self.problem = ttk.Label(self.body, text="", style="Error.TLabel")
        self.problem.pack(anchor="w")
        buttons = ttk.Frame(self.body, style="Surface.TFrame")
        buttons.pack(anchor="e", pady=(14, 0))
        self.accept_button = ttk.Button(
            buttons,
            text="Trust new key",
            style="Danger.TButton",
            command=self.accept,
            state="disabled",
        )
        self.accept_button.pack(side="left")
        self.close_button = ttk.Button(
            buttons, text="Close", style="Accent.TButton", command=self.cancel
        )
        self.close_button.pack(side="left", padx=(10, 0))
        self._trace = self.typed.trace_add("write", lambda *a: self._check())
        self.present()
        self.close_button.focus_set()

    def _check(self) -> None:
        typed = self.typed.get()
        match = normalise_fingerprint(typed) == self.received
        self.accept_button.configure(state="normal" if match else "disabled")
        if match or not typed.strip():
            self.problem.configure(text="")
        elif normalise_fingerprint(typed) is not None:
            self.problem.configure(text="This is not the fingerprint the server presented.")

    def destroy(self) -> None:
        if self._trace:
            self.typed.trace_remove("write", self._trace)
            self._trace = ""
        super().destroy()
        release(self.typed)

    def accept(self) -> None:
        if normalise_fingerprint(self.typed.get()) != self.received:
            return
        self.close()
        self.on_accept()

    def cancel(self) -> None:
        self.close()
        self.on_refuse()


class OtpDialog(_Dialog):
    """The code of a two-factor login: ``on_code(code)`` on Log in, ``on_cancel()`` else.

    ``retry``: a code was given and refused; the dialog says so and asks again.
    """

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        username: str,
        *,
        retry: bool,
        on_code: Callable[[str], None],
        on_cancel: Callable[[], None],
    ) -> None:
        super().__init__(master, "Two-factor login")
        self.on_code = on_code
        self.on_cancel = on_cancel
        self.text("Enter your code", "Heading.TLabel", pady=(0, 8))
        self.text(
            f"The account {username} has two-factor login. Type the 6-digit code from your "
            "authenticator app, or a backup code."
        )
        self.code = tk.StringVar()
        self.entry = ttk.Entry(self.body, textvariable=self.code, font=fonts.mono, width=22)
        self.entry.pack(anchor="w", pady=(10, 4))
        self.problem = ttk.Label(self.body, text="", style="Error.TLabel", wraplength=500)
        self.problem.pack(anchor="w")
        if retry:
            self.problem.configure(
                text="That code was not accepted. Codes change every 30 seconds and each "
                "works once: type the one the app shows now, or an unused backup code."
            )
        buttons = ttk.Frame(self.body, style="Surface.TFrame")
        buttons.pack(anchor="e", pady=(14, 0))
        self.cancel_button = ttk.Button(buttons, text="Cancel", command=self.cancel)
        self.cancel_button.pack(side="left")
        self.login_button = ttk.Button(
            buttons, text="Log in", style="Accent.TButton", command=self.submit
        )
        self.login_button.pack(side="left", padx=(10, 0))
        self.entry.bind("<Return>", lambda e: self.submit())
        self.entry.bind("<KP_Enter>", lambda e: self.submit())
        self.present()
        self.entry.focus_set()

    def submit(self) -> None:
        code = self.code.get().strip()
        if not code:
            self.problem.configure(text="Type the code first.")
            return
        if len(code) > MAX_OTP_LENGTH:
            self.problem.configure(
                text="That is longer than any code: type the 6 digits, or a backup code."
            )
            return
        self.close()
        self.on_code(code)

    def cancel(self) -> None:
        self.close()
        self.on_cancel()

    def destroy(self) -> None:
        super().destroy()
        release(self.code)
