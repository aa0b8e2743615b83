"""``manage.py server_key``: the server key's path and fingerprint; ``--rotate`` for a new one."""

from __future__ import annotations

import datetime
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chatproto import crypto_utils


class Command(BaseCommand):
    help = (
        "Print the server key's path and fingerprint (generating the key on first use). "
        "Give the fingerprint to users so they can check what their client shows."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="Make a new key; the old one is kept beside it as server_key.pem.old-<time>. "
            "Every client will warn about the changed key until its user accepts the new one.",
        )

    def handle(self, *args, rotate: bool = False, **options) -> None:
        path = settings.CHAT_SERVER_KEY
        if rotate and path.exists():
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
            old = path.with_name(f"{path.name}.old-{stamp}")
            if old.exists():
                raise CommandError(f"{old} exists already; wait a second and run again")
            os.chmod(path, 0o600)
            os.replace(path, old)
            self.stdout.write(f"old key kept at {old}")
        try:
            key = crypto_utils.load_private_key(path)
        except crypto_utils.KeyFileError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"server key: {path}")
        self.stdout.write(f"fingerprint: {crypto_utils.fingerprint(key)}")
        if rotate:
            self.stdout.write(
                "Restart every server process to use the new key, and tell your users the new "
                "fingerprint: their clients will warn until they accept it."
            )
