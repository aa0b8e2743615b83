"""The login window's content: server, username, password, log in or create an account.

"Remember me on this computer" (on by default) asks the server for a device
token (PROTOCOL.md 3.4), so the next start logs in without the password.

Widgets only: :class:`tk_client.gui.App` connects to the server as soon as an
address is there (to show its greeting and whether it accepts new accounts) and
tells this view what happened.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from chatproto.wording import try_again

from . import theme
from .tkutil import release

ADDRESS_SETTLE_MS = 700  # wait this long after the last keystroke in the address field


class LoginView(ttk.Frame):
    """``on_address(text)`` when the address settles; ``on_submit(u, p, register, remember)``
    to log in (``remember``: the box "Remember me on this computer" is ticked).

    ``remembered(username)``: this computer keeps a login for that user on the server in
    the form; Log in with an empty password then submits ``""`` (log in with it).
    """

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        *,
        server: str,
        username: str,
        on_address: Callable[[str], None],
        on_submit: Callable[[str, str, bool, bool], None],
        remember: bool = True,
        remembered: Callable[[str], bool] = lambda username: False,
    ) -> None:
        super().__init__(master)
        self.on_address = on_address
        self.on_submit = on_submit
        self.remembered = remembered
        self._settle: str | None = None
        self._countdown: str | None = None
        self._blocked_until = 0
        self._busy = False
        self._registration = False
        self._keep = False  # the greeting leaves the message in place

        card = ttk.Frame(self, style="Card.TFrame", padding=(36, 30, 36, 26))
        card.place(relx=0.5, rely=0.45, anchor="center")
        card.columnconfigure(1, weight=1)
        ttk.Label(card, text="Chat", style="Title.TLabel").grid(
            row=0, column=0, columnspan=2, sticky="w"
        )
        ttk.Label(card, text="Encrypted chat for your organisation", style="Sub.TLabel").grid(
            row=1, column=0, columnspan=2, sticky="w", pady=(0, 18)
        )
        self.server = tk.StringVar(value=server)
        self.username = tk.StringVar(value=username)
        self.password = tk.StringVar()
        self.server_entry = self._field(card, 2, "Server", self.server)
        self.greeting = ttk.Label(card, text="", style="Sub.TLabel", wraplength=330, justify="left")
        self.greeting.grid(row=3, column=1, sticky="w", pady=(2, 8))
        self.username_entry = self._field(card, 4, "Username", self.username)
        self.password_entry = self._field(card, 5, "Password", self.password, show="\u2022")
        self.remember = tk.BooleanVar(value=remember)
        self.remember_box = ttk.Checkbutton(
            card,
            text="Remember me on this computer",
            variable=self.remember,
            style="Surface.TCheckbutton",
        )
        self.remember_box.grid(row=6, column=1, sticky="w", pady=(4, 0))
        self.message = ttk.Label(
            card, text="", style="Error.TLabel", wraplength=360, justify="left"
        )
        self.message.grid(row=7, column=0, columnspan=2, sticky="w", pady=(10, 0))
        buttons = ttk.Frame(card, style="Surface.TFrame")
        buttons.grid(row=8, column=0, columnspan=2, sticky="ew", pady=(14, 0))
        self.login_button = ttk.Button(
            buttons, text="Log in", style="Accent.TButton", command=lambda: self._submit(False)
        )
        self.login_button.pack(side="left")
        self.register_button = ttk.Button(
            buttons, text="Create account", command=lambda: self._submit(True), state="disabled"
        )
        self.register_button.pack(side="left", padx=(10, 0))
        self.registration_note = ttk.Label(card, text="", style="Sub.TLabel", wraplength=360)
        self.registration_note.grid(row=9, column=0, columnspan=2, sticky="w", pady=(8, 0))
        self.fingerprint = ttk.Label(card, text="", style="Mono.TLabel")
        self.fingerprint.grid(row=10, column=0, columnspan=2, sticky="w", pady=(12, 0))

        self.server_entry.bind("<KeyRelease>", self._address_typed)
        self.server_entry.bind("<FocusOut>", lambda e: self._address_settled())
        for entry in (self.server_entry, self.username_entry, self.password_entry):
            entry.bind("<Return>", lambda e: self._submit(False))
            entry.bind("<KP_Enter>", lambda e: self._submit(False))

    def _field(
        self, card: ttk.Frame, row: int, label: str, variable: tk.StringVar, show: str = ""
    ) -> ttk.Entry:
        ttk.Label(card, text=label, style="Surface.TLabel").grid(
            row=row, column=0, sticky="w", padx=(0, 14), pady=4
        )
        entry = ttk.Entry(card, textvariable=variable, width=34, show=show)
        entry.grid(row=row, column=1, sticky="ew", pady=4)
        return entry

    def destroy(self) -> None:
        for pending in (self._settle, self._countdown):
            if pending is not None:
                self.after_cancel(pending)
        super().destroy()
        release(self.server, self.username, self.password, self.remember)

    def focus_first_empty(self) -> None:
        for entry, variable in (
            (self.server_entry, self.server),
            (self.username_entry, self.username),
            (self.password_entry, self.password),
        ):
            if not variable.get():
                entry.focus_set()
                return
        self.password_entry.focus_set()

    # --- user actions -----------------------------------------------------------------------

    def _address_typed(self, event: tk.Event) -> None:
        if event.keysym in ("Return", "KP_Enter", "Tab"):
            return
        if self._settle is not None:
            self.after_cancel(self._settle)
        self._settle = self.after(ADDRESS_SETTLE_MS, self._address_settled)

    def _address_settled(self) -> None:
        if self._settle is not None:
            self.after_cancel(self._settle)
            self._settle = None
        self.on_address(self.server.get())

    def _submit(self, register: bool) -> str:
        if self._busy or (register and not self._registration):
            return "break"
        if self._blocked_until:
            return "break"
        username, password = self.username.get().strip(), self.password.get()
        if not self.server.get().strip():
            self.show_error("Enter the server address.")
            self.server_entry.focus_set()
        elif not username:
            self.show_error("Enter your username.")
            self.username_entry.focus_set()
        elif not password and not register and self.remembered(username):
            self.on_submit(username, "", False, True)  # the saved login, as at start
        elif not password:
            self.show_error("Enter your password.")
            self.password_entry.focus_set()
        else:
            self.on_submit(username, password, register, bool(self.remember.get()))
        return "break"

    # --- what the application tells this view ------------------------------------------------

    def show_connecting(self, address: str) -> None:
        self.greeting.configure(text=f"Connecting to {address}...", foreground=theme.MUTED)
        self.fingerprint.configure(text="")

    def show_greeting(self, greeting: dict, fingerprint: str) -> None:
        server = str(greeting.get("server") or "")
        text = str(greeting.get("text") or "")
        words = f"{server} \u2014 {text}" if server and text else server or text
        self.greeting.configure(text=words or "Connected.", foreground=theme.SUCCESS)
        self.fingerprint.configure(text=f"Server key {fingerprint}")
        self.set_registration(bool(greeting.get("registration")))
        if not self._keep:
            self.message.configure(text="")

    def show_unreachable(self, message: str) -> None:
        self.greeting.configure(text="Not connected.", foreground=theme.DANGER)
        self.show_error(message)
        self.set_registration(None)

    def set_registration(self, open_: bool | None) -> None:
        """True: sign-up open; False: closed (say so); None: not known (no greeting yet)."""
        self._registration = bool(open_)
        self.register_button.configure(state="normal" if open_ and not self._busy else "disabled")
        if open_ is False:
            self.registration_note.configure(
                text="This server does not accept new accounts: ask its administrator for one."
            )
        else:
            self.registration_note.configure(text="")

    def show_error(self, text: str, *, keep: bool = False) -> None:
        """``keep``: the words stay when the greeting arrives (why the user is back here);
        else a greeting clears them (a connection problem that is over, progress words)."""
        self._keep = keep
        self.message.configure(text=text, foreground=theme.DANGER)

    def show_info(self, text: str, *, keep: bool = False) -> None:
        """As :meth:`show_error`, for words that are not an error (e.g. "You logged out")."""
        self._keep = keep
        self.message.configure(text=text, foreground=theme.MUTED)

    def set_busy(self, busy: bool, text: str = "") -> None:
        self._busy = busy
        state = "disabled" if busy or self._blocked_until else "normal"
        self.login_button.configure(state=state)
        self.register_button.configure(
            state="normal"
            if self._registration and not busy and not self._blocked_until
            else "disabled"
        )
        if text:
            self.show_info(text)

    def rejected(self, message: str, retry_after: int | None) -> None:
        """A refused login: the words, the password selected for retyping, maybe a wait."""
        self.set_busy(False)
        self.show_error(message)
        self.password_entry.focus_set()
        self.password_entry.select_range(0, "end")
        if retry_after:
            self._blocked_until = retry_after
            self.set_busy(False)
            self._count_down(message)

    def _count_down(self, message: str) -> None:
        if self._blocked_until <= 0:
            self._blocked_until = 0
            self._countdown = None
            self.set_busy(False)
            self.show_info("You can try again now.")
            return
        base = message.split(" Try again in ")[0]
        self.show_error(f"{base} {try_again(self._blocked_until).capitalize()}")
        self._blocked_until -= 1
        self._countdown = self.after(1000, lambda: self._count_down(message))
