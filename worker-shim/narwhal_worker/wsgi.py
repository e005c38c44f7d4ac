"""The WSGI serving loop: signals, `booted`, then the C server runs.

Signal handlers only poke the C server (stop, quit, reopen the log); the
loop wakes up for them through signal.set_wakeup_fd's pipe, so TERM works
both while the worker sleeps in epoll_wait and while the app runs. With
threads > 1, the pool's threads are Python threads started here, each
running the C pool's loop (threading.enumerate and faulthandler see them).
"""

import os
import signal
import sys
import threading

from narwhal_worker import control
from narwhal_worker.config import engine_settings
from narwhal_worker._http import Server


def serve(config, app):
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    server = Server(
        app,
        **engine_settings(config),
        wakeup_fd=wake_r,
        graceful_timeout=config.graceful_timeout,
        script_name=config.script_name,
        errors=sys.stderr,
        threads=config.threads,
    )

    def on_term(signum, frame):
        server.stop()

    def on_quit(signum, frame):
        if config.hooks is not None:
            config.hooks.worker_int()
        server.quit()
        raise SystemExit(0)

    def on_usr1(signum, frame):
        server.reopen_logs()

    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_quit)
    signal.signal(signal.SIGQUIT, on_quit)
    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Like gunicorn: TERM and USR1 must not break the app's system calls.
    signal.siginterrupt(signal.SIGTERM, False)
    signal.siginterrupt(signal.SIGUSR1, False)

    # threads > 1: the pool's threads run requests while the loop (this
    # thread) accepts and parses without the GIL
    if config.threads > 1:
        for i in range(config.threads):
            threading.Thread(target=server.run_thread, daemon=True,
                             name="narwhal-thread-%d" % (i + 1)).start()
    if not control.send(config.control_fd, "booted") and \
            config.control_fd >= 0:
        return 0  # the master is already gone
    try:
        server.serve()
    finally:
        server.flush_logs()
        sys.stderr.flush()
    return 0
