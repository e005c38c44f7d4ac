"""A release that boots, goes live, then segfaults SEGFAULT_AFTER s later.

Without ready_path a worker goes live as soon as it is imported, so a timer
armed at import fires about that long after going live.
"""
import os

from release_base import make_app, segfault_later

segfault_later(float(os.environ.get("SEGFAULT_AFTER", "1")))
application = make_app()
