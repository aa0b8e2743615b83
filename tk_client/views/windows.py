"""What the dialog windows share: how one looks, where it appears, saving a secret from it.

One place for these, so the recovery key, backup codes, verification, account, file offer and
question windows look and behave alike.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import filedialog, ttk
from typing import Any

from chatproto.crypto_utils import write_secret_file

from . import theme


def surface_window(window: tk.Toplevel, master: tk.Misc, title: str) -> ttk.Frame:
    """Dress a new dialog window the one way they all look: hidden until placed, titled,
    on the surface colour, kept above ``master``, fixed in size; returns its padded body."""
    window.withdraw()
    window.title(title)
    window.configure(background=theme.SURFACE)
    window.transient(master.winfo_toplevel())
    window.resizable(False, False)
    body = ttk.Frame(window, style="Surface.TFrame", padding=(26, 22, 26, 18))
    body.pack(fill="both", expand=True)
    return body


def place_over(window: tk.Toplevel, master: tk.Misc, down: int = 4) -> None:
    """Show ``window`` centred across ``master``'s top window, 1/``down`` of the way down,
    and raise it (so a window asked for again comes to the front)."""
    window.update_idletasks()
    top = master.winfo_toplevel()
    x = top.winfo_rootx() + max(0, (top.winfo_width() - window.winfo_reqwidth()) // 2)
    y = top.winfo_rooty() + max(0, (top.winfo_height() - window.winfo_reqheight()) // down)
    window.geometry(f"+{x}+{y}")
    window.deiconify()
    window.lift()


def ask_text_file_path(parent: tk.Misc, title: str, initialfile: str) -> str:
    """Where to save a text file; "" when the user cancels."""
    return filedialog.asksaveasfilename(
        parent=parent,
        title=title,
        initialfile=initialfile,
        defaultextension=".txt",
        filetypes=[("Text files", "*.txt"), ("All files", "*")],
    )


def save_secret_text(path: str, text: str, not_saved: str) -> tuple[bool, str]:
    """Write a secret (a recovery key, backup codes) readable only by the user (mode 0600).

    Returns whether it was written and what to tell the user: where it went, or
    ``not_saved`` (e.g. "The key was not saved") with why and what to do next.
    """
    try:
        write_secret_file(path, text.encode("utf-8"), replace=True)
    except OSError as exc:
        return False, f"{not_saved} ({exc.strerror or exc}). Choose another place."
    return True, f"Saved to {path} (readable only by you)."


class ControllerWindow(tk.Toplevel):
    """A dialog that follows something through a controller (a verification, the key
    backup): dressed by :func:`surface_window`, closed by its button, the window manager or
    Escape (all call :meth:`close`, which a subclass extends), shown by :meth:`present`."""

    def __init__(
        self,
        master: tk.Misc,
        fonts: theme.Fonts,
        controller: Any,
        title: str,
        on_close: Callable[[Any], object],
    ) -> None:
        super().__init__(master)
        self.body = surface_window(self, master, title)
        self.fonts = fonts
        self.controller = controller
        self.on_close = on_close
        self.protocol("WM_DELETE_WINDOW", self.close)
        self.bind("<Escape>", lambda e: self.close())

    def present(self) -> None:
        place_over(self, self.master)

    def fit(self) -> None:
        """Resize to what is shown now (a stage came or went)."""
        if self.winfo_exists():
            self.update_idletasks()
            self.geometry("")

    def close(self) -> None:
        self.on_close(self)
        self.destroy()


def copy_and_save(
    row: ttk.Frame, copy: Callable[[], object], save: Callable[[], object]
) -> tuple[ttk.Button, ttk.Button]:
    """Copy and Save… at the left of ``row``: the two ways to keep a secret that is shown
    only once (the recovery key, the backup codes)."""
    copy_button = ttk.Button(row, text="Copy", command=copy)
    copy_button.pack(side="left")
    save_button = ttk.Button(row, text="Save\u2026", command=save)
    save_button.pack(side="left", padx=(8, 0))
    return copy_button, save_button
