"""A WSGI app whose requests wait: threads, gevent and eventlet workers.

The concurrency tests and the latency-bound benchmarks serve it. It works
unchanged in a sync worker, on a thread pool, and monkey-patched by gevent
or eventlet (time.sleep, sockets and locks then yield to the hub). Nothing
here knows about narwhal. Routes:

  /                 "Hello, world!\n"
  /pid              the worker's pid
  /sleep?s=0.5      time.sleep(s); JSON: pid, thread, wsgi.multithread, and
                    the requests running in this worker when it started,
                    and whether it ran on the main thread
  /io?s=0.005       time.sleep(s), answering "ok\n": the benchmarks' waits
  /inflight         JSON: requests running now, and the most at once so far
  /hang?id=         never answers: a stuck request ($MARKER_DIR/hang-<id>-
                    <pid> appears when it starts)
  /pg?s=0.05        SELECT pg_sleep(s) through psycopg2 on this thread's
                    (or greenlet's) own connection to $PG_DSN; JSON: the
                    server's backend pid
  /upstream?url=    GET url with requests; JSON: its status and body, and
                    whether the socket module is monkey-patched
  /patched          JSON: which green library patched socket and time, now
                    and when this module was imported
"""

import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

HELLO = b"Hello, world!\n"

_lock = threading.Lock()
_counts = {"now": 0, "most": 0, "served": 0}
_local = threading.local()


def _query(environ):
    return {k: v[0] for k, v in
            parse_qs(environ.get("QUERY_STRING", "")).items()}


def _marker(name):
    directory = os.environ.get("MARKER_DIR")
    return os.path.join(directory, name) if directory else None


def _answer(start_response, body, status="200 OK", ctype="text/plain"):
    if isinstance(body, str):
        body = body.encode()
    start_response(status, [("Content-Type", ctype),
                            ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response, obj):
    return _answer(start_response, json.dumps(obj, sort_keys=True),
                   ctype="application/json")


def patched():
    """{"socket": "gevent" | "eventlet" | None, "time": ...}"""
    out = {"socket": None, "time": None}
    if "gevent.monkey" in sys.modules:
        from gevent import monkey
        for name in out:
            if monkey.is_module_patched(name):
                out[name] = "gevent"
    if "eventlet.patcher" in sys.modules:
        from eventlet import patcher
        for name in out:
            if patcher.is_monkey_patched(name):
                out[name] = "eventlet"
    return out


# The worker must patch before it imports the app, as gunicorn does.
PATCHED_AT_IMPORT = patched()


def _green_wait(conn, timeout=None):
    """psycopg2's wait callback for a green worker, as psycogreen's."""
    import psycopg2
    import psycopg2.extensions as ext
    if patched()["socket"] == "gevent":
        from gevent.socket import wait_read, wait_write
    else:
        from eventlet.hubs import trampoline

        def wait_read(fd, timeout=None):
            trampoline(fd, read=True, timeout=timeout)

        def wait_write(fd, timeout=None):
            trampoline(fd, write=True, timeout=timeout)
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        if state == ext.POLL_READ:
            wait_read(conn.fileno(), timeout=timeout)
        elif state == ext.POLL_WRITE:
            wait_write(conn.fileno(), timeout=timeout)
        else:
            raise psycopg2.OperationalError("bad poll state %r" % state)


def _pg_connection():
    conn = getattr(_local, "pg", None)
    if conn is None or conn.closed:
        import psycopg2
        import psycopg2.extensions
        if patched()["socket"]:
            psycopg2.extensions.set_wait_callback(_green_wait)
        conn = psycopg2.connect(os.environ["PG_DSN"])
        conn.autocommit = True
        _local.pg = conn
    return conn


def _enter():
    with _lock:
        _counts["now"] += 1
        _counts["most"] = max(_counts["most"], _counts["now"])
        return _counts["now"]


def _leave():
    with _lock:
        _counts["now"] -= 1
        _counts["served"] += 1


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/":
        return _answer(start_response, HELLO)
    if path == "/pid":
        return _answer(start_response, str(os.getpid()))
    if path == "/inflight":
        with _lock:
            return _json(start_response, dict(_counts))
    if path == "/patched":
        return _json(start_response, {"now": patched(),
                                      "at_import": PATCHED_AT_IMPORT})
    q = _query(environ)
    running = _enter()
    try:
        if path == "/io":
            time.sleep(float(q.get("s", "0.005")))
            return _answer(start_response, "ok\n")
        if path == "/sleep":
            started = time.monotonic()
            time.sleep(float(q.get("s", "0.5")))
            return _json(start_response, {
                "pid": os.getpid(), "thread": threading.get_ident(),
                "running": running, "id": q.get("id"),
                "main": threading.current_thread() is threading.main_thread(),
                "multithread": environ.get("wsgi.multithread"),
                "slept": time.monotonic() - started})
        if path == "/hang":
            marker = _marker("hang-%s-%d" % (q.get("id", ""), os.getpid()))
            if marker:
                open(marker, "w").close()
            while True:
                time.sleep(3600)
        if path == "/pg":
            cur = _pg_connection().cursor()
            cur.execute("SELECT pg_backend_pid(), pg_sleep(%s)",
                        (float(q.get("s", "0.05")),))
            backend = cur.fetchone()[0]
            cur.close()
            return _json(start_response, {"backend": backend,
                                          "thread": threading.get_ident()})
        if path == "/upstream":
            import requests
            r = requests.get(q["url"], timeout=30)
            return _json(start_response, {
                "status": r.status_code, "body": r.text,
                "patched": patched()["socket"], "pid": os.getpid()})
        return _answer(start_response, "not found\n", "404 Not Found")
    finally:
        _leave()
