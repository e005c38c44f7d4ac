"""A release that segfaults at import while $MARKER_DIR/crash-loop exists."""
import os
import signal

from release_base import make_app, marker

if os.path.exists(marker("crash-loop")):
    os.kill(os.getpid(), signal.SIGSEGV)
application = make_app()
