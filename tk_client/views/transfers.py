"""File transfers on screen: progress rows, the incoming offer's prompt, the file dialogs.

Widgets only. They show :class:`~tk_client.files.TransferInfo`
snapshots and hand the user's choices to callbacks; the desktop client's
wiring (``gui.py``) calls the transfer manager with them.
"""

from __future__ import annotations

import contextlib
import tkinter as tk
from collections.abc import Callable, Sequence
from tkinter import filedialog, ttk

from ..files import TransferInfo, TransferState, format_size
from ..secure_files import offer_security
from . import theme
from .dialogs import _Dialog
from .tkutil import release
from .windows import place_over, surface_window

PROGRESS_STEPS = 1000  # the bars' resolution
BAR_STYLE = "Transfer.Horizontal.TProgressbar"


def _stage_line(info: TransferInfo) -> str:
    """The second line of a row: bytes, rate and time left while it runs; else what happens."""
    if info.stage is TransferState.PREPARING:
        return f"Computing the checksum: {info.progress}"
    if info.stage is TransferState.RUNNING:
        return info.progress
    if info.stage is TransferState.FINISHED:  # the title names the file, the peer and the size
        if info.outgoing:
            return f"Delivered: {info.peer} has an exact copy."
        return f"Saved as {info.path}"
    return info.message


class _Row:
    """One transfer: what, with whom, a bar, bytes/rate/time left, and Cancel (or Dismiss)."""

    def __init__(self, panel: TransferPanel, info: TransferInfo) -> None:
        self.panel = panel
        self.transfer = info.transfer
        self.frame = ttk.Frame(panel.rows_frame, style="Surface.TFrame", padding=(0, 4))
        self.frame.columnconfigure(1, weight=1)
        arrow = "\u2191" if info.outgoing else "\u2193"  # up: sending, down: receiving
        self.arrow = ttk.Label(self.frame, text=arrow, style="Heading.TLabel", width=2)
        self.arrow.grid(row=0, column=0, rowspan=3, sticky="n")
        self.title = ttk.Label(self.frame, text="", style="Surface.TLabel")
        self.title.grid(row=0, column=1, sticky="w")
        self.bar = ttk.Progressbar(
            self.frame,
            orient="horizontal",
            mode="determinate",
            maximum=PROGRESS_STEPS,
            style=BAR_STYLE,
        )
        self.bar.grid(row=1, column=1, sticky="ew", pady=(3, 3))
        self.detail = ttk.Label(self.frame, text="", style="Sub.TLabel", wraplength=520)
        self.detail.grid(row=2, column=1, sticky="w")
        self.button = ttk.Button(self.frame, text="Cancel", command=self._pressed)
        self.button.grid(row=0, column=2, rowspan=3, sticky="e", padx=(14, 0))
        self.frame.pack(fill="x")
        self.over = False
        self.update(info)

    def update(self, info: TransferInfo) -> None:
        where = f"to {info.peer}" if info.outgoing else f"from {info.peer}"
        lock = "\N{LOCK} " if info.end_to_end else ""  # 4.12: the server cannot read it
        self.title.configure(text=f"{lock}{info.name}  {where}  ({format_size(info.size)})")
        self.bar.configure(value=round(info.fraction * PROGRESS_STEPS))
        self.detail.configure(text=_stage_line(info))
        if info.over and not self.over:
            self.over = True
            self.button.configure(text="Dismiss")
            colour = theme.SUCCESS if info.stage is TransferState.FINISHED else theme.DANGER
            self.detail.configure(foreground=colour)

    def _pressed(self) -> None:
        if self.over:
            self.panel.remove(self.transfer)
        else:
            self.panel.on_cancel(self.transfer)

    def destroy(self) -> None:
        self.frame.destroy()


class TransferPanel(ttk.Frame):
    """The transfers of the session, above the input line; hidden while there are none."""

    def __init__(self, master: tk.Misc, on_cancel: Callable[[str], None]) -> None:
        super().__init__(master, style="Surface.TFrame", padding=(14, 6, 14, 0))
        ttk.Style(self).configure(
            BAR_STYLE,
            background=theme.ACCENT,
            troughcolor=theme.BORDER,
            bordercolor=theme.BORDER,
            lightcolor=theme.ACCENT,
            darkcolor=theme.ACCENT,
            thickness=6,
        )
        self.on_cancel = on_cancel
        self.rows_frame = ttk.Frame(self, style="Surface.TFrame")
        self.rows_frame.pack(fill="x")
        self.rows: dict[str, _Row] = {}
        self._grid: dict[str, object] | None = None

    def place_at(self, **grid: object) -> None:
        """Where the panel goes when it has rows (it is gridded only then)."""
        self._grid = grid

    def show(self, info: TransferInfo) -> None:
        """Add or update the row of ``info``; an incoming file gets one once it is accepted."""
        row = self.rows.get(info.transfer)
        if row is None:
            if not info.outgoing and info.path is None:
                return  # an offer still in its prompt, or declined there
            self.rows[info.transfer] = _Row(self, info)
        else:
            row.update(info)
        self._visibility()

    def remove(self, transfer: str) -> None:
        row = self.rows.pop(transfer, None)
        if row is not None:
            row.destroy()
        self._visibility()

    def _visibility(self) -> None:
        if self._grid is None:
            return
        if self.rows and not self.winfo_ismapped():
            self.grid(**self._grid)  # type: ignore[arg-type]  # grid options are typed per keyword
        elif not self.rows:
            self.grid_remove()


class OfferPrompt(tk.Toplevel):
    """Someone offers a file: from whom, its name and size, Accept or Decline.

    Not modal (the chat goes on, and several offers can wait at once). Accept
    leads to the save dialog; closing the window declines.
    """

    def __init__(
        self,
        master: tk.Misc,
        info: TransferInfo,
        on_accept: Callable[[], None],
        on_decline: Callable[[], None],
    ) -> None:
        super().__init__(master)
        self.info = info
        self.transfer = info.transfer
        self.on_accept = on_accept
        self.on_decline = on_decline
        body = self.body = surface_window(self, master, f"File from {info.peer}")
        ttk.Label(body, text="Incoming file", style="Heading.TLabel").pack(anchor="w", pady=(0, 8))
        self.sender_label = ttk.Label(
            body, text=f"{info.peer} wants to send you a file:", style="Surface.TLabel"
        )
        self.sender_label.pack(anchor="w")
        self.name_label = ttk.Label(body, text=info.name, style="Heading.TLabel", wraplength=460)
        self.name_label.pack(anchor="w", pady=(6, 0))
        self.size_label = ttk.Label(body, text=format_size(info.size), style="Muted.TLabel")
        self.size_label.pack(anchor="w")
        # 4.12: say whether the server could read it, before the user answers.
        self.security_label = ttk.Label(
            body,
            text=offer_security(info),
            style="Muted.TLabel" if info.end_to_end else "Error.TLabel",
            wraplength=460,
        )
        self.security_label.pack(anchor="w", pady=(4, 0))
        ttk.Label(
            body,
            text="Accept to choose where to save it. It is kept only if it arrives complete "
            "and its checksum matches.",
            style="Muted.TLabel",
            wraplength=460,
            justify="left",
        ).pack(anchor="w", pady=(10, 0))
        self.problem = ttk.Label(body, text="", style="Error.TLabel", wraplength=460)
        self.problem.pack(anchor="w", pady=(6, 0))
        buttons = ttk.Frame(body, style="Surface.TFrame")
        buttons.pack(anchor="e", pady=(12, 0))
        self.decline_button = ttk.Button(buttons, text="Decline", command=self.decline)
        self.decline_button.pack(side="left")
        self.accept_button = ttk.Button(
            buttons, text="Accept\u2026", style="Accent.TButton", command=self.accept
        )
        self.accept_button.pack(side="left", padx=(10, 0))
        self.protocol("WM_DELETE_WINDOW", self.decline)
        self.over = False
        place_over(self, master, down=3)
        self.accept_button.focus_set()

    def accept(self) -> None:
        if not self.over:
            self.on_accept()

    def decline(self) -> None:
        if self.over:
            self.destroy()
            return
        self.over = True
        self.on_decline()
        self.destroy()

    def show_problem(self, text: str) -> None:
        """The chosen place did not work (it exists, no space...): the user may choose again."""
        self.problem.configure(text=text)

    def ended(self, message: str) -> None:
        """The offer ended before an answer (cancelled, expired...): say so, offer only Close."""
        self.over = True
        self.problem.configure(text=message)
        self.accept_button.pack_forget()
        self.decline_button.configure(text="Close")


class RecipientDialog(_Dialog):
    """Who gets the file: one of the users (online ones first), typed or picked."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        what: str,
        users: Sequence[str],
        on_choose: Callable[[str], None],
    ) -> None:
        super().__init__(master, "Send a file")
        self.on_choose = on_choose
        self.text(f"Send {what} to:", "Surface.TLabel", pady=(0, 6))
        self.user = tk.StringVar(value=users[0] if users else "")
        self.combo = ttk.Combobox(self.body, textvariable=self.user, values=list(users))
        self.combo.configure(font=fonts.body)
        self.combo.pack(fill="x")
        buttons = ttk.Frame(self.body, style="Surface.TFrame")
        buttons.pack(anchor="e", pady=(16, 0))
        ttk.Button(buttons, text="Cancel", command=self.cancel).pack(side="left")
        self.send_button = ttk.Button(
            buttons, text="Send", style="Accent.TButton", command=self.choose
        )
        self.send_button.pack(side="left", padx=(10, 0))
        self.combo.bind("<Return>", lambda e: self.choose())
        self.present()
        self.combo.focus_set()

    def choose(self) -> None:
        user = self.user.get().strip()
        if not user:
            self.bell()
            return
        self.close()
        self.on_choose(user)

    def destroy(self) -> None:
        super().destroy()
        release(self.user)


def ask_save_path(parent: tk.Misc, info: TransferInfo, initialfile: str) -> str | None:
    """The save dialog for an accepted offer, suggesting the sanitized name; None if cancelled."""
    path = filedialog.asksaveasfilename(
        parent=parent,
        title=f"Save {info.name} from {info.peer}",
        initialfile=initialfile,
        confirmoverwrite=True,
    )
    return str(path) if path else None


def ask_open_path(parent: tk.Misc, title: str = "Send a file") -> str | None:
    """The file dialog of "Send file"; None if cancelled."""
    path = filedialog.askopenfilename(parent=parent, title=title)
    return str(path) if path else None


def enable_file_drop(widget: tk.Misc, on_paths: Callable[[list[str]], None]) -> bool:
    """Let files be dropped on ``widget`` (tkinterdnd2 and its tkdnd); False where unavailable.

    ``on_paths`` gets the local paths of the dropped files. Importing
    tkinterdnd2 adds its methods to every tkinter widget, so it is imported only
    here, on demand; a missing package or a platform without tkdnd simply
    leaves drag-and-drop off (Send file and /file still work).
    """
    try:
        from tkinterdnd2 import DND_FILES, TkinterDnD
    except ImportError:
        return False
    try:
        TkinterDnD._require(widget.winfo_toplevel())
        widget.drop_target_register(DND_FILES)  # type: ignore[attr-defined]  # tkinterdnd2 adds it at run time
    except (tk.TclError, RuntimeError):
        return False

    def dropped(event: object) -> str:
        data = getattr(event, "data", "")
        with contextlib.suppress(tk.TclError):
            paths = [p for p in widget.tk.splitlist(data) if p]
            if paths:
                on_paths(list(paths))
        return getattr(event, "action", "copy") or "copy"

    widget.dnd_bind("<<Drop>>", dropped)  # type: ignore[attr-defined]  # tkinterdnd2 adds it at run time
    return True
