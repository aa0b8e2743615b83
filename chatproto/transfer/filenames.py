"""The name to save an offered file under: never a path, a control or a device name."""

from __future__ import annotations

import unicodedata

RESERVED_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in range(1, 10)}
    | {f"LPT{n}" for n in range(1, 10)}
)
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf"})  # controls; format characters such as U+202E


def is_reserved_name(name: str) -> bool:
    """A Windows device name, with any extension: ``con``, ``CON.txt``, ``Com1.tar.gz``."""
    stem = name.split(".", 1)[0]
    return stem.isascii() and stem.upper() in RESERVED_DEVICE_NAMES


def sanitize_filename(name: str) -> str:
    """The name to save an offered file under (PROTOCOL.md 3.3), never empty, never a path.

    Removes ``/``, ``\\`` and every character of Unicode categories Cc and Cf;
    strips leading dots and trailing dots and spaces; an empty result or a
    reserved device name on Windows becomes ``file``. Idempotent.
    """
    kept = "".join(
        char
        for char in name
        if char not in "/\\" and unicodedata.category(char) not in _DROPPED_CATEGORIES
    )
    kept = kept.lstrip(".").rstrip(". ")
    if not kept or is_reserved_name(kept):
        return "file"
    return kept
