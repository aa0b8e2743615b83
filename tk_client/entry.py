"""What the desktop and terminal entry points share: their name in usage lines.

Each client starts two ways: ``python -m tk_client[.cli]`` from a checkout, and
the console scripts ``chat-desktop`` / ``chat-cli`` that ``pip install .[client]``
makes. ``--help`` and the error lines name the program as the user started it.
"""

from __future__ import annotations

import os
import sys

TERMINAL_CLIENT_HINT = "the terminal client (chat-cli, or python -m tk_client.cli)"


def program_name(module: str, argv0: str | None = None) -> str:
    """How the user started this client: ``chat-cli``, or ``python -m MODULE``.

    ``argv0`` defaults to ``sys.argv[0]``: a console script's path, or under ``-m``
    the module's file (``.../cli.py``, ``.../__main__.py``), which the user never typed.
    """
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    if not name or name.endswith((".py", ".pyc")) or name in ("-c", "-m"):
        return f"python -m {module}"
    return name
