"""The WSGI app every release tree is built from.

A tree holds this file, a variant's app.py and a VERSION file. Routes:

  /                 the version ("v1\n"), with X-Pid and X-Generation headers
  /pid              the worker's pid
  /slow?s=3         sleeps s seconds, then answers the version
                    ($MARKER_DIR/slow-<pid> appears when the sleep starts)
  /sleep            time.sleep(1000): a hung worker
  /crash            the worker kills itself with SIGSEGV
  /health/ready     200 once ready (the variant decides when), 503 before
  /stats            JSON: pid, version, public requests seen before ready

Requests whose User-Agent is narwhal-probe are the master's health checks;
every other request is public. A public request that arrives while the app is
not ready yet is counted in $MARKER_DIR/public-before-ready-<pid>. A worker
that segfaults on a timer writes the time (time.monotonic()) into
$MARKER_DIR/segfault-<pid> just before.
"""

import json
import os
import signal
import sys
import threading
import time
from urllib.parse import parse_qs

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "VERSION")) as f:
    VERSION = f.read().strip()

IMPORTED_AT = time.monotonic()


def marker(name):
    directory = os.environ.get("MARKER_DIR")
    return os.path.join(directory, name) if directory else None


def write_marker(name, text):
    path = marker(name)
    if path is None:
        return
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def segfault_later(seconds):
    """SIGSEGV from a timer thread: a crash the worker cannot catch."""
    def die():
        # CLOCK_MONOTONIC is one clock for every process: the test compares
        # it with its own requests' times.
        write_marker("segfault-%d" % os.getpid(), repr(time.monotonic()))
        sys.stderr.write("release %s pid %d: segfaulting now\n"
                         % (VERSION, os.getpid()))
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    t = threading.Timer(seconds, die)
    t.daemon = True
    t.start()


def make_app(ready=None):
    """ready: a function telling whether /health/ready answers 200."""
    ready = ready or (lambda: True)
    lock = threading.Lock()
    counts = {"public": 0, "public_before_ready": 0}

    def answer(start_response, status, body, ctype="text/plain"):
        body = body.encode() if isinstance(body, str) else body
        start_response(status, [
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("X-Pid", str(os.getpid())),
            ("X-Generation", os.environ.get("NARWHAL_GENERATION", "")),
            ("X-Version", VERSION),
        ])
        return [body]

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        query = {k: v[0] for k, v in
                 parse_qs(environ.get("QUERY_STRING", "")).items()}
        probe = environ.get("HTTP_USER_AGENT", "") == "narwhal-probe"
        if path == "/health/ready":
            if ready():
                return answer(start_response, "200 OK", "ready\n")
            return answer(start_response, "503 Service Unavailable",
                          "not ready\n")
        if not probe:
            with lock:
                counts["public"] += 1
                if not ready():
                    counts["public_before_ready"] += 1
                    write_marker("public-before-ready-%d" % os.getpid(),
                                 str(counts["public_before_ready"]))
        if path == "/pid":
            return answer(start_response, "200 OK", str(os.getpid()))
        if path == "/slow":
            write_marker("slow-%d" % os.getpid(), "1")
            time.sleep(float(query.get("s", "3")))
            return answer(start_response, "200 OK", VERSION + "\n")
        if path == "/sleep":
            write_marker("sleeping-%d" % os.getpid(), "1")
            time.sleep(1000)
            return answer(start_response, "200 OK", "woke up\n")
        if path == "/crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if path == "/stats":
            with lock:
                body = json.dumps({"pid": os.getpid(), "version": VERSION,
                                   "ready": bool(ready()), **counts})
            return answer(start_response, "200 OK", body, "application/json")
        return answer(start_response, "200 OK", VERSION + "\n")

    return application
