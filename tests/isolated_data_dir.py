"""A pytest plugin, loaded with ``-p`` before pytest-django reads the settings.

Importing the settings creates nothing, but the test process does write into its
``CHAT_DATA_DIR``: the test database's migrations keep the generated secret key
there (``post_migrate``, :mod:`chatsite.startup`) and message storage makes its
storage key there. That must never be a developer's ``var/``, so the test process
gets a private temporary data dir, removed at exit. (Servers started by tests get
their own.)
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_data_dir = tempfile.mkdtemp(prefix="chat-tests-")
os.environ["CHAT_DATA_DIR"] = _data_dir
atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)
