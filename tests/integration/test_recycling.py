"""Worker recycling and watchdogs (issue 5): a worker is replaced only once
its replacement is live, so recycling never costs capacity; a hung worker is
killed with its Python traceback in the log; a crash loop backs off.
The budget draw and the backoff schedule are C unit tests
(tests/unit/test_supervise.c, tests/unit/test_worker.c).
"""

import os
import re
import signal
import threading
import time

from conftest import T, pid_alive, wait_until
from deploy import (Client, Deploy, StatusPoller, markers, start_master,
                    status, wait_settled, workers_of)

def good_tree(narwhal, variant="good"):
    d = Deploy(narwhal.workdir())
    d.make_release("v1", variant)
    d.flip("v1")
    return d


def test_max_requests_recycles_without_losing_capacity(narwhal):
    d = good_tree(narwhal)
    n = start_master(narwhal, d, {"max_requests": 50,
                                  "max_requests_jitter": 10})
    retired = r"worker \d+ pid \d+ gen 1: retiring \(max_requests (\d+) " \
              r"reached\)"
    replaced = r"gen 1: stopping \(replaced by worker \d+\)"
    with Client(n.addr) as client, StatusPoller(n, interval=0.02) as poller:
        wait_until(lambda: len(n.find_logs(retired)) >= 8 and
                   len(n.find_logs(replaced)) >= 8 and
                   len(poller.snapshot()) >= 30, 60, interval=0.1,
                   what="8 workers recycled for max_requests")
        client.stop()
        poller.stop()
    print(client.summary(), "min live", poller.min_live(),
          "min capacity", poller.min_capacity(), len(poller.snapshot()))

    assert client.failures() == [], client.summary()
    samples = [s for _, s in poller.snapshot()]
    assert len(samples) >= 30, poller.errors
    assert poller.min_live() >= 2, [s["live"] for s in samples]
    assert poller.min_capacity() >= 2
    # each worker's budget lies in [max_requests, max_requests + jitter]
    budgets = {}
    for s in samples:
        for w in s["workers"]:
            if w["pid"]:
                budgets[w["id"]] = w["budget"]
    assert budgets and all(50 <= b <= 60 for b in budgets.values()), budgets
    drawn = [int(m.group(1)) for m in n.find_logs(retired)]
    assert all(50 <= b <= 60 for b in drawn), drawn
    # every slot was recycled: the first two workers are long gone
    first = [int(m.group(1)) for m in
             n.find_logs(r"worker [12] pid (\d+) gen 1: spawned")]
    assert len(first) == 2 and not any(pid_alive(p) for p in first)
    # only a live replacement retired a worker: no other reason to stop
    stops = n.find_logs(r"gen 1: stopping \((.*)\)")
    assert {m.group(1).split(" by ")[0] for m in stops} <= \
        {"replaced", "shutdown"}, [m.group(0) for m in stops]


def test_hung_worker_is_killed_with_its_traceback(narwhal):
    d = good_tree(narwhal)
    n = start_master(narwhal, d, {"timeout": 4})
    result = {}

    def hang():
        try:
            r = n.get("/sleep", timeout=60)
            result["status"] = r.status
        except Exception as e:  # the worker dies with this request
            result["error"] = repr(e)

    t = threading.Thread(target=hang, daemon=True)
    t.start()
    name = wait_until(lambda: markers(n, "sleeping-"), 10,
                      what="the request to sleep")[0]
    hung_at = time.monotonic()
    pid = int(name.split("-")[1])
    m = n.wait_for_log(r"worker (\d+) pid %d gen 1: stopping \(no heartbeat "
                       r"for 4s, SIGABRT\)" % pid, 4 + 5)
    wid = m.group(1)
    n.wait_for_log(r"worker %s pid %d gen 1: exited on signal \d+, "
                   r"respawn in \d+s" % (wid, pid), 10)
    killed_after = time.monotonic() - hung_at
    assert killed_after < T(4 + 6), killed_after
    assert not pid_alive(pid)

    # faulthandler's dump, relayed line by line, shows where it hung
    base = os.path.join(d.tree("v1"), "release_base.py")
    with open(base) as f:
        line = [i for i, l in enumerate(f, 1)
                if l.strip() == "time.sleep(1000)"][0]
    n.wait_for_log(r"worker %s pid %d gen 1 stderr: +File \"%s\", line %d "
                   r"in application" % (wid, pid, re.escape(base), line), 5)
    assert n.find_logs(r"pid %d gen 1 stderr: .*most recent call first"
                       % pid)

    # a replacement serves
    s = wait_settled(n, 1, 2)
    assert pid not in [w["pid"] for w in s["workers"]]
    # one slot, one replacement: not a fresh worker *and* a respawn that is
    # then dropped as if `workers` had been decreased
    assert not n.find_logs(r"removed \(workers decreased\)"), n.tail()
    for _ in range(10):
        assert n.get("/", headers={"Connection": "close"}).body == b"v1\n"
    t.join(T(10))
    assert "status" not in result, result


def test_crash_loop_backs_off(narwhal):
    d = good_tree(narwhal, "crash_loop")
    n = start_master(narwhal, d)
    victim = n.worker_pids()[0]
    m = n.find_logs(r"worker (\d+) pid %d gen 1: live" % victim)
    wid = m[0].group(1)
    open(os.path.join(n.marker_dir, "crash-loop"), "w").close()
    respawn = r"worker %s pid \d+ gen 1: exited on signal 11, respawn in " \
              r"(\d+(?:\.\d+)?)s" % wid
    # kill first, then load: a connection whose epoll wakeup went to the
    # victim as it died would wait for the next connection to be accepted
    os.kill(victim, signal.SIGSEGV)
    n.wait_for_log(respawn, 10)
    with Client(n.addr) as client:
        wait_until(lambda: len(n.find_logs(respawn)) >= 5, 40, interval=0.1,
                   what="5 respawns of worker %s" % wid)
        client.stop()
    delays = [float(m.group(1)) for m in n.find_logs(respawn)]
    assert delays == sorted(delays), delays
    # The first death is respawned at once; so is the second when the
    # victim had served long enough to count as killed, not crash-looping
    # (it depends on how long it lived): then the crash loop backs off.
    assert delays[0] == 0, delays
    backoff = [d for d in delays if d > 0]
    assert len(backoff) >= 3, delays
    assert backoff[-1] >= 2 * backoff[-2] > 0, delays  # exponential
    # the master never gave up, and the other worker kept serving
    assert n.proc.poll() is None
    assert client.failures() == [], client.summary()
    assert client.ok_count() > 0
    s = status(n)
    assert len(workers_of(s, 1, ("live",))) == 1
    assert [w["state"] for w in s["workers"] if str(w["id"]) == wid][0] in \
        ("backoff", "spawned")


def test_max_worker_lifetime_recycles_without_losing_capacity(narwhal):
    d = good_tree(narwhal)
    n = start_master(narwhal, d, {"max_worker_lifetime": 3})
    retired = r"gen 1: retiring \(max_worker_lifetime \d+s reached\)"
    replaced = r"gen 1: stopping \(replaced by worker \d+\)"
    with Client(n.addr) as client, StatusPoller(n, interval=0.02) as poller:
        wait_until(lambda: len(n.find_logs(retired)) >= 4 and
                   len(n.find_logs(replaced)) >= 4, 40, interval=0.1,
                   what="4 workers recycled for max_worker_lifetime")
        client.stop()
        poller.stop()
    print(client.summary(), "min live", poller.min_live())
    assert client.failures() == [], client.summary()
    assert poller.min_live() >= 2, [s["live"] for _, s in poller.snapshot()]
    # nobody was retired before its lifetime: 3 s (plus up to 10% jitter)
    for _, snap in poller.snapshot():
        for w in snap["workers"]:
            if w["state"] == "retiring":
                assert w["age"] >= 3, w
