"""Zero-downtime reload (issue 3): HUP brings up a health-checked generation
from the tree a `current` symlink points at, under continuous traffic, and
only then retires the old one.

Every test deploys release trees built by deploy.py from tests/apps/releases/
and drives the real master; the continuous client alternates keep-alive and
new-connection requests and counts every failure.
"""

import os
import re
import signal
import threading
import time

import pytest

from conftest import T, pid_alive, wait_until
from deploy import (Client, Deploy, StatusPoller, markers, reload_wait,
                    rewrite_config, start_master, status, status_cli,
                    wait_settled, workers_of)

READY = "/health/ready"


def deploy_v1_v2(narwhal, v2_variant="good"):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", v2_variant)
    d.flip("v1")
    return d


def gen_pids(snapshot, gen):
    return sorted(w["pid"] for w in workers_of(snapshot, gen))


@pytest.mark.parametrize("workers,batch", [(2, 0), (3, 1)],
                         ids=["all-at-once", "batch-1"])
def test_hup_deploys_v2_under_load(narwhal, workers, batch):
    d = deploy_v1_v2(narwhal)
    n = start_master(narwhal, d, {"workers": workers, "reload_batch": batch})
    before = status(n)
    old_pids = gen_pids(before, 1)
    assert len(old_pids) == workers and before["tree"] == d.tree("v1")

    with Client(n.addr) as client, StatusPoller(n) as poller:
        client.wait_requests(100)
        d.flip("v2")
        n.signal(signal.SIGHUP)
        n.wait_for_log(r"generation 2: live, %d workers, tree %s$"
                       % (workers, re.escape(d.tree("v2"))), 40)
        after = wait_settled(n, 2, workers)
        settled_at = time.monotonic()
        client.wait_requests(200)
        client.stop()
        poller.stop()

    print(client.summary(), "max gap %.3fs" % client.max_gap(),
          "min capacity", poller.min_capacity(), len(poller.snapshot()))
    assert client.failures() == [], client.summary()
    versions = client.versions()
    assert set(versions) <= {"v1", "v2"}, client.summary()
    assert versions.get("v1") and versions.get("v2"), client.summary()
    assert set(client.versions(since=settled_at)) == {"v2"}, client.summary()

    # no worker of generation 1 remains, in the master's table or alive
    assert after["generation"] == 2 and after["tree"] == d.tree("v2")
    assert all(w["generation"] == 2 for w in after["workers"]), after
    assert after["last_reload"]["outcome"] == "ok", after
    wait_until(lambda: not any(pid_alive(p) for p in old_pids), 10,
               what="generation 1 pids gone")
    for _ in range(10):
        assert n.get("/", headers={"Connection": "close"}).body == b"v2\n"

    # capacity never dropped, and batches were respected
    assert poller.snapshot(), poller.errors
    assert poller.min_capacity() >= workers, poller.min_capacity()
    if batch:
        booting = max(len(workers_of(s, 2, ("spawned", "booted", "probing")))
                      for _, s in poller.snapshot())
        assert booting <= batch, booting


def test_worker_not_ready_gets_no_public_request(narwhal):
    d = deploy_v1_v2(narwhal, "slow_ready")
    # ready_grace: an app that answers 503 while it warms up
    n = start_master(narwhal, d, {"ready_path": READY, "boot_timeout": 15,
                                  "ready_grace": 5},
                     env={"READY_DELAY": "2"})
    with Client(n.addr) as client:
        client.wait_requests(100)
        d.flip("v2")
        mark = n.mark()
        n.signal(signal.SIGHUP)
        n.wait_for_log(r"gen 2 probe: %s answered 503" % READY, 15, mark)
        n.wait_for_log(r"generation 2: live", 30, mark)
        wait_settled(n, 2, 2)
        client.wait_requests(200)
        client.stop()
    print(client.summary())
    assert client.failures() == [], client.summary()
    assert client.versions().get("v2"), client.summary()

    new_pids = n.find_logs(r"worker \d+ pid (\d+) gen 2: live", mark)
    assert len(new_pids) == 2
    for m in new_pids:
        pid = int(m.group(1))
        early = os.path.join(n.marker_dir, "public-before-ready-%d" % pid)
        count = open(early).read() if os.path.exists(early) else "0"
        assert count == "0", "worker %d saw %s public requests before its " \
            "ready_path answered 200" % (pid, count)
    # and those workers did serve the public once live
    gen2_pids = {m.group(1) for m in new_pids}
    assert any(s.pid in gen2_pids for s in client.snapshot()), \
        client.summary()


def test_invalid_config_on_hup_changes_nothing(narwhal):
    d = deploy_v1_v2(narwhal)
    n = start_master(narwhal, d)
    before = status(n)
    text = n.config_text.replace("workers = 2", "workers = lots")
    assert text != n.config_text
    with Client(n.addr) as client:
        client.wait_requests(50)
        d.flip("v2")
        rewrite_config(n, text=text)
        mark = n.mark()
        n.signal(signal.SIGHUP)
        m = n.wait_for_log(r"reload refused, nothing changed: (.*)", 10, mark)
        client.wait_requests(100)
        client.stop()
    line = [i for i, l in enumerate(text.splitlines(), 1)
            if l.startswith("workers =")][0]
    assert "%s:%d: workers" % (n.config_path, line) in m.group(1), m.group(1)
    after = status(n)
    assert after["generation"] == 1 and after["tree"] == d.tree("v1")
    assert gen_pids(after, 1) == gen_pids(before, 1)
    assert [w["state"] for w in after["workers"]] == ["live", "live"]
    assert after["last_reload"]["outcome"] == "refused", after
    assert not n.find_logs(r"generation 2", mark)
    assert client.failures() == [], client.summary()
    assert set(client.versions()) == {"v1"}, client.summary()


@pytest.mark.parametrize("breakage", ["bad-value", "unknown-key", "no-tree"])
def test_reload_wait_reports_invalid_config(narwhal, breakage):
    """`narwhal reload --wait -c FILE` exits 3 naming file, line and key."""
    d = deploy_v1_v2(narwhal)
    n = start_master(narwhal, d, {"workers": 1})
    pids = gen_pids(status(n), 1)
    lines = n.config_text.splitlines()
    if breakage == "bad-value":
        key = "workers"
        lines = [("workers = lots" if l.startswith("workers =") else l)
                 for l in lines]
    elif breakage == "unknown-key":
        key = "max_requets"
        lines.insert(lines.index("[narwhal]") + 1, "max_requets = 10")
    else:
        key = "chdir"
        lines = [("chdir = %s/missing" % d.root if l.startswith("chdir =")
                  else l) for l in lines]
    line = [i for i, l in enumerate(lines, 1) if l.startswith(key + " =")][0]
    rewrite_config(n, text="\n".join(lines) + "\n")

    r = reload_wait(n, timeout=30)
    assert r.returncode == 3, r
    assert "%s:%d: %s" % (n.config_path, line, key) in r.output, r
    after = status(n)
    assert after["generation"] == 1 and gen_pids(after, 1) == pids
    assert n.get("/").body == b"v1\n"


def test_in_flight_request_completes_across_reload(narwhal, seconds=4):
    """seconds: the slow request's length; it must outlast the new
    generation's boot, so that its worker is told to stop while it runs."""
    d = deploy_v1_v2(narwhal)
    n = start_master(narwhal, d, {"graceful_timeout": seconds + 6})
    result = {}

    def slow():
        try:
            r = n.get("/slow?s=%d" % seconds, timeout=30 + seconds)
            result.update(status=r.status, body=r.body, pid=r.header("X-Pid"))
        except Exception as e:  # reported below
            result["error"] = repr(e)
        result["done"] = time.monotonic()

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    slow_pid = wait_until(lambda: markers(n, "slow-"), 10,
                          what="the slow request in the app")[0].split("-")[1]
    d.flip("v2")
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_for_log(r"worker \d+ pid %s gen 1: stopping" % slow_pid, 20, mark)
    stopping_seen = time.monotonic()
    t.join(T(20 + seconds))
    assert not t.is_alive()
    assert result.get("status") == 200, result
    assert result["body"] == b"v1\n" and result["pid"] == slow_pid
    # it was still in flight when its worker was told to stop
    assert result["done"] > stopping_seen, result
    n.wait_for_log(r"worker \d+ pid %s gen 1: exited with status 0"
                   % slow_pid, 10, mark)
    wait_settled(n, 2, 2)
    assert n.get("/").body == b"v2\n"


def test_status_json_follows_a_reload(narwhal):
    d = deploy_v1_v2(narwhal, "slow_ready")
    n = start_master(narwhal, d, {"ready_path": READY, "boot_timeout": 15},
                     env={"READY_DELAY": "1", "IMPORT_DELAY": "0.7"})
    first = status_cli(n)
    assert first["generation"] == 1 and first["reloading"] is False
    assert first["live"] == 2 and first["target"] == 2
    assert [w["state"] for w in first["workers"]] == ["live", "live"]

    # keep both old workers busy, so they are seen draining in `stopping`
    slow = [threading.Thread(target=lambda: n.get("/slow?s=4", timeout=30),
                             daemon=True) for _ in range(2)]
    with StatusPoller(n, interval=0.02, cli=True) as poller:
        for t in slow:
            t.start()
        wait_until(lambda: markers(n, "slow-"), 10,
                   what="slow requests in the app")
        d.flip("v2")
        n.signal(signal.SIGHUP)
        n.wait_for_log(r"generation 2: live", 30)
        last = wait_settled(n, 2, 2)
        for t in slow:
            t.join(T(15))
        poller.stop()

    samples = [s for _, s in poller.snapshot()]
    assert len(samples) > 10, poller.errors
    seen2 = poller.states_seen(2)
    assert {"spawned", "probing", "live"} <= seen2, seen2
    seen1 = poller.states_seen(1)
    assert {"live", "stopping"} <= seen1, seen1
    during = [s for s in samples if s["reloading"]]
    assert during, "no sample showed the reload running"
    assert all(s["reload_generation"] == 2 and
               s["reload_tree"] == d.tree("v2") and s["generation"] == 1
               for s in during)
    gens = [s["generation"] for s in samples]
    assert gens == sorted(gens) and gens[0] == 1 and gens[-1] == 2, gens
    assert last["last_reload"]["outcome"] == "ok"
    assert last["tree"] == d.tree("v2")
    final = status_cli(n)
    assert [(w["generation"], w["state"]) for w in final["workers"]] == \
        [(2, "live"), (2, "live")]
    for w in final["workers"]:
        assert pid_alive(w["pid"]) and w["age"] >= 0 and w["rss"] > 0


def test_hups_during_a_reload_are_merged(narwhal):
    d = deploy_v1_v2(narwhal, "slow_ready")
    n = start_master(narwhal, d, {"ready_path": READY, "boot_timeout": 15},
                     env={"READY_DELAY": "1"})
    d.flip("v2")
    mark = n.mark()
    for _ in range(3):
        n.signal(signal.SIGHUP)
        time.sleep(0.02)

    def quiet():
        s = status(n)
        starts = n.find_logs(r"generation (\d+): starting", mark)
        last = int(starts[-1].group(1)) if starts else 0
        if s["reloading"] or s["generation"] != last:
            return None
        return starts
    wait_until(quiet, 40, interval=0.2, what="reloads done")
    time.sleep(T(1.5))  # nothing else may start now
    starts = n.find_logs(r"generation (\d+): starting", mark)
    started = [int(m.group(1)) for m in starts]
    assert 1 <= len(started) <= 2, started
    if n.find_logs(r"queued behind the running one", mark):
        assert started == [2, 3], started
    final = wait_settled(n, started[-1], 2)
    assert final["tree"] == d.tree("v2")
    assert len(n.find_logs(r"queued behind the running one", mark)) <= 1
