"""A release whose ready_path answers 503 for its first READY_DELAY s.

IMPORT_DELAY (default 0) makes its import take that long, so a status
poller can see its workers in `spawned`.
"""
import os
import time

time.sleep(float(os.environ.get("IMPORT_DELAY", "0")))

from release_base import IMPORTED_AT, make_app  # noqa: E402

DELAY = float(os.environ.get("READY_DELAY", "2"))

application = make_app(ready=lambda: time.monotonic() - IMPORTED_AT >= DELAY)
