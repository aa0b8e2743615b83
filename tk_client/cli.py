"""The terminal client: the same session and commands as the desktop, one line per message.

::

    python -m tk_client.cli --server ws://127.0.0.1:8000 --user alice
    printf 'hello\\n/pm bob see you\\n' | CHAT_PASSWORD=... python -m tk_client.cli \\
        --server ws://127.0.0.1:8000 --user alice --trust SHA256:...

Each input line is sent (plain text to the current conversation, ``/commands`` as
in the desktop client, ``/help`` lists them). What arrives is printed on stdout,
one line per message (continuation lines of a multi-line message are indented by
two spaces)::

    [lobby] alice: hi                 a room message (your own too, once stored)
    [pm] alice: hi                    a private message to you
    [pm -> bob] alice: see you        a private message you sent

Answers to commands (``/users``, ``/rooms``, ``/help``, ``/history``) also go to
stdout; connection news (``* reconnecting...``) and errors go to stderr, so a
script can keep stdout as a clean transcript. Room messages sent while this
client was disconnected are not printed after the reconnect; ``/history`` shows
them (private messages are kept by the server and arrive).

The password comes from ``CHAT_PASSWORD`` or a prompt on the terminal, never from
an argument (it would show in ``ps``). ``--remember NAME`` keeps this device
signed in (PROTOCOL.md 3.4): the server's device token is stored in the client's
folder (mode 0600) and later runs for the same server and user log in with it,
without the password; ``/logout`` forgets it, ``/devices`` and ``/revoke`` manage
the devices. An account with two-factor login needs ``--otp CODE`` (or answers
the prompt on a terminal) unless the device is remembered; ``/2fa on`` turns it
on, ``/password`` changes the password. The server's key is pinned exactly as in
the desktop client: on first use a terminal asks, a script passes ``--trust
FINGERPRINT``, and a changed key is refused (``--forget-server ADDRESS`` forgets
the old one after the administrator confirmed the change).

End-to-end encryption (private messages and private rooms) needs a remembered
device. ``/verify USER`` prints the safety number to compare with USER and asks
USER's device to compare emoji (``/confirm`` if they match, ``/cancel`` if not;
``/accept`` answers someone else's request; ``/verified USER`` after comparing
the number another way); ``/approve DEVICE`` approves a new device of yours;
``/devices [USER]`` shows the devices' keys; ``/acknowledge USER`` accepts a
changed identity; ``/reset-identity`` makes a new one. A message this device
cannot read is printed as ``[pm] alice: (cannot decrypt) <why>``, and again with
``(now readable)`` once its key comes.

Files: ``/file USER PATH`` offers a file; its progress shows on stderr (one
updating line on a terminal, a line every 10% otherwise). An incoming offer is
asked about on the terminal (accept? then where to save it); a script passes
``--accept-files DIR`` to accept every offer into DIR (end-to-end ones only on a
remembered device), and without either the offer is declined. A received file
appears only once complete and verified (size and SHA-256); at EOF the client
waits for its transfers to end.

Exit codes: 0 after EOF, ``/quit``, ``/logout`` or Ctrl+C with everything sent;
1 connection failed or lost for good (also when the session was ended: this
device signed out, the password changed elsewhere), messages left unsent, or a
file offered was not delivered; 2 usage; 3 server key not trusted (refused, or
changed); 4 login refused (also a remembered device no longer accepted, without
a password to fall back on).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TextIO

from chatproto.limits import MAX_DEVICE_NAME_LENGTH

from .address import AddressError, ServerAddress, parse_address
from .device_tokens import DeviceTokens
from .entry import program_name
from .known_servers import KnownServers
from .terminal_client import EXIT_OK, EXIT_USAGE, NOTHING_TO_LOG_IN_WITH, TerminalClient


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("tk_client.cli"),
        description="Encrypted chat in a terminal. Lines you type are sent; /help lists commands.",
        epilog="The password is read from CHAT_PASSWORD, or asked for on the terminal.",
    )
    parser.add_argument(
        "--server", help="the server, e.g. ws://127.0.0.1:8000 or wss://chat.example.org"
    )
    parser.add_argument("--user", help="your username")
    parser.add_argument("--register", action="store_true", help="create the account first")
    parser.add_argument(
        "--trust",
        metavar="FINGERPRINT",
        help="on first use, trust the server only if its key has this fingerprint (for scripts)",
    )
    parser.add_argument("--otp", metavar="CODE", help="one-time code, where the account needs one")
    parser.add_argument(
        "--remember",
        metavar="NAME",
        help="keep this device signed in under NAME (e.g. the computer's name): later runs "
        "need no password until /logout or the device is revoked",
    )
    parser.add_argument(
        "--accept-files",
        metavar="DIR",
        help="accept every file offered to you, saving it in DIR (for scripts; with --remember, "
        "only end-to-end encrypted ones: others are asked about, or declined without a "
        "terminal)",
    )
    parser.add_argument(
        "--forget-server",
        metavar="ADDRESS",
        help="forget the pinned key of ADDRESS (after its administrator confirmed a new key)",
    )
    return parser


def _tty_available() -> bool:
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False


def _read_password(
    args: argparse.Namespace, address: ServerAddress, *, register: bool = False
) -> str | None:
    password = os.environ.get("CHAT_PASSWORD")
    if password:
        return password
    if not _tty_available():
        return None
    password = getpass.getpass(f"Password for {args.user} on {address.key}: ")
    if register and getpass.getpass("Repeat the password: ") != password:
        print("error: the passwords differ.", file=sys.stderr)
        return None
    return password


def _remembered(known: KnownServers, address: ServerAddress, username: str) -> bool:
    """True if this computer keeps a device token for ``username`` on the pinned server."""
    fingerprint = known.get(address)
    if fingerprint is None:
        return False
    return DeviceTokens(known.path.parent).get(fingerprint, username) is not None


def forget_server(text: str, known: KnownServers, out: TextIO) -> int:
    try:
        address = parse_address(text)
    except AddressError as exc:
        print(f"error: {exc}", file=out)
        return EXIT_USAGE
    removed = known.forget(address)
    if removed is None:
        print(f"No key was pinned for {address.key}.", file=out)
    else:
        print(
            f"Forgot the key {removed} of {address.key}. The next connection will show the "
            "server's fingerprint: accept it only if it matches what your administrator gave you.",
            file=out,
        )
    return EXIT_OK


def main(
    argv: list[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    known_servers: KnownServers | None = None,
) -> int:
    """Run the terminal client and return its exit code (the module's docstring lists them).

    Ctrl+C ends it quietly with EXIT_OK wherever it comes (the password prompt, the
    login, the chat, the clean-up): the console script ``chat-cli`` calls this
    function directly, so it is handled here rather than around the call.
    """
    try:
        return _main(argv, stdin, stdout, stderr, known_servers)
    except KeyboardInterrupt:
        return EXIT_OK


def _main(
    argv: list[str] | None,
    stdin: TextIO | None,
    stdout: TextIO | None,
    stderr: TextIO | None,
    known_servers: KnownServers | None,
) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    known = known_servers or KnownServers()
    if args.forget_server:
        return forget_server(args.forget_server, known, stdout)
    if not args.server or not args.user:
        parser.print_usage(stderr)
        print("error: --server and --user are required", file=stderr)
        return EXIT_USAGE
    try:
        address = parse_address(args.server)
    except AddressError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_USAGE
    if args.accept_files and not os.path.isdir(args.accept_files):
        print(f"error: --accept-files {args.accept_files}: no such folder", file=stderr)
        return EXIT_USAGE
    if args.remember is not None and not 0 < len(args.remember) <= MAX_DEVICE_NAME_LENGTH:
        limit = MAX_DEVICE_NAME_LENGTH
        print(f"error: --remember takes a name of 1 to {limit} characters.", file=stderr)
        return EXIT_USAGE
    password: str | None = None
    if args.register or not _remembered(known, address, args.user):
        password = _read_password(args, address, register=args.register)
        if not password:
            print(f"error: {NOTHING_TO_LOG_IN_WITH}", file=stderr)
            return EXIT_USAGE
    client = TerminalClient(
        args,
        address,
        password,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        known_servers=known,
        read_password=lambda: _read_password(args, address),
    )
    return client.run()


if __name__ == "__main__":
    sys.exit(main())
