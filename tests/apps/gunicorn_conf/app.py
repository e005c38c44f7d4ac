"""A WSGI app in prometheus_client's multiprocess mode, as gunicorn setups
run it: a live gauge per worker process, cleaned up by child_exit."""

import os

from prometheus_client import Counter, Gauge

REQUESTS = Counter("app_requests", "requests served")
IN_WORKER = Gauge("app_worker_up", "1 per live worker",
                  multiprocess_mode="livesum")
IN_WORKER.set(1)


def application(environ, start_response):
    REQUESTS.inc()
    path = environ.get("PATH_INFO", "")
    if path == "/env":
        body = os.environ.get(environ.get("QUERY_STRING", ""), "").encode()
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/scheme":
        body = environ["wsgi.url_scheme"].encode()
    else:
        body = b"hello from the gunicorn.conf.py app\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
