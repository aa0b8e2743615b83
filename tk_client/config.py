"""Where the clients keep their files, and the few settings worth remembering.

Everything lives in one folder, ``$XDG_CONFIG_HOME/chat`` (``~/.config/chat`` when the
variable is unset), created with mode 0700 because it holds the pinned server keys:

- ``known_servers``: one ``address fingerprint`` per line (see :mod:`tk_client.known_servers`);
- ``settings.json``: the last server address and username, so the login window is
  filled in. Never a password: passwords stay in memory, for the session's reconnects.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from chatproto.crypto_utils import write_secret_file

APP_DIR_NAME = "chat"
SETTINGS_FILE = "settings.json"
DEFAULT_SERVER = "ws://127.0.0.1:8000"


def config_dir() -> Path:
    """The client's folder (not created here; see :func:`ensure_config_dir`)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / APP_DIR_NAME


def ensure_config_dir(path: Path | None = None) -> Path:
    """Create the folder with mode 0700 (and tighten it if it is looser); return it."""
    folder = path or config_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    return folder


def write_private_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``text``.

    Atomic so that two clients writing at once, or a crash mid-write, never leave a
    half-written file; 0600 from creation so the content is never readable by others.
    The writing itself is the project's one secret-file writer,
    :func:`chatproto.crypto_utils.write_secret_file`.
    """
    ensure_config_dir(path.parent)
    write_secret_file(path, text.encode("utf-8"), replace=True)


@dataclass
class Settings:
    """What the login window remembers between runs."""

    server: str = DEFAULT_SERVER
    username: str = ""


def load_settings(folder: Path | None = None) -> Settings:
    """The saved settings, or the defaults when the file is missing or unreadable."""
    path = (folder or config_dir()) / SETTINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Settings()
    if not isinstance(data, dict):
        return Settings()
    settings = Settings()
    for name in ("server", "username"):
        if isinstance(data.get(name), str):
            setattr(settings, name, data[name])
    return settings


def save_settings(settings: Settings, folder: Path | None = None) -> None:
    """Remember the server address and username (never the password)."""
    path = (folder or config_dir()) / SETTINGS_FILE
    write_private_text(path, json.dumps(asdict(settings), indent=2) + "\n")
