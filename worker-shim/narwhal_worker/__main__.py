"""Entry point: ``<python> -m narwhal_worker``."""

import signal
import sys

# Until the serving loop installs its handlers: USR1 (reopen logs) has
# nothing to reopen yet, and HUP is the master's business. Neither may kill
# a booting worker.
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)

from narwhal_worker.boot import main  # noqa: E402

sys.exit(main())
