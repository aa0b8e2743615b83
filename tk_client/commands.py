"""The typed commands of both clients: their table, their help, and how a line reads.

Pure functions and data, no session and no state: the desktop window and the
terminal client hand every input line to the same controller
(:class:`tk_client.controller.ChatController`), which asks this module what the
line is before it decides what it means for the conversations. Keeping the table
here gives ``/help``, the usage lines of errors and Tab completion one source.

The commands (``/help`` prints them from :data:`COMMANDS`)::

    TEXT                    send to the current conversation (``//text`` sends "/text")
    /pm USER [TEXT]         private message; without TEXT, switch to the chat with USER
    /file USER [PATH]       offer USER a file
    /join ROOM              join a public room, or switch to a room you are in
    /leave [ROOM]           leave ROOM (default: the current room)
    /create ROOM [USER...]  a public room; with users, a private room with them as members
    /create ROOM --private  a private room with only you (add people with /invite)
    /invite ROOM USER       add USER to your private room ROOM
    /users, /rooms          who is here, which rooms there are
    /history                older messages of the current conversation
    /password               change your password (asked without echo)
    /2fa on|off             turn two-factor login on (QR code, backup codes) or off
    /devices [USER]         your devices (or USER's) with their encryption keys
    /revoke DEVICE          sign a device out (by id or name)
    /logout                 log out and forget this device's sign-in
    /verify USER            safety number with USER, and an emoji comparison
    /verified USER          mark USER verified (safety number compared)
    /accept, /confirm, /cancel [USER]   the latest verification (or USER's)
    /approve DEVICE         approve a new device of yours
    /acknowledge USER       accept USER's changed identity
    /reset-identity [yes]   a new encryption identity on this device
    /backup [setup|reset]   the key backup: its state, turn it on, or a new recovery key
    /recover KEY            read your history on a new device with your recovery key
    /help [COMMAND], /quit
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .completion import REPEAT

PRIVATE_FLAG = "--private"  # /create ROOM --private: a private room with only you


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    arguments: tuple[str, ...] = ()  # completion kinds, see ChatController.candidates


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command(
            "pm",
            "/pm USER [TEXT]",
            "send USER a private message; without TEXT, switch to the chat with USER",
            ("user",),
        ),
        Command("file", "/file USER [PATH]", "offer USER a file", ("user",)),
        Command(
            "join", "/join ROOM", "join a public room, or switch to a room you are in", ("room",)
        ),
        Command(
            "leave", "/leave [ROOM]", "leave ROOM (the current room if none)", ("joined_room",)
        ),
        Command(
            "create",
            "/create ROOM [USER...]",
            "create a public room; with users (or --private), a private room with them",
            ("new_room", "user" + REPEAT),
        ),
        Command(
            "invite",
            "/invite ROOM USER",
            "add USER to your private room ROOM",
            ("private_room", "user"),
        ),
        Command("users", "/users", "list the users, online ones first"),
        Command("rooms", "/rooms", "list the rooms you can see"),
        Command("history", "/history", "load older messages of this conversation"),
        Command("password", "/password", "change your password (other devices are signed out)"),
        Command(
            "2fa",
            "/2fa on|off",
            "turn two-factor login on (with an authenticator app) or off",
            ("on_off",),
        ),
        Command(
            "devices",
            "/devices [USER]",
            "list the devices that keep you signed in, with their encryption keys; "
            "with USER, that user's devices and keys",
            ("user",),
        ),
        Command("revoke", "/revoke DEVICE", "sign a device out, by id or name", ("device",)),
        Command("logout", "/logout", "log out, and forget this device's sign-in"),
        Command(
            "verify",
            "/verify USER",
            "show the safety number to compare with USER, and start comparing emoji",
            ("user",),
        ),
        Command(
            "verified",
            "/verified USER",
            "mark USER verified, after comparing the safety number some other way",
            ("user",),
        ),
        Command(
            "accept",
            "/accept [USER]",
            "accept the latest verification someone asked for (or USER's)",
            ("user",),
        ),
        Command(
            "confirm",
            "/confirm [USER]",
            "the emoji match: finish the latest verification (or the one with USER)",
            ("user",),
        ),
        Command(
            "cancel",
            "/cancel [USER]",
            "the emoji differ, or you give up: stop the latest verification (or USER's)",
            ("user",),
        ),
        Command(
            "approve",
            "/approve DEVICE",
            "approve a new device of yours (by id or name), comparing codes",
            ("device",),
        ),
        Command(
            "acknowledge",
            "/acknowledge USER",
            "accept USER's changed identity (sending to them resumes)",
            ("user",),
        ),
        Command(
            "reset-identity",
            "/reset-identity [yes]",
            "make a new encryption identity on this device (other devices need approval)",
        ),
        Command(
            "backup",
            "/backup [setup|reset]",
            "the key backup of your encrypted conversations: its state; setup turns it on "
            "and shows a recovery key once; reset makes a new recovery key (asks your password)",
            ("backup_step",),
        ),
        Command(
            "recover",
            "/recover KEY",
            "type your recovery key (with or without its spaces) to read your encrypted "
            "history on a device that has no other of yours to approve it",
        ),
        Command("help", "/help [COMMAND]", "show the commands, or one command", ("command",)),
        Command("quit", "/quit", "quit"),
    )
}
ALIASES = {
    "msg": "pm",
    "query": "pm",
    "part": "leave",
    "exit": "quit",
    "who": "users",
    "passwd": "password",
}


def canonical(name: str) -> str:
    """The command's own name for ``name`` (any case, or an alias); unknown names unchanged."""
    name = name.lower()
    return ALIASES.get(name, name)


def argument_kinds() -> dict[str, Sequence[str]]:
    """For :class:`~tk_client.completion.Completer`: every name and alias, its argument kinds."""
    kinds: dict[str, Sequence[str]] = {name: c.arguments for name, c in COMMANDS.items()}
    return kinds | {alias: COMMANDS[name].arguments for alias, name in ALIASES.items()}


def help_text(name: str | None = None) -> str:
    """The command table (or one command's usage), as shown by /help and in usage errors.

    ``name`` must be a key of :data:`COMMANDS` (use :func:`canonical` first).
    """
    if name is not None:
        command = COMMANDS[name]
        return f"Usage: {command.usage} -- {command.help}"
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = ["Commands:"]
    lines += [f"  {c.usage.ljust(width)}  {c.help}" for c in COMMANDS.values()]
    lines.append("Anything else is sent to the current conversation; start it with // to send /.")
    lines.append("Tab completes commands, usernames and room names.")
    return "\n".join(lines)


# --- reading one input line --------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """Text for the current conversation (a leading ``//`` already turned into ``/``)."""

    text: str


@dataclass(frozen=True)
class Invocation:
    """A known command: its own name (aliases resolved) and the rest of the line, stripped."""

    name: str
    args: str


@dataclass(frozen=True)
class UnknownCommand:
    """``/word`` where no command or alias is called ``word`` (as typed, for the error)."""

    word: str


def parse_line(line: str) -> Text | Invocation | UnknownCommand | None:
    """What an input line is; None for a blank line (nothing to do).

    The line ending is dropped but other white space is kept: a message is sent
    exactly as typed.
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if text.startswith("//"):
        return Text(text[1:])
    if not text.startswith("/"):
        return Text(text)
    word, _, rest = text[1:].partition(" ")
    name = canonical(word)
    if name not in COMMANDS:
        return UnknownCommand(text[1:].split(" ")[0])
    return Invocation(name, rest.strip())


SECRET_COMMANDS = frozenset({"recover"})  # their arguments are secrets: the recovery key


def carries_secret(line: str) -> bool:
    """Whether ``line`` is a command whose arguments are a secret (``/recover KEY``): an
    input history must not keep it, so Up never shows the recovery key again."""
    typed = parse_line(line)
    return isinstance(typed, Invocation) and typed.name in SECRET_COMMANDS


def room_argument(word: str) -> str:
    """A room as typed (``#dev`` or ``dev``) without its optional ``#``."""
    return word.removeprefix("#")


def unquote_path(path: str) -> str:
    """A path as typed: stripped, and without the quotes a terminal adds to a dropped file."""
    path = path.strip()
    if len(path) > 1 and path[0] == path[-1] and path[0] in "'\"":
        return path[1:-1]
    return path


@dataclass(frozen=True)
class CreateArguments:
    """``/create ROOM [USER...] [--private]``: the room, its members in order, once each."""

    room: str
    members: tuple[str, ...]
    private: bool


def parse_create(args: str) -> CreateArguments | None:
    """The arguments of /create; None without a room name (then the usage is shown).

    ``private`` is only the flag as typed: naming members makes the room private too,
    which the controller decides once it has left the creator out of them.
    """
    words = args.split()
    private = PRIVATE_FLAG in words
    words = [word for word in words if word != PRIVATE_FLAG]
    if not words:
        return None
    return CreateArguments(room_argument(words[0]), tuple(dict.fromkeys(words[1:])), private)
