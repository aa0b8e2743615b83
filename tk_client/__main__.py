"""``python -m tk_client``: the desktop client (``make client``)."""

import sys

from .gui import main

sys.exit(main())
