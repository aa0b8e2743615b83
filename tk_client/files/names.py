"""The local name of an offered file: sanitized, short enough, free in its folder.

No tkinter, no network. :func:`safe_name` is also the save dialog's initial
name; :func:`incoming_destination` picks ``name (1).ext`` when ``name`` is taken.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from chatproto.transfer import sanitize_filename

NAME_BUDGET = 240  # bytes of UTF-8 for a saved name: 255 on every common file system, less " (n)"
MAX_EXTENSION = 32  # bytes; a longer "extension" is not one and may be cut like the rest
WINDOWS_FORBIDDEN = '<>:"|?*'  # not allowed in Windows file names (":" would name a stream)


def _split_extension(name: str) -> tuple[str, str]:
    """("report", ".pdf"), ("archive", ".tar.gz"), ("README", "")."""
    dot = name.rfind(".")
    if dot <= 0 or len(name[dot:].encode("utf-8")) > MAX_EXTENSION:
        return name, ""
    stem, extension = name[:dot], name[dot:]
    if stem.lower().endswith(".tar") and len(stem) > 4:
        stem, extension = stem[:-4], stem[-4:] + extension
    return stem, extension


def _fit(name: str, budget: int) -> str:
    """``name`` cut to ``budget`` bytes of UTF-8, keeping its extension."""
    if len(name.encode("utf-8")) <= budget:
        return name
    stem, extension = _split_extension(name)
    room = budget - len(extension.encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore")  # never half a character
    return sanitize_filename(stem + extension)


def safe_name(offered: str, *, windows: bool | None = None) -> str:
    """The local file name for an offered ``name``; also the save dialog's initial name.

    Sanitized as PROTOCOL.md 3.3 says, cut to fit every common file system (255
    bytes, with room left for " (n)"), and on Windows (``windows``; by default
    when running there) without the characters Windows refuses in names.
    """
    if windows is None:
        windows = os.name == "nt"
    name = sanitize_filename(offered)
    if windows:
        name = sanitize_filename("".join("_" if c in WINDOWS_FORBIDDEN else c for c in name))
    return _fit(name, NAME_BUDGET)


def incoming_destination(
    folder: str | os.PathLike[str], offered: str, *, windows: bool | None = None
) -> Path:
    """A free path in ``folder`` for an offered file name: ``name``, else ``name (1).ext``...

    For saving without a dialog (``--accept-files DIR``). Taken names include
    dangling symbolic links. The name is free when chosen; :class:`FileSink`
    still refuses, at the rename, a file that appears meanwhile.
    """
    folder = Path(folder)
    name = safe_name(offered, windows=windows)
    stem, extension = _split_extension(name)
    candidate = folder / name
    number = 1
    while os.path.lexists(candidate):
        if number > 9999:
            raise FileExistsError(
                errno.EEXIST, f"too many files named like {name} in {folder}; tidy it up"
            )
        candidate = folder / f"{stem} ({number}){extension}"
        number += 1
    if candidate.parent != folder:  # defence in depth: a name is never a path
        raise ValueError("a sanitized name left its folder")
    return candidate
