"""Threads in a WSGI worker (issue 14): `threads = N` runs up to N requests
of one worker at once, each on a Python thread of its own, while the C loop
keeps accepting and parsing.

Concurrency is shown by what cannot happen one at a time (N requests that
each sleep S seconds all answered in well under N x S), with bounds generous
enough for a loaded machine; the bound on requests at once is shown by the
app's own count, not by timing.
"""

import hashlib
import json
import os
import signal
import threading
import time

from conftest import T, pid_alive, wait_until
from concurrency import (DJANGO_PG, THREADS_APP, app_connections, get_many,
                         in_background, inflight, pg_env,
                         term_with_requests_in_flight)
from deploy import status
from pg import pg  # noqa: F401 (the fixture)
from test_logs import lines_with

SLEEP = 1.0


def threads_master(narwhal, threads, **settings):
    s = {"workers": 1, "threads": threads}
    s.update(settings)
    return narwhal(chdir=THREADS_APP, settings=s)


def until_in_place(n):
    """Quick requests until the loop's own thread answers one: the first
    ones go to the pool until their moving average shows them quick, which
    takes longer on a loaded machine."""
    def in_place():
        b = json.loads(n.get("/sleep?s=0").body)
        return b if b["main"] else None
    return wait_until(in_place, 20, interval=0, what="a request in place")


def test_n_slow_requests_take_about_one_request_time(narwhal):
    n = threads_master(narwhal, 8)
    elapsed, answers = get_many(n, ["/sleep?s=%g&id=%d" % (SLEEP, i)
                                    for i in range(8)])
    assert [a.status for a in answers] == [200] * 8, answers
    body = [a.json() for a in answers]
    # one at a time would take 8 s
    assert elapsed < T(3 * SLEEP), elapsed
    assert len({b["thread"] for b in body}) == 8, body
    assert all(b["multithread"] is True for b in body), body
    assert not any(b["main"] for b in body), body
    assert len({b["pid"] for b in body}) == 1


def test_threads_bound_the_requests_at_once(narwhal):
    n = threads_master(narwhal, 3, timeout=4)
    _, answers = get_many(n, ["/sleep?s=0.5"] * 9)
    assert [a.status for a in answers] == [200] * 9, answers
    counts = inflight(n)
    assert counts["most"] == 3, counts
    assert counts["now"] == 0 and counts["served"] == 9, counts
    # the heartbeat counts every request, whichever thread served it
    wait_until(lambda: sum(w["requests"] for w in status(n)["workers"]) >= 10,
               10, interval=0.2, what="the requests in status")


def test_threads_1_runs_requests_in_place(narwhal):
    n = threads_master(narwhal, 1)
    b = json.loads(n.get("/sleep?s=0").body)
    assert b["main"] is True and b["multithread"] is False, b
    _, answers = get_many(n, ["/sleep?s=0.2"] * 4)
    assert [a.status for a in answers] == [200] * 4, answers
    assert inflight(n)["most"] == 1


def test_quick_requests_run_in_place_and_a_slow_one_frees_the_loop(narwhal):
    """While the pool is idle and requests are quick, the loop's thread
    answers them itself (no hand-off); one that turns out slow there has
    the loop taken over by a pool thread, so the others are not held up."""
    n = threads_master(narwhal, 2)
    b = until_in_place(n)
    assert b["multithread"] is True, b
    t, slow = in_background(n, "/sleep?s=%g&id=slow" % (3 * SLEEP))
    wait_until(lambda: inflight(n)["now"] == 1, 10,
               what="the slow request running")
    started = time.monotonic()
    quick = [json.loads(n.get("/sleep?s=0").body) for _ in range(10)]
    assert time.monotonic() - started < T(SLEEP), quick
    assert not any(b["main"] for b in quick), quick
    t.join(T(30))
    assert slow.get("status") == 200, slow
    assert json.loads(slow["body"])["main"] is True, slow
    # the loop is the main thread's again, and the pool still bounds
    _, answers = get_many(n, ["/sleep?s=0.5"] * 6)
    assert [a.status for a in answers] == [200] * 6, answers
    assert inflight(n)["most"] == 2


def test_usr1_while_a_pool_thread_runs_the_loop(narwhal):
    """USR1's handler runs on the main thread, here in the middle of a slow
    request in place while a pool thread runs the loop and writes the
    access log: that thread reopens the log, and no line is lost."""
    pre = narwhal(start=False)
    log = os.path.join(pre.dir, "access.log")
    n = threads_master(narwhal, 2, accesslog=log)
    until_in_place(n)
    t, slow = in_background(n, "/sleep?s=%g&id=slow" % (4 * SLEEP))
    wait_until(lambda: inflight(n)["now"] == 1, 10,
               what="the slow request running")
    for i in range(5):
        assert n.get("/sleep?s=0&before=%d" % i).status == 200
    wait_until(lambda: len(lines_with(log, "before=")) == 5, 10,
               what="5 lines before the rotation")
    os.rename(log, log + ".1")
    n.signal(signal.SIGUSR1)
    after = 0

    def reopened():
        nonlocal after
        assert n.get("/sleep?s=0&after=%d" % after).status == 200
        after += 1
        return lines_with(log, "after=")

    wait_until(reopened, 10, interval=0.05, what="a line in the new log")
    # the slow request is still running in place: the reopen was the
    # rescuer's, between two of its turns
    assert inflight(n)["now"] == 1
    t.join(T(30))
    assert slow.get("status") == 200, slow
    assert json.loads(slow["body"])["main"] is True, slow
    wait_until(lambda: lines_with(log, "id=slow"), 10,
               what="the slow one's line")
    assert len(lines_with(log + ".1", "before=")) == 5
    assert len(lines_with(log + ".1", "after=")) + \
        len(lines_with(log, "after=")) == after
    assert lines_with(log + ".1", "id=slow") == []
    assert n.proc.poll() is None


def test_response_header_atoms_from_pool_threads(narwhal):
    """%({header}o)s logs the answer's header whichever thread sent it."""
    pre = narwhal(start=False)
    log = os.path.join(pre.dir, "access.log")
    n = threads_master(narwhal, 4, accesslog=log,
                       access_log_format='"%(r)s" %(s)s %({Content-Type}o)s')
    _, answers = get_many(n, ["/sleep?s=0.3&i=%d" % i for i in range(8)])
    assert [a.status for a in answers] == [200] * 8, answers
    assert len({a.json()["thread"] for a in answers}) > 1, answers

    def lines():
        return lines_with(log, "/sleep?s=0.3")

    got = wait_until(lambda: len(lines()) == 8 and lines(), 10,
                     what="8 access log lines")
    assert all(l.endswith(" 200 application/json") for l in got), got


def test_gthread_class_with_threads(narwhal):
    n = narwhal(chdir=THREADS_APP, args=["-k", "gthread", "--threads", "4"],
                settings={"workers": 1})
    elapsed, answers = get_many(n, ["/sleep?s=%g" % SLEEP] * 4)
    assert [a.status for a in answers] == [200] * 4, answers
    assert elapsed < T(3 * SLEEP), elapsed
    assert inflight(n)["most"] == 4


def test_wsgi_guarantees_hold_on_every_thread(narwhal):
    """wsgi.input, write(), close() and file_wrapper, all at once."""
    n = narwhal(settings={"workers": 1, "threads": 6})
    bodies = [os.urandom(300000 + i) for i in range(4)]
    results = {}

    def post(i):
        r = n.request("POST", "/echo", body=bodies[i])
        results["echo%d" % i] = (r.status, r.body == bodies[i])

    def other(i, path):
        r = n.get(path)
        results["%s%d" % (path, i)] = (r.status, r.body)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
    for i in range(3):
        threads.append(threading.Thread(
            target=other, args=(i, "/stream?n=4&delay=0.2&id=thr%d" % i)))
        threads.append(threading.Thread(target=other, args=(i, "/write")))
        threads.append(threading.Thread(target=other, args=(i, "/file")))
    for t in threads:
        t.start()
    for t in threads:
        t.join(T(30))
    for i in range(4):
        assert results["echo%d" % i] == (200, True)
    with open(os.path.join(os.path.dirname(__file__), "..", "apps",
                           "wsgi_basic", "app.py"), "rb") as f:
        source = f.read()
    for i in range(3):
        status, body = results["/stream?n=4&delay=0.2&id=thr%d%d" % (i, i)]
        assert status == 200
        assert body == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n"
        assert results["/write%d" % i] == (
            200, b"written by write()\nand returned\n")
        status, body = results["/file%d" % i]
        assert status == 200
        assert hashlib.sha256(body).digest() == \
            hashlib.sha256(source).digest()
        for suffix in ("closed", "exhausted"):
            wait_until(lambda: os.path.exists(os.path.join(
                n.marker_dir, "thr%d.%s" % (i, suffix))), 5,
                what="thr%d.%s" % (i, suffix))
    environ = n.get("/environ").body
    assert b'"wsgi.multithread": true' in environ, environ


def test_flask_request_context_under_threads(narwhal):
    n = narwhal(chdir=THREADS_APP, app="flask_ctx:app",
                settings={"workers": 1, "threads": 8})
    names = ["req%02d" % i for i in range(16)]
    elapsed, answers = get_many(
        n, ["/ctx/%s?tag=t-%s&s=0.3" % (name, name) for name in names])
    assert [a.status for a in answers] == [200] * 16, answers
    for name, a in zip(names, answers):
        b = a.json()
        assert b["name"] == b["view_arg"] == b["g_name"] == name, b
        assert b["tag"] == "t-" + name, b
        assert b["path"] == b["g_path"] == "/ctx/" + name, b
    assert len({a.json()["thread"] for a in answers}) == 8


def django_master(narwhal, pg, threads, max_age):
    env = pg_env(pg)
    env["DJANGO_CONN_MAX_AGE"] = str(max_age)
    return narwhal(chdir=DJANGO_PG, app="pgsite.wsgi:application", env=env,
                   settings={"workers": 1, "threads": threads})


def test_django_conn_max_age_keeps_a_connection_per_thread(narwhal, pg):
    n = django_master(narwhal, pg, 4, 60)
    backend_of = {}
    for round_ in range(4):
        elapsed, answers = get_many(n, ["/db/?s=0.5"] * 4)
        assert [a.status for a in answers] == [200] * 4, answers
        body = [a.json() for a in answers]
        if round_ == 0:
            # four queries at once in one worker: four connections
            assert len({b["backend"] for b in body}) == 4, body
        for b in body:
            # CONN_MAX_AGE: a thread keeps its own connection
            assert backend_of.setdefault(b["thread"], b["backend"]) == \
                b["backend"], (backend_of, body)
    assert len(backend_of) == 4, backend_of
    assert app_connections(pg, "narwhal-django-test") == \
        sorted(backend_of.values())


def test_django_conn_max_age_0_closes_on_the_request_thread(narwhal, pg):
    """Django closes a connection from request_finished, which close()
    sends: on the thread that ran the request, or the connection leaks."""
    n = django_master(narwhal, pg, 4, 0)
    for _ in range(3):
        _, answers = get_many(n, ["/db/?s=0.2"] * 4)
        assert [a.status for a in answers] == [200] * 4, answers
    wait_until(lambda: app_connections(pg, "narwhal-django-test") == [], 10,
               what="every connection closed")


def test_term_waits_for_requests_on_every_thread(narwhal):
    n = threads_master(narwhal, 6, graceful_timeout=15)
    worker, results = term_with_requests_in_flight(n, 4)
    for result in results:
        assert result.get("status") == 200, result
        assert b'"slept"' in result["body"]
        assert (result["connection"] or "").lower() == "close"
    assert n.wait_exit(20) == 0
    n.wait_for_log(r"worker \d+ pid %d gen 1: exited with status 0" % worker,
                   5)


def test_one_hung_thread_is_not_a_dead_worker_but_all_are(narwhal):
    timeout = 2
    n = threads_master(narwhal, 3, timeout=timeout, graceful_timeout=2)
    worker = n.worker_pids()[0]
    in_background(n, "/hang?id=0")
    wait_until(lambda: os.path.exists(os.path.join(
        n.marker_dir, "hang-0-%d" % worker)), 10, what="one hung request")
    # two healthy threads serve on for three timeouts
    mark = n.mark()
    deadline = time.monotonic() + 3 * timeout
    served = 0
    while time.monotonic() < deadline:
        _, answers = get_many(n, ["/sleep?s=0.1"] * 2)
        assert [a.status for a in answers] == [200, 200], answers
        assert {a.json()["pid"] for a in answers} == {worker}
        served += 2
    assert pid_alive(worker)
    assert not n.find_logs(r"pid %d gen 1: stopping \(no heartbeat" % worker,
                           mark)
    assert served >= 10

    # every thread stuck: the worker is dead, and the watchdog says so
    for i in (1, 2):
        in_background(n, "/hang?id=%d" % i)
    n.wait_for_log(r"worker \d+ pid %d gen 1: stopping \(no heartbeat for "
                   r"%ds, SIGABRT\)" % (worker, timeout), timeout + 10, mark)
    n.wait_for_log(r"pid %d gen 1 stderr: .*most recent call first" % worker,
                   10)
    wait_until(lambda: not pid_alive(worker), 10, what="the hung worker gone")
    wait_until(lambda: [p for p in n.worker_pids() if p != worker], 20,
               what="a replacement")
    assert n.get("/").status == 200


def test_max_requests_access_log_and_counts_under_threads(narwhal):
    pre = narwhal(start=False)
    log = os.path.join(pre.dir, "access.log")
    n = threads_master(narwhal, 4, workers=2, max_requests=25, timeout=4,
                       accesslog=log)
    total = 0
    for _ in range(10):
        _, answers = get_many(n, ["/sleep?s=0.02"] * 8)
        assert [a.status for a in answers] == [200] * 8, answers
        total += 8
    retired = n.find_logs(r"gen 1: retiring \(max_requests \d+ reached\)")
    assert len(retired) >= 2, n.tail()
    # every request has its access log line, from whichever thread
    wait_until(lambda: sum(1 for line in open(log)
                           if '"GET /sleep?s=0.02 HTTP/1.1" 200' in line)
               == total, 15, what="%d access log lines" % total)
