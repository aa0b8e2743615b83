"""End-to-end verification windows (PROTOCOL.md 4.7-4.8): Verify a contact, approve a device.

- :class:`VerifyDialog` ("Verify..." in a private conversation): the safety number to
  compare, "mark as verified" once it matched, "Compare emoji" for a live comparison,
  and "Accept the new identity" when a contact's identity changed.
- :class:`ApprovalDialog`: a question first (approve my new device? someone wants to
  verify me?), then the same emoji comparison.

Both show :class:`CodesPanel` when the controller reports ``CodesReady``; the App hands
each window the events of its transaction (:meth:`VerificationWindow.codes`,
``verified``, ``cancelled``). The windows are not modal: a comparison waits for the
other person, and the chat stays usable meanwhile.

Tk 8.6 cannot draw characters beyond the Basic Multilingual Plane (53 of the 64 emoji),
and the few others need a font that has them (DejaVu has almost none): so before Tk 9 the
emoji's *name* is shown large instead, which is what people read aloud anyway; the
three numbers are shown too.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Any

from ..e2e.verification import CodesReady, VerificationCancelled, Verified
from ..model import pm_key
from . import theme
from .tkutil import release_images
from .windows import ControllerWindow

COMPARE_NUMBER = (
    "Compare this number with the one {user} sees for you, in person or on a call you "
    "trust: if every digit is the same, nobody stands between you."
)
COMPARE_CODES = (
    "Check that the other device shows the same emoji in the same order: read their names "
    "aloud to each other (or compare the three numbers)."
)


def lock_image(master: tk.Misc, colour: str) -> tk.PhotoImage:
    """A small padlock (10 x 12 pixels, with a margin) on a transparent ground, so it shows
    on a selected row too: Tk 8.6 cannot draw the emoji."""
    image = tk.PhotoImage(master=master, width=14, height=12)
    for x in range(3, 7):
        image.put(colour, (x, 0))
    for y in range(1, 5):
        image.put(colour, (2, y))
        image.put(colour, (7, y))
    for y in range(5, 12):
        for x in range(10):
            if not (4 <= x <= 5 and 7 <= y <= 9):  # the keyhole stays open
                image.put(colour, (x, y))
    return image


# Tk 9 draws any character (with the system's emoji font); Tk 8.6 draws boxes or fails.
SHOW_GLYPHS = tk.TkVersion >= 9.0


class CodesPanel(ttk.Frame):
    """The 7 emoji (names large) and three numbers of a comparison, with the two answers."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        on_match: Callable[[], None],
        on_mismatch: Callable[[], None],
    ) -> None:
        super().__init__(master, style="Surface.TFrame")
        self.fonts = fonts
        self.status = ttk.Label(
            self, text="", style="Surface.TLabel", wraplength=560, justify="left"
        )
        self.cards = ttk.Frame(self, style="Surface.TFrame")
        self.numbers = ttk.Label(self, text="", style="Muted.TLabel")
        self.buttons = ttk.Frame(self, style="Surface.TFrame")
        self.mismatch_button = ttk.Button(
            self.buttons, text="They don't match", command=on_mismatch
        )
        self.mismatch_button.pack(side="left")
        self.match_button = ttk.Button(
            self.buttons, text="They match", style="Accent.TButton", command=on_match
        )
        self.match_button.pack(side="left", padx=(10, 0))
        self.emoji: list[tuple[str, str]] = []

    def say(self, words: str, *, error: bool = False) -> None:
        """Words only (waiting, done, cancelled): the answers go."""
        self.buttons.pack_forget()
        self.status.configure(text=words, foreground=theme.DANGER if error else theme.TEXT)
        self.status.pack(anchor="w", pady=(10, 0))

    def show(self, event: CodesReady) -> None:
        """The codes to compare, and the two answers."""
        self.emoji = list(event.emoji)
        for child in self.cards.winfo_children():
            child.destroy()
        for column, (symbol, name) in enumerate(self.emoji):
            card = ttk.Frame(self.cards, style="Code.TFrame", padding=(10, 8))
            card.grid(row=0, column=column, sticky="nsew", padx=(0 if column == 0 else 6, 0))
            if SHOW_GLYPHS:
                ttk.Label(card, text=symbol, font=self.fonts.emoji, style="Code.TLabel").pack()
            ttk.Label(card, text=name, font=self.fonts.code_name, style="Code.TLabel").pack(
                side="bottom"
            )
        self.numbers.configure(text="or the numbers  " + "  ".join(str(n) for n in event.decimals))
        self.status.configure(text=COMPARE_CODES, foreground=theme.TEXT)
        self.status.pack(anchor="w", pady=(10, 0))
        self.cards.pack(anchor="w", pady=(8, 0))
        self.numbers.pack(anchor="w", pady=(4, 0))
        self.buttons.pack(anchor="e", pady=(12, 0))
        self.match_button.focus_set()

    def names(self) -> list[str]:
        return [name for _, name in self.emoji]


class VerificationWindow(ControllerWindow):
    """A window that follows one verification (``txn``) through the controller."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: Any,
        title: str,
        on_close: Callable[[VerificationWindow], None],
    ) -> None:
        super().__init__(master, fonts, controller, title, on_close)
        self.txn: str | None = None  # known once the first event of the comparison comes
        self.waiting = False  # started here and waiting for its first event
        self.starting = False  # asking the controller to start: its VerificationStarted is ours

    def build_codes(self) -> None:
        """The comparison's panel and the Close button, below what the subclass drew."""
        self.panel = CodesPanel(self.body, self.fonts, self.match, self.mismatch)
        self.panel.pack(fill="x")
        bottom = ttk.Frame(self.body, style="Surface.TFrame")
        bottom.pack(fill="x", pady=(16, 0))
        self.close_button = ttk.Button(bottom, text="Close", command=self.close)
        self.close_button.pack(side="right")

    def heading(self, words: str) -> ttk.Label:
        label = ttk.Label(self.body, text=words, style="Heading.TLabel")
        label.pack(anchor="w", pady=(0, 8))
        return label

    def text(self, words: str, style: str = "Surface.TLabel") -> ttk.Label:
        label = ttk.Label(self.body, text=words, style=style, wraplength=560, justify="left")
        label.pack(anchor="w", pady=(0, 6))
        return label

    # --- the comparison's events (routed here by the App) -----------------------------------

    def started(self, ok: bool, whom: str) -> None:
        """The controller was asked to start (or accept): wait for the codes."""
        if ok:
            self.waiting = True
            self.panel.say(f"Waiting for {whom}...")
        else:
            self.panel.say("The comparison could not start: the messages say why.", error=True)
        self.after_idle(self.fit)

    def codes(self, event: CodesReady) -> None:
        self.txn, self.waiting = event.txn, False
        self.panel.show(event)
        self.after_idle(self.fit)

    def match(self) -> None:
        if self.txn is not None:
            self.controller.confirm_verification(self.txn)
            self.panel.say("Waiting for the other device to confirm too...")

    def mismatch(self) -> None:
        if self.txn is not None:
            txn, self.txn = self.txn, None
            self.controller.cancel_verification(txn)
            self.panel.say(
                "You said the codes differ, so the verification was cancelled and nothing is "
                "trusted. Try again; if they differ again, someone may be listening in.",
                error=True,
            )

    def verified(self, event: Verified) -> None:
        self.txn = None
        if event.kind == "contact":
            words = f"{event.user} is verified: the lock beside your conversations says so."
        elif event.approved_here:
            words = "This device was approved: it reads your encrypted conversations now."
        else:
            words = f"Your device {event.device} is approved."
        self.panel.say("\u2714 " + words)
        self.close_button.focus_set()

    def cancelled(self, event: VerificationCancelled) -> None:
        self.txn, self.waiting = None, False
        self.panel.say(event.text, error=True)

    def close(self) -> None:
        if self.txn is not None:  # closed in the middle: the other side hears it stopped
            txn, self.txn = self.txn, None
            self.controller.cancel_verification(txn)
        super().close()


class VerifyDialog(VerificationWindow):
    """Verify ``user``: their safety number, mark as verified, or compare emoji live."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: Any,
        user: str,
        on_close: Callable[[VerificationWindow], None],
    ) -> None:
        super().__init__(master, fonts, controller, f"Verify {user}", on_close)
        self.user = user
        self._lock = lock_image(self, theme.MUTED)
        self.heading(f"Verify {user}")
        self.lock_words = ttk.Label(
            self.body, text="", image=self._lock, compound="left", style="Muted.TLabel"
        )
        self.lock_words.pack(anchor="w", pady=(0, 10))
        ttk.Label(self.body, text="Safety number", style="Surface.TLabel", font=fonts.sender).pack(
            anchor="w"
        )
        # A read-only Text: selectable and copyable (Ctrl+C), not editable.
        self.number = tk.Text(
            self.body,
            height=3,
            width=24,
            font=fonts.safety,
            relief="flat",
            background=theme.NOTICE_BACKGROUND,
            highlightthickness=0,
            padx=10,
            pady=6,
            wrap="none",
            cursor="xterm",
        )
        self.number.pack(anchor="w", pady=(4, 6))
        self.number.bind("<Control-c>", lambda e: self.number.event_generate("<<Copy>>"))
        self.text(COMPARE_NUMBER.format(user=user), "Muted.TLabel")
        actions = ttk.Frame(self.body, style="Surface.TFrame")
        actions.pack(fill="x", pady=(6, 0))
        self.mark_button = ttk.Button(
            actions,
            text="We compared the numbers: mark as verified",
            command=self.mark_verified,
        )
        self.mark_button.pack(side="left")
        self.compare_button = ttk.Button(
            actions, text="Compare emoji", style="Accent.TButton", command=self.compare
        )
        self.compare_button.pack(side="left", padx=(10, 0))
        self.accept_frame = ttk.Frame(self.body, style="Surface.TFrame")
        self.accept_words = ttk.Label(
            self.accept_frame,
            text=(
                f"{user}'s identity changed: they reinstalled the app or reset it, or "
                "something is wrong. Accept the new identity to send to them again, then "
                "compare the safety number."
            ),
            style="Surface.TLabel",
            foreground=theme.DANGER,
            wraplength=560,
            justify="left",
        )
        self.accept_words.pack(anchor="w")
        self.accept_button = ttk.Button(
            self.accept_frame, text="Accept the new identity", command=self.accept_identity
        )
        self.accept_button.pack(anchor="w", pady=(6, 0))
        self.build_codes()
        self.refresh()
        if self.controller.safety_number(user) is None:
            self.controller.fetch_keys(user)  # the number shows when they come (refresh)
        self.present()

    def destroy(self) -> None:
        super().destroy()
        release_images(self._lock)

    @property
    def safety_number(self) -> str:
        return self.number.get("1.0", "end").strip()

    def refresh(self) -> None:
        """Draw what the controller knows now: state, number, the changed-identity action."""
        if not self.winfo_exists():
            return
        self.lock_words.configure(text=self.controller.security(pm_key(self.user)))
        number = self.controller.safety_number(self.user)
        if number is None:
            shown = f"not known yet: {self.user}'s keys have not arrived"
        else:
            groups = number.split()
            shown = "\n".join(" ".join(groups[i : i + 4]) for i in range(0, len(groups), 4))
        if self.safety_number != shown:
            self.number.configure(state="normal")
            self.number.delete("1.0", "end")
            self.number.insert("1.0", shown)
            self.number.configure(state="disabled", width=max(len(s) for s in shown.split("\n")))
        self.mark_button.configure(state="normal" if number else "disabled")
        if self.identity_changed():
            if not self.accept_frame.winfo_manager():
                self.accept_frame.pack(anchor="w", fill="x", pady=(10, 0), before=self.panel)
        else:
            self.accept_frame.pack_forget()

    def identity_changed(self) -> bool:
        link = self.controller.e2e
        return link is not None and bool(link.lock([self.user]).changed)

    def mark_verified(self) -> None:
        if self.controller.mark_verified(self.user):
            self.panel.say(f"\u2714 {self.user} is verified.")
        self.refresh()

    def compare(self) -> None:
        self.starting = True
        try:
            started = self.controller.verify_contact(self.user)
        finally:
            self.starting = False
        if started:  # one comparison at a time; it comes back when this one ends
            self.compare_button.configure(state="disabled")
        self.started(started, f"{self.user} to accept")

    def cancelled(self, event: VerificationCancelled) -> None:
        super().cancelled(event)
        self.compare_button.configure(state="normal")

    def mismatch(self) -> None:
        super().mismatch()
        self.compare_button.configure(state="normal")

    def accept_identity(self) -> None:
        self.controller.acknowledge_identity(self.user)
        self.refresh()

    def verified(self, event: Verified) -> None:
        super().verified(event)
        self.compare_button.configure(state="normal")
        self.refresh()


class ApprovalDialog(VerificationWindow):
    """A question (approve a new device; accept someone's verification), then the codes.

    ``on_yes()`` starts or accepts the comparison (False: it could not); ``on_no()``
    refuses. ``txn`` is known for a request from the other side.
    """

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: Any,
        *,
        title: str,
        question: str,
        detail: str,
        yes: str,
        no: str,
        on_yes: Callable[[], bool],
        on_no: Callable[[], object],
        whom: str,
        on_close: Callable[[VerificationWindow], None],
        txn: str | None = None,
    ) -> None:
        super().__init__(master, fonts, controller, title, on_close)
        self.txn = txn
        self.on_yes, self.on_no, self.whom = on_yes, on_no, whom
        self.question = self.heading(question)
        self.detail = self.text(detail, "Muted.TLabel")
        self.answers = ttk.Frame(self.body, style="Surface.TFrame")
        self.answers.pack(anchor="e", pady=(10, 0))
        self.no_button = ttk.Button(self.answers, text=no, command=self.no)
        self.no_button.pack(side="left")
        self.yes_button = ttk.Button(
            self.answers, text=yes, style="Accent.TButton", command=self.yes
        )
        self.yes_button.pack(side="left", padx=(10, 0))
        self.build_codes()
        self.present()
        self.yes_button.focus_set()

    def yes(self) -> None:
        self.answers.pack_forget()
        self.starting = True
        try:
            ok = self.on_yes()
        finally:
            self.starting = False
        self.started(ok, self.whom)

    def no(self) -> None:
        self.answers.pack_forget()
        self.txn = None
        self.on_no()
        self.close()


class CodesDialog(VerificationWindow):
    """Codes of a comparison started elsewhere (a typed ``/verify`` or ``/approve``)."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: Any,
        on_close: Callable[[VerificationWindow], None],
    ) -> None:
        super().__init__(master, fonts, controller, "Compare codes", on_close)
        self.heading("Compare the codes")
        self.build_codes()
        self.present()
