"""A module that takes a second to import (see the ``slow-import`` model in broken_plugins.py)."""

import time

time.sleep(1.0)
FINISHED = True  # not reached if the import is cut short
