"""The QR code of /2fa on, drawn with characters: it must hold exactly the code's modules."""

from __future__ import annotations

import builtins

from tk_client.terminal_qr import QR_MISSING, can_draw_blocks, draw, qr_matrix, qr_text

URI = "otpauth://totp/Chat:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Chat"


def read_back_blocks(text: str) -> list[list[bool]]:
    """The modules (True: dark) of a code drawn with half blocks, two rows per line."""
    upper = {" ": False, "\u2584": False, "\u2580": True, "\u2588": True}  # light on top?
    lower = {" ": False, "\u2580": False, "\u2584": True, "\u2588": True}
    rows = []
    for line in text.splitlines():
        rows.append([not upper[c] for c in line])
        rows.append([not lower[c] for c in line])
    return rows


def test_the_block_drawing_holds_every_module():
    matrix = qr_matrix(URI)
    drawn = draw(matrix)

    assert read_back_blocks(drawn)[: len(matrix)] == matrix
    assert len(drawn.splitlines()) == (len(matrix) + 1) // 2


def test_the_ascii_drawing_holds_every_module():
    matrix = qr_matrix(URI)
    drawn = draw(matrix, unicode=False)

    read = [
        [line[i : i + 2] == "  " for i in range(0, len(line), 2)] for line in drawn.splitlines()
    ]
    assert read == matrix


def test_blocks_only_where_the_output_can_show_them():
    assert can_draw_blocks("utf-8")
    assert not can_draw_blocks("ascii")
    assert not can_draw_blocks(None)
    assert "##" in qr_text(URI, "ascii")
    assert "\u2588" in qr_text(URI, "UTF-8")


def test_without_the_qrcode_package_it_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_qrcode(name, *args, **kwargs):
        if name == "qrcode":
            raise ImportError("No module named 'qrcode'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_qrcode)

    assert qr_text(URI, "utf-8") == QR_MISSING
    assert "pip install qrcode" in QR_MISSING
