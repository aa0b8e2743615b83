"""``manage.py chatuser``: create, activate, deactivate and list chat accounts from a shell.

The same services as the admin: deactivating ends the user's live sessions
(immediately with REDIS_URL set; without it, a server process notices within
one heartbeat, since the in-memory channel layer cannot reach it from here).
"""

from __future__ import annotations

import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from accounts import services, signals
from accounts.models import User


class Command(BaseCommand):
    help = "Manage chat accounts: create, activate, deactivate, list."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create an account (asks for the password)")
        create.add_argument("username")
        create.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )
        create.add_argument(
            "--no-password-validation",
            action="store_true",
            help="accept a password that Django's password validators reject",
        )
        create.add_argument("--staff", action="store_true", help="may log in to /admin/")
        for name, text in (
            ("activate", "let the account log in again"),
            ("deactivate", "refuse the account's logins and end its sessions"),
            (
                "end-sessions",
                "end the account's live sessions (it may log in again; needs REDIS_URL "
                "to reach a running server)",
            ),
        ):
            sub.add_parser(name, help=text).add_argument("username")
        sub.add_parser("list", help="list accounts")

    def handle(self, *args, action: str, **options) -> None:
        if action == "create":
            self._create(options)
        elif action in ("activate", "deactivate", "end-sessions"):
            user = User.objects.filter(username=options["username"]).first()
            if user is None:
                raise CommandError(f"there is no user {options['username']!r}")
            if action == "end-sessions":
                signals.request_end_of_sessions(user.pk)
                self.stdout.write(f"{user.username}: sessions ended")
                return
            services.set_active(user, action == "activate")
            self.stdout.write(f"{user.username}: {'active' if user.is_active else 'inactive'}")
        else:
            for user in User.objects.order_by("username"):
                state = "active" if user.is_active else "inactive"
                staff = " staff" if user.is_staff else ""
                self.stdout.write(f"{user.username}\t{state}{staff}")

    def _create(self, options) -> None:
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("the passwords differ; nothing was created")
        try:
            user = services.create_user(
                options["username"],
                password,
                validate=not options["no_password_validation"],
                is_staff=options["staff"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"created {user.username}")
