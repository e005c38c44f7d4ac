"""An app whose import takes BOOT_SLEEP seconds (a heavy framework's boot)."""

import os
import sys
import time

sys.stderr.write("importing, sleeping %s s\n" % os.environ.get("BOOT_SLEEP", "0"))
sys.stderr.flush()
time.sleep(float(os.environ.get("BOOT_SLEEP", "0")))


def application(environ, start_response):
    body = b"booted slowly\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
