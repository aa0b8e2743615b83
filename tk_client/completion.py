"""Tab completion of the input line, with no tkinter (like idlelib's ``autocomplete.py``).

``/jo<Tab>`` completes the command, ``/pm al<Tab>`` the username, ``/join d<Tab>``
the room. When several names fit, the first Tab inserts the first one and each
further Tab replaces it with the next, round and round, until the user types
something else -- the cycling of the original project's autocomplete. The
completer knows nothing of users or rooms: it asks a ``candidates(kind)``
callback (the controller) for the names of one kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

REPEAT = "..."  # an argument kind ending in this fills every further argument


@dataclass(frozen=True)
class Completion:
    """The line after one Tab: where the cursor goes, and the names it cycles through."""

    text: str
    cursor: int
    candidates: tuple[str, ...]
    index: int

    @property
    def choice(self) -> str:
        return self.candidates[self.index]


class Completer:
    """Completion state for one input line; call :meth:`reset` when the user types."""

    def __init__(
        self,
        commands: Iterable[str],
        argument_kinds: Mapping[str, Sequence[str]],
        candidates: Callable[[str], Iterable[str]],
    ) -> None:
        """``argument_kinds`` maps a command (without ``/``) to the kind of each argument."""
        self._commands = sorted(commands)
        self._argument_kinds = argument_kinds
        self._candidates = candidates
        self._last: Completion | None = None
        self._prefix = ""  # the text before the completed word
        self._rest = ""  # the text after the cursor when completion began

    def reset(self) -> None:
        self._last = None

    def complete(self, text: str, cursor: int) -> Completion | None:
        """The line after pressing Tab with the cursor at ``cursor``, or None if nothing fits."""
        last = self._last
        if last is not None and last.text == text and last.cursor == cursor:
            index = (last.index + 1) % len(last.candidates)
            return self._apply(last.candidates, index)
        head = text[:cursor]
        start = len(head) - len(head.split(" ")[-1])
        word = head[start:]
        kind = self._kind(head[:start].split(), word)
        if kind is None:
            self._last = None
            return None
        if kind == "command":
            names = [f"/{name}" for name in self._commands]
        else:
            names = sorted(set(self._candidates(kind)), key=lambda name: (name.lower(), name))
        fitting = tuple(name for name in names if name.lower().startswith(word.lower()))
        if not fitting:
            self._last = None
            return None
        self._prefix, self._rest = text[:start], text[cursor:]
        return self._apply(fitting, 0)

    def _kind(self, before: list[str], word: str) -> str | None:
        if not before:
            return "command" if word.startswith("/") else None
        command = before[0]
        if not command.startswith("/"):
            return None
        kinds = self._argument_kinds.get(command[1:].lower())
        if not kinds:
            return None
        position = len(before) - 1
        if position < len(kinds):
            kind = kinds[position]
        elif kinds[-1].endswith(REPEAT):
            kind = kinds[-1]
        else:
            return None
        return kind.removesuffix(REPEAT)

    def _apply(self, candidates: tuple[str, ...], index: int) -> Completion:
        choice = candidates[index]
        separator = "" if self._rest.startswith(" ") else " "
        text = self._prefix + choice + separator + self._rest
        cursor = len(self._prefix) + len(choice) + 1
        self._last = Completion(text, cursor, candidates, index)
        return self._last
