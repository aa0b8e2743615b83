"""The terminal client's lines: one message, one progress line, text made safe to print.

Pure functions of the model and of :class:`~tk_client.files.TransferInfo`, so the
printer (:mod:`tk_client.terminal_view`) stays about where and when a line goes,
and the tests can check the words without a terminal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from .files import TransferInfo, TransferState
from .model import ChatMessage, ConversationKey

BAR_WIDTH = 20  # characters of the progress bar on a terminal
CANNOT_DECRYPT = "(cannot decrypt) "  # before the reason an encrypted line is not shown
NOW_READABLE = "(now readable) "  # before a line printed again once its key came


def printable(text: str) -> str:
    """``text`` safe for a terminal: control and format characters shown, not obeyed.

    Another user's message must not move the cursor, recolour the screen or
    reverse the text direction (ESC sequences, U+202E): each such character is
    replaced by a visible ``\\x1b``-style escape. Newlines become an indented
    continuation, so every message still starts a line of its own.
    """
    out = []
    for char in text:
        if char == "\n":
            out.append("\n  ")
        elif char == "\t" or unicodedata.category(char) not in ("Cc", "Cf"):
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def format_message(
    key: ConversationKey, message: ChatMessage, *, now_readable: bool = False
) -> str:
    """One line: ``[lobby] alice: hi``, ``[pm] alice: hi``, ``[pm -> bob] me: hi``.

    An encrypted message this device cannot read says so and why (4.9):
    ``[pm] alice: (cannot decrypt) <why>``; ``now_readable``: its text, once its key came.
    """
    if key.kind == "room":
        where = f"[{key.name}]"
    elif message.own:
        where = f"[pm -> {key.name}]"
    else:
        where = "[pm]"
    note = CANNOT_DECRYPT if message.unreadable else NOW_READABLE if now_readable else ""
    return f"{where} {printable(message.sender)}: {note}{printable(message.text)}"


def security_line(where: str, security: str) -> str:
    """``* now talking in #dev (public room: the server can read it)``."""
    return f"* now talking in {where} ({security})"


def codes_text(
    who: str, emoji: Sequence[tuple[str, str]], decimals: Sequence[int], encoding: str | None
) -> str:
    """The codes of a verification to compare (4.7): the 7 emoji with their names (the
    symbols left out if ``encoding`` cannot show them), the 3 numbers, what to type."""
    symbols = all(_encodable(symbol, encoding) for symbol, _ in emoji)
    names = [f"{symbol} {name}" if symbols else name for symbol, name in emoji]
    numbers = " ".join(str(n) for n in decimals)
    return "\n".join(
        [
            f"Compare these with the screen of {who}:",
            "  " + "   ".join(names),
            f"  (or the numbers {numbers})",
            f"Type /confirm if {who}'s screen shows the same, /cancel if not.",
        ]
    )


def _encodable(text: str, encoding: str | None) -> bool:
    if not encoding:
        return True
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def describe_running(info: TransferInfo) -> str:
    """``sending report.pdf to bob: 4.0 MiB of 10.0 MiB (40%), 12.1 MiB/s, 1 s left``."""
    if info.stage is TransferState.RUNNING:
        where = f"to {info.peer}" if info.outgoing else f"from {info.peer}"
        verb = "sending" if info.outgoing else "receiving"
        return f"{verb} {info.name} {where}: {info.progress}"
    if info.stage is TransferState.PREPARING:
        return f"{info.message}: {info.progress}"
    return info.message


def progress_bar(info: TransferInfo) -> str:
    """``report.pdf -> bob [#########...........] 45% 4.5 MiB of 10.0 MiB, 5 MiB/s, 1 s left``."""
    arrow = f"{info.name} -> {info.peer}" if info.outgoing else f"{info.name} <- {info.peer}"
    if info.stage not in (TransferState.RUNNING, TransferState.PREPARING):
        return printable(f"{arrow}: {info.message}")
    filled = int(info.fraction * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    label = "checksum " if info.stage is TransferState.PREPARING else ""
    return printable(f"{arrow} [{bar}] {label}{info.progress}")


def is_yes(answer: str) -> bool:
    """The answer to a ``[y/N]`` question: yes only when the user typed it."""
    return answer.strip().lower() in ("y", "yes")
