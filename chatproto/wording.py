"""Words that both ends show a person: one wording of a wait, for the server and the clients.

Not protocol rules (the wire carries ``retry_after`` in whole seconds); kept here
because this is the package that the server and both clients share.
"""

from __future__ import annotations

import math


def in_words(seconds: int) -> str:
    """``seconds`` as a person reads a wait: "1 second", "45 seconds", "12 minutes"."""
    if seconds < 120:
        return "1 second" if seconds == 1 else f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def try_again(seconds: int) -> str:
    """The one wording of a wait that ends a refusal: "try again in 12 minutes."."""
    return f"try again in {in_words(seconds)}."
