"""A pytest plugin, loaded with ``-p`` before pytest-django reads the settings.

The settings create key files in ``CHAT_DATA_DIR`` on import; the test process
must never write into a developer's ``var/``, so it gets a private temporary
data dir, removed at exit. (Servers started by tests get their own.)
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_data_dir = tempfile.mkdtemp(prefix="chat-tests-")
os.environ["CHAT_DATA_DIR"] = _data_dir
atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)
