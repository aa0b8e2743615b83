"""Small Tk helpers shared by the views."""

from __future__ import annotations

import contextlib
import tkinter as tk
import tkinter.font as tkfont


def release(*variables: tk.Variable) -> None:
    """Clear and unset Tk variables now, on Tk's thread.

    Left to the garbage collector, a variable's ``__del__`` may run on whichever
    thread collects it, such as the session's, which must not call Tk; and a
    password should not linger in a Tcl variable after its window is gone.
    """
    for variable in variables:
        if variable._tk is None:  # type: ignore[attr-defined]  # released already
            continue
        with contextlib.suppress(tk.TclError, RuntimeError):
            if isinstance(variable, tk.StringVar):
                variable.set("")
            variable._tk.globalunsetvar(variable._name)  # type: ignore[attr-defined]  # tkinter's own, untyped
        variable._tk = None  # type: ignore[attr-defined]  # makes __del__ a no-op


def release_images(*images: tk.Image) -> None:
    """Delete Tk images now, on Tk's thread (see :func:`release`)."""
    for image in images:
        if not image.name:
            continue
        with contextlib.suppress(tk.TclError, RuntimeError):
            image.tk.call("image", "delete", image.name)
        image.name = None  # makes __del__ a no-op


def release_fonts(*fonts: tkfont.Font) -> None:
    """Delete named fonts now, on Tk's thread.

    A ``Font`` collected on another thread calls Tk from there; without a running
    main loop tkinter then waits a second per font before giving up, which stalls
    the thread that happened to collect it (the session's, mid-handshake).
    """
    for font in fonts:
        with contextlib.suppress(tk.TclError, RuntimeError):
            if font.delete_font:
                font._call("font", "delete", font.name)  # type: ignore[attr-defined]  # what Font.__del__ calls
        font.delete_font = False
