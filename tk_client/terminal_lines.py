"""The terminal client's lines: one message, one progress line, text made safe to print.

Pure functions of the model and of :class:`~tk_client.files.TransferInfo`, so the
printer (:mod:`tk_client.terminal_view`) stays about where and when a line goes,
and the tests can check the words without a terminal.
"""

from __future__ import annotations

import unicodedata

from .files import TransferInfo, TransferState
from .model import ChatMessage, ConversationKey

BAR_WIDTH = 20  # characters of the progress bar on a terminal


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


def format_message(key: ConversationKey, message: ChatMessage) -> str:
    """One line: ``[lobby] alice: hi``, ``[pm] alice: hi``, ``[pm -> bob] me: hi``."""
    if key.kind == "room":
        where = f"[{key.name}]"
    elif message.own:
        where = f"[pm -> {key.name}]"
    else:
        where = "[pm]"
    return f"{where} {printable(message.sender)}: {printable(message.text)}"


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
