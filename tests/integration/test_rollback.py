"""Rollback (issue 4): a deploy whose new generation cannot become healthy
never reaches users, the old generation keeps serving, the `current` symlink
is put back, and `narwhal reload --wait` reports the reason and the
traceback with exit code 4.

Each failure runs under the continuous client of deploy.py, which must see
zero failed requests.
"""

import os
import re
import stat
import time

from conftest import T, wait_until
from deploy import (Client, Deploy, StatusPoller, crash_times, reload_wait,
                    rewrite_config, start_master, status, wait_settled,
                    workers_of)

READY = "/health/ready"
ROLLED_BACK = 4


def version_gap(client, version):
    """The longest stretch of the run in which `version` never answered."""
    samples = client.snapshot()
    ends = [s.t1 for s in samples if s.error is None and s.version == version]
    if not ends:
        return float("inf")
    points = [samples[0].t0] + ends + [samples[-1].t1]
    return max(b - a for a, b in zip(points, points[1:]))


def rollback_under_load(narwhal, variant, settings=None, env=None,
                        workers=2, v2_may_answer=False):
    """Deploys a broken v2 over a good v1 under load; returns what happened.

    v2_may_answer: v2 goes live before it fails (a crash after going live,
    a batch whose later workers fail), so some answers may come from it.
    """
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", variant)
    d.flip("v1")
    s = {"workers": workers}
    s.update(settings or {})
    n = start_master(narwhal, d, s, env=env)
    before = status(n)
    with Client(n.addr) as client, StatusPoller(n) as poller:
        client.wait_requests(100)
        d.flip("v2")
        r = reload_wait(n, timeout=60)
        after = wait_settled(n, 1, workers)
        settled_at = time.monotonic()
        client.wait_requests(200)
        client.stop()
        poller.stop()
    print(r)
    print(client.summary(), "v1 gap %.3fs" % version_gap(client, "v1"),
          "min capacity", poller.min_capacity())

    assert r.returncode == ROLLED_BACK, r
    assert re.search(r"^result: rolled-back generation 2 failed: ", r.stdout,
                     re.M), r
    # the code tree is put back
    assert d.link() == os.path.join("releases", "v1"), d.link()
    assert "%s points back at releases/v1" % d.current in r.stdout, r
    # the old generation kept serving, whole; a request that a v2 worker
    # was serving when it crashed is lost with it (at most one per crash)
    crashes = crash_times(n)
    assert client.failures_outside(crashes) == [], client.summary()
    assert len(client.failures()) <= len(crashes), client.summary()
    allowed = {"v1", "v2"} if v2_may_answer else {"v1"}
    assert set(client.versions()) <= allowed, client.summary()
    assert set(client.versions(since=settled_at)) == {"v1"}, client.summary()
    assert poller.min_capacity() >= workers, \
        "capacity fell to %s" % poller.min_capacity()
    assert after["tree"] == d.tree("v1")
    assert after["last_reload"]["outcome"] == "rolled-back", after
    if not v2_may_answer:
        assert sorted(w["pid"] for w in after["workers"]) == \
            sorted(w["pid"] for w in before["workers"])
    n.wait_for_log(r"generation 2: failed: ")
    for _ in range(5):
        assert n.get("/", headers={"Connection": "close"}).body == b"v1\n"
    return n, d, r, client


def stderr_lines(r):
    return [l[len("stderr: "):] for l in r.stdout.splitlines()
            if l.startswith("stderr: ")]


def test_import_error(narwhal):
    n, d, r, _ = rollback_under_load(narwhal, "import_error")
    err = stderr_lines(r)
    assert "ModuleNotFoundError: No module named " \
        "'narwhal_release_missing_dependency'" in err, r
    assert any(re.search(r'File "%s/app.py", line 2' % re.escape(d.tree("v2")),
                         l) for l in err), r
    assert re.search(r"worker \d+ exited with status 3 while spawned", r.stdout)


def test_syntax_error(narwhal):
    n, d, r, _ = rollback_under_load(narwhal, "syntax_error")
    err = stderr_lines(r)
    assert any(l.startswith("SyntaxError: ") for l in err), r
    assert any(re.search(r'File "%s/app.py", line 4' % re.escape(d.tree("v2")),
                         l) for l in err), r


def test_ready_path_always_503(narwhal):
    n, d, r, _ = rollback_under_load(
        narwhal, "never_ready",
        {"ready_path": READY, "boot_timeout": "%g" % T(3), "boot_retries": 0})
    # failed fast on its answers (or, on a slow machine, at boot_timeout),
    # and the answer is the reason
    assert re.search(r"failed the probe 5 times: GET %s answered 503: "
                     r"not ready|not live within boot_timeout %gs \(probing: "
                     r"GET %s answered 503: not ready\)" % (READY, T(3), READY),
                     r.stdout), r
    assert "never_ready: the database is unreachable" in stderr_lines(r), r
    n.wait_for_log(r"gen 2 probe: %s answered 503" % READY)


def test_hang_at_import(narwhal):
    n, d, r, _ = rollback_under_load(
        narwhal, "hang_import",
        {"boot_timeout": "%g" % T(3), "boot_retries": 0})
    assert re.search(r"not live within boot_timeout %gs \(spawned\)" % T(3),
                     r.stdout), r
    assert "hang_import: connecting to the database at import" in \
        stderr_lines(r), r


def test_segfault_after_going_live(narwhal):
    n, d, r, client = rollback_under_load(
        narwhal, "segfault_live", {"min_uptime": 3, "boot_retries": 0},
        env={"SEGFAULT_AFTER": "1"}, v2_may_answer=True)
    assert re.search(r"died \d+\.\ds after going live \(min_uptime 3s\)",
                     r.stdout), r
    assert any("segfaulting now" in l for l in stderr_lines(r)), r
    n.wait_for_log(r"gen 2: exited on signal 11")
    # v1 kept answering while v2 was on probation
    assert version_gap(client, "v1") < T(1.0), version_gap(client, "v1")


def test_config_made_invalid(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.flip("v1")
    n = start_master(narwhal, d)
    before = status(n)
    lines = n.config_text.splitlines()
    line = lines.index("[narwhal]") + 2
    lines.insert(line - 1, "reload_batch = -1")
    with Client(n.addr) as client:
        client.wait_requests(50)
        rewrite_config(n, text="\n".join(lines) + "\n")
        r = reload_wait(n, timeout=30)
        client.wait_requests(100)
        client.stop()
    assert r.returncode == 3, r
    assert "%s:%d: reload_batch" % (n.config_path, line) in r.output, r
    after = status(n)
    assert after["generation"] == 1 and not after["reloading"]
    assert [w["pid"] for w in after["workers"]] == \
        [w["pid"] for w in before["workers"]]
    assert d.link() == os.path.join("releases", "v1")
    assert client.failures() == [], client.summary()
    assert set(client.versions()) == {"v1"}, client.summary()


def test_reverted_then_fixed_deploy(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "import_error")
    d.make_release("v3")
    d.flip("v1")
    n = start_master(narwhal, d)
    with Client(n.addr) as client:
        client.wait_requests(50)
        d.flip("v2")
        r = reload_wait(n, timeout=60)
        assert r.returncode == ROLLED_BACK, r
        assert d.link() == os.path.join("releases", "v1")
        wait_settled(n, 1, 2)
        d.flip("v3")
        r = reload_wait(n, timeout=60)
        assert r.returncode == 0, r
        assert re.search(r"^result: ok generation 3 live, tree %s$"
                         % re.escape(d.tree("v3")), r.stdout, re.M), r
        after = wait_settled(n, 3, 2)
        settled_at = time.monotonic()
        client.wait_requests(100)
        client.stop()
    assert client.failures() == [], client.summary()
    assert set(client.versions()) == {"v1", "v3"}, client.summary()
    assert set(client.versions(since=settled_at)) == {"v3"}
    assert after["tree"] == d.tree("v3") and d.link() == "releases/v3"
    with open(os.path.join(n.settings["state_dir"], "last-good-tree")) as f:
        assert f.read() == d.tree("v3") + "\n"


def cold_start_on_broken_tree(narwhal):
    """v1 recorded as last good, then a cold start with current on broken v2."""
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "import_error")
    d.flip("v1")
    state = os.path.join(d.root, "state")
    first = start_master(narwhal, d, {"state_dir": state})
    good = os.path.join(state, "last-good-tree")
    # written right after the `generation 1: live` line
    wait_until(lambda: os.path.exists(good), 5, what=good)
    with open(good) as f:
        assert f.read() == d.tree("v1") + "\n"
    assert first.stop() == 0

    d.flip("v2")
    n = start_master(narwhal, d, {"state_dir": state}, wait=False)
    n.wait_for_log(r"tree %s does not boot; falling back to the last good "
                   r"tree %s" % (re.escape(d.tree("v2")),
                                 re.escape(d.tree("v1"))), 30)
    n.wait_live(gen=2, timeout=30)
    return d, n


def test_cold_start_falls_back_to_last_good_tree(narwhal):
    d, n = cold_start_on_broken_tree(narwhal)
    s = wait_settled(n, 2, 2)
    assert s["tree"] == d.tree("v1")
    with Client(n.addr) as client:
        client.wait_requests(100)
        client.stop()
    assert client.failures() == [], client.summary()
    assert set(client.versions()) == {"v1"}, client.summary()
    assert n.find_logs(r"ModuleNotFoundError")


def test_rollback_after_cold_fallback_restores_serving_tree(narwhal):
    """After a fallback to v1, a failed deploy of v3 points current at v1,
    the tree that serves, not at v2, the tree that never booted."""
    d, n = cold_start_on_broken_tree(narwhal)
    wait_settled(n, 2, 2)
    d.make_release("v3", "syntax_error")
    d.flip("v3")
    r = reload_wait(n, timeout=60)
    assert r.returncode == ROLLED_BACK, r
    wait_settled(n, 2, 2)
    assert n.get("/").body == b"v1\n"
    assert d.points_at() == "v1", (d.link(), r.stdout)


def test_batch_rollback_restores_full_capacity(narwhal):
    n, d, r, client = rollback_under_load(
        narwhal, "second_fails", {"reload_batch": 1}, workers=3,
        v2_may_answer=True)
    assert "second_fails: " in "\n".join(stderr_lines(r)), r
    # one v2 worker went live and retired a v1 worker before the failure
    mark_live = n.find_logs(r"worker \d+ pid \d+ gen 2: live")
    assert len(mark_live) == 1, n.tail()
    assert n.find_logs(r"gen 1: stopping \(generation 2 took over\)")
    s = status(n)
    assert len(workers_of(s, 1, ("live",))) == 3 and len(s["workers"]) == 3


def test_on_rollback_hook_gets_both_trees(narwhal):
    hook_dir = narwhal.workdir()
    out = os.path.join(hook_dir, "hook.out")
    hook = os.path.join(hook_dir, "on-rollback.py")
    with open(hook, "w") as f:
        f.write("#!/usr/bin/python3\n"
                "import os, sys\n"
                "with open(%r + '.tmp', 'w') as f:\n"
                "    for k in ('NARWHAL_FAILED_TREE', 'NARWHAL_RESTORED_TREE',\n"
                "              'NARWHAL_ROLLBACK_REASON'):\n"
                "        f.write('%%s=%%s\\n' %% (k, os.environ.get(k)))\n"
                "    f.write('argv=%%s\\n' %% ' '.join(sys.argv[1:]))\n"
                "os.replace(%r + '.tmp', %r)\n" % (out, out, out))
    os.chmod(hook, os.stat(hook).st_mode | stat.S_IXUSR)
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "import_error")
    d.flip("v1")
    n = start_master(narwhal, d, {"on_rollback": '%s "deploy pipeline"' % hook,
                                  "boot_retries": 0})
    d.flip("v2")
    r = reload_wait(n, timeout=60)
    assert r.returncode == ROLLED_BACK, r
    wait_until(lambda: os.path.exists(out), 10, what="the on_rollback output")
    with open(out) as f:
        got = dict(l.split("=", 1) for l in f.read().splitlines())
    assert got["NARWHAL_FAILED_TREE"] == d.tree("v2")
    assert got["NARWHAL_RESTORED_TREE"] == d.tree("v1")
    assert got["NARWHAL_ROLLBACK_REASON"].startswith("generation 2 failed: ")
    assert got["argv"] == "deploy pipeline"
    n.wait_for_log(r"on_rollback %s exited with status 0" % re.escape(hook))
