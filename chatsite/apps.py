"""The project itself as an app, for its own management commands.

``chatsite`` sits above the apps (they never import it). It is installed only for its
commands: its ``migrate`` (``chatsite/management/commands/migrate.py``) replaces Django's
(the same migrations, plus the data dir and the generated secret key,
:mod:`chatsite.startup`), and its ``runserver`` daphne's (daphne's server with the
product's keepalive, :mod:`chatsite.keepalive`), hence first in ``INSTALLED_APPS``.
"""

from django.apps import AppConfig


class SiteConfig(AppConfig):
    name = "chatsite"
    verbose_name = "Chat site"
