"""``manage.py migrate``, which also makes the data dir and keeps the generated secret key.

Importing the settings creates nothing (:mod:`chatsite.startup`), so the first command
run on a fresh data dir makes it: the data dir before the SQLite database is opened in
it, the secret key after (unless ``DJANGO_SECRET_KEY`` is set). ``make run`` and the
production steps in the README run ``migrate`` first, so every process started after
it reads the same key.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.commands import migrate

from chatsite import startup


class Command(migrate.Command):
    help = migrate.Command.help + " Also makes the data dir and keeps the secret key in it."

    def execute(self, *args: object, **options: object) -> str | None:
        # Before the system checks: a JSONField's check opens the database (SQLite in the
        # data dir) to ask whether it supports JSON.
        startup.make_data_dir(Path(settings.DATA_DIR))
        return super().execute(*args, **options)

    def handle(self, *args: object, **options: object) -> None:
        super().handle(*args, **options)
        startup.keep_generated_secret_key()
