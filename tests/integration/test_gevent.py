"""gevent and eventlet workers (issue 14): the worker monkey-patches before
it imports the app, runs each request in a greenlet on the same C engine,
and `worker_connections` bounds the requests at once.

Every test runs for both libraries. Concurrency is shown by what one
request at a time cannot do, with generous bounds; the bound on requests
at once by the app's own count.
"""

import json

import pytest

from conftest import T
from concurrency import (THREADS_APP, Upstream, get_many, inflight, pg_env,
                         term_with_requests_in_flight)
from pg import pg  # noqa: F401 (the fixture)

SLEEP = 1.0
KINDS = ["gevent", "eventlet"]


def green_master(narwhal, kind, **settings):
    s = {"workers": 1, "worker_class": kind}
    s.update(settings)
    return narwhal(chdir=THREADS_APP, settings=s)


@pytest.mark.parametrize("kind", KINDS)
def test_patched_before_the_app_is_imported(narwhal, kind):
    n = green_master(narwhal, kind)
    patched = json.loads(n.get("/patched").body)
    assert patched["at_import"] == {"socket": kind, "time": kind}, patched
    assert patched["now"] == {"socket": kind, "time": kind}, patched


@pytest.mark.parametrize("kind", KINDS)
def test_n_slow_requests_take_about_one_request_time(narwhal, kind):
    n = green_master(narwhal, kind)
    elapsed, answers = get_many(n, ["/sleep?s=%g&id=%d" % (SLEEP, i)
                                    for i in range(20)])
    assert [a.status for a in answers] == [200] * 20, answers
    # one at a time would take 20 s
    assert elapsed < T(3 * SLEEP), elapsed
    assert max(a.json()["running"] for a in answers) >= 2
    assert inflight(n)["most"] == 20


@pytest.mark.parametrize("kind", KINDS)
def test_monkey_patched_socket_call_to_a_local_server(narwhal, kind):
    n = green_master(narwhal, kind)
    wait = 2 * SLEEP  # two hops: a longer wait keeps their cost small
    with Upstream() as up:
        elapsed, answers = get_many(
            n, ["/upstream?url=%s" % up.url(wait)] * 10)
    assert [a.status for a in answers] == [200] * 10, answers
    for a in answers:
        b = a.json()
        assert b["status"] == 200 and b["body"] == "upstream ok", b
        assert b["patched"] == kind, b
    # ten calls of 2 s each, waiting at once (20 s one after another)
    assert elapsed < T(3 * wait), elapsed


@pytest.mark.parametrize("kind", KINDS)
def test_worker_connections_bound_the_requests_at_once(narwhal, kind):
    n = green_master(narwhal, kind, worker_connections=3)
    _, answers = get_many(n, ["/sleep?s=0.5"] * 9)
    assert [a.status for a in answers] == [200] * 9, answers
    counts = inflight(n)
    assert counts["most"] == 3, counts
    assert counts["served"] == 9, counts


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_worker_leaves_new_clients_to_the_others(narwhal, kind):
    """At worker_connections open connections a green worker stops
    accepting, as gunicorn's does: a new client is not queued behind its
    greenlets but taken by a worker with room."""
    n = green_master(narwhal, kind, workers=2, worker_connections=2)
    elapsed, answers = get_many(n, ["/sleep?s=%g" % SLEEP] * 4)
    assert [a.status for a in answers] == [200] * 4, answers
    pids = [a.json()["pid"] for a in answers]
    assert sorted(pids.count(p) for p in set(pids)) == [2, 2], pids
    # two at a time in one worker would take two sleeps
    assert elapsed < T(1.8 * SLEEP), elapsed


@pytest.mark.parametrize("kind", KINDS)
def test_psycopg2_waits_in_greenlets(narwhal, kind, pg):
    n = narwhal(chdir=THREADS_APP, env=pg_env(pg),
                settings={"workers": 1, "worker_class": kind})
    elapsed, answers = get_many(n, ["/pg?s=%g" % SLEEP] * 6)
    assert [a.status for a in answers] == [200] * 6, answers
    assert len({a.json()["backend"] for a in answers}) == 6
    assert elapsed < T(3 * SLEEP), elapsed


@pytest.mark.parametrize("kind", KINDS)
def test_term_waits_for_every_greenlet(narwhal, kind):
    n = green_master(narwhal, kind, graceful_timeout=15)
    worker, results = term_with_requests_in_flight(n, 5)
    for result in results:
        assert result.get("status") == 200, result
        assert (result["connection"] or "").lower() == "close"
    assert n.wait_exit(20) == 0
    n.wait_for_log(r"worker \d+ pid %d gen 1: exited with status 0" % worker,
                   5)
