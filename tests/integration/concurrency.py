"""Helpers for the tests of concurrency inside a worker (threads, gevent,
eventlet): many requests at once, each on a connection of its own, a local
upstream HTTP server, and what the apps need to find pg.py's PostgreSQL.

Everything is bounded in time and talks to loopback only.
"""

import http.client
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import APPS, T, wait_until

THREADS_APP = os.path.join(APPS, "threads")
DJANGO_PG = os.path.join(APPS, "django_pg")


class Answer:
    def __init__(self, status=None, body=b"", headers=(), error=None,
                 t0=0.0, t1=0.0):
        self.status = status
        self.body = body
        self.headers = dict((k.lower(), v) for k, v in headers)
        self.error = error
        self.t0 = t0
        self.t1 = t1

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Answer %s %r %s>" % (self.status, self.body[:80], self.error)


def get_many(n, paths, timeout=30):
    """GETs every path at once, each on a new connection to n.

    Returns (seconds from the first request sent to the last answer, the
    answers in the order of paths). A failed request is an Answer with
    `error` set, never an exception.
    """
    answers = [None] * len(paths)
    barrier = threading.Barrier(len(paths) + 1)

    def one(i, path):
        conn = http.client.HTTPConnection(n.host, n.port, timeout=T(timeout))
        try:
            conn.connect()
            barrier.wait(T(timeout))
            t0 = time.monotonic()
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            answers[i] = Answer(r.status, body, r.getheaders(), t0=t0,
                                t1=time.monotonic())
        except Exception as e:  # reported by the caller's assertions
            answers[i] = Answer(error=repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i, p), daemon=True)
               for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    barrier.wait(T(timeout))
    start = time.monotonic()
    for t in threads:
        t.join(T(timeout) + 5)
    return time.monotonic() - start, answers


def in_background(n, path, timeout=60):
    """Starts GET path in a thread; returns (thread, result dict)."""
    result = {}

    def run():
        try:
            r = n.get(path, timeout=timeout)
            result["status"], result["body"] = r.status, r.body
            result["connection"] = r.header("Connection")
        except Exception as e:  # the test decides whether that is expected
            result["error"] = repr(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def term_with_requests_in_flight(n, count):
    """count requests of 2 s in the app of n's one worker, then SIGTERM;
    returns (that worker's pid, the requests' results once answered)."""
    worker = n.worker_pids()[0]
    running = [in_background(n, "/sleep?s=2&id=%d" % i) for i in range(count)]
    wait_until(lambda: inflight(n)["now"] == count, 10,
               what="%d requests in the app" % count)
    n.signal(signal.SIGTERM)
    for t, _ in running:
        t.join(T(30))
    return worker, [result for _, result in running]


def inflight(n):
    return json.loads(n.get("/inflight", headers={"Connection": "close"},
                            timeout=10).body)


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self):
        seconds = float(self.path.partition("s=")[2] or "0")
        time.sleep(seconds)
        body = b"upstream ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Upstream:
    """A threaded HTTP server on 127.0.0.1: GET /?s=1 sleeps 1 s, answers
    "upstream ok". Stands for the API or database a green app waits on."""

    def __enter__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()
        return self

    def url(self, seconds):
        return "http://127.0.0.1:%d/?s=%g" % (self.port, seconds)

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(T(10))


def pg_dsn(pg):
    """libpq's connection string for pg.py's cluster."""
    return "host=%s port=%d user=%s password=%s dbname=%s" % (
        pg.host, pg.port, pg.user, pg.password, pg.database)


def pg_env(pg):
    """What tests/apps/threads and tests/apps/django_pg read."""
    return {"PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user,
            "PGPASSWORD": pg.password, "PGDATABASE": pg.database,
            "PG_DSN": pg_dsn(pg)}


def app_connections(pg, application_name):
    """Backends connected with this application_name right now."""
    import psycopg2
    conn = psycopg2.connect(pg_dsn(pg), connect_timeout=10)
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT pid FROM pg_stat_activity WHERE "
                    "application_name = %s", (application_name,))
        return sorted(row[0] for row in cur.fetchall())
    finally:
        conn.close()
