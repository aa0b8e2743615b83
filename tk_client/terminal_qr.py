"""A QR code drawn with characters, for ``/2fa on`` in the terminal client.

Drawn like ``qrencode -t UTF8``: light modules are full blocks and dark ones
spaces, two rows of modules per line (upper and lower half blocks), which reads
right on the usual light-on-dark terminal and keeps the code small enough to
scan. A terminal that cannot show those characters gets ``##`` and spaces, one
row per line. The ``qrcode`` package is a client dependency, but it is imported
only here and only when a code is drawn, so a client without it still runs and
says what to install.
"""

from __future__ import annotations

QR_MISSING = (
    "(The QR code needs the Python package qrcode, which is not installed: "
    "pip install qrcode. Type the secret into the app instead.)"
)
_BLOCKS = {(True, True): "\u2588", (True, False): "\u2580", (False, True): "\u2584"}


def qr_matrix(text: str) -> list[list[bool]]:
    """The modules of a QR code for ``text`` (True: dark), with a quiet zone of 2.

    ImportError when the ``qrcode`` package is missing.
    """
    import qrcode

    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(text)
    code.make(fit=True)
    return [[bool(module) for module in row] for row in code.get_matrix()]


def draw(matrix: list[list[bool]], *, unicode: bool = True) -> str:
    """The code as lines of text (light modules drawn, dark ones blank)."""
    if not unicode:
        return "\n".join("".join("  " if dark else "##" for dark in row) for row in matrix)
    lines = []
    for top in range(0, len(matrix), 2):
        upper = matrix[top]
        lower = matrix[top + 1] if top + 1 < len(matrix) else [True] * len(upper)
        lines.append(
            "".join(_BLOCKS.get((not a, not b), " ") for a, b in zip(upper, lower, strict=True))
        )
    return "\n".join(lines)


def can_draw_blocks(encoding: str | None) -> bool:
    """True if a stream with this encoding can show the block characters."""
    try:
        "".join(_BLOCKS.values()).encode(encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return False
    return True


def qr_text(text: str, encoding: str | None) -> str:
    """The QR code for ``text`` to print on a stream of ``encoding``, or why there is none."""
    try:
        matrix = qr_matrix(text)
    except ImportError:
        return QR_MISSING
    return draw(matrix, unicode=can_draw_blocks(encoding))
