"""An app whose import takes BOOT_SLEEP seconds (a heavy framework's boot).

With BOOT_THREAD set, it starts a thread first (as some libraries do on
import), which then lives as long as the worker.
"""

import os
import sys
import threading
import time

if os.environ.get("BOOT_THREAD"):
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

sys.stderr.write("importing, sleeping %s s\n" % os.environ.get("BOOT_SLEEP", "0"))
sys.stderr.flush()
time.sleep(float(os.environ.get("BOOT_SLEEP", "0")))


def application(environ, start_response):
    body = b"booted slowly\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
