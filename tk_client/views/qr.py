"""A QR code drawn on a Tk canvas: dark modules as filled squares, no image library.

The two-factor setup shows the ``otpauth://`` address as a QR code for the
user's authenticator app to scan. The ``qrcode`` package computes the matrix;
drawing it as rectangles keeps Pillow out of the client. ``qrcode`` is a client
requirement, but it is imported only when a code is drawn: a client without it
still runs, and the setup says what to install (the secret can be typed in).
"""

from __future__ import annotations

import tkinter as tk

QUIET_ZONE = 4  # modules of white around the code: scanners need it (ISO/IEC 18004)
MODULE_PIXELS = 4  # one module's side on screen; a phone camera reads 4 px squares well
DARK = "#000000"
LIGHT = "#ffffff"
QR_MISSING = (
    "The QR code needs the Python package qrcode (pip install qrcode). "
    "Type the secret into the app instead."
)


def qr_matrix(data: str, border: int = QUIET_ZONE) -> list[list[bool]]:
    """The modules of ``data``'s QR code, quiet zone included: True is dark.

    ImportError when the ``qrcode`` package is missing.
    """
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    code = qrcode.QRCode(border=border, error_correction=ERROR_CORRECT_M)
    code.add_data(data)
    code.make(fit=True)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


class QrCanvas(tk.Canvas):
    """A canvas that shows one QR code at a time; :meth:`show` replaces it."""

    def __init__(self, master: tk.Misc, module: int = MODULE_PIXELS) -> None:
        super().__init__(master, width=1, height=1, background=LIGHT, highlightthickness=0)
        self.module = module
        self.matrix: list[list[bool]] = []

    def show(self, data: str) -> bool:
        """Draw ``data``'s code; False when it cannot be drawn (no ``qrcode`` package)."""
        self.clear()
        try:
            self.matrix = qr_matrix(data)
        except ImportError:
            return False
        side = len(self.matrix) * self.module
        self.configure(width=side, height=side)
        m = self.module
        for y, row in enumerate(self.matrix):
            for x, dark in enumerate(row):
                if dark:
                    self.create_rectangle(
                        x * m, y * m, (x + 1) * m, (y + 1) * m, fill=DARK, width=0, tags="dark"
                    )
        return True

    def clear(self) -> None:
        """Remove the code (the secret it carries should not stay on the screen)."""
        self.delete("all")
        self.matrix = []
        self.configure(width=1, height=1)

    def dark_modules(self) -> int:
        """How many dark squares are drawn (tests compare it with the matrix)."""
        return len(self.find_withtag("dark"))
