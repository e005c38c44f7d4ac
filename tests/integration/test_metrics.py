"""Metrics, status and `narwhal rollback` (issue 11), the parts that do not
need the workers' request counters: GET /metrics from the master (promtool
passes, bounded clients), statsd with gunicorn's names, the counters of
`status --json`, restarts by cause, reloads by outcome, the canary step of a
reload, and going back to the previous tree with `narwhal rollback`.

The request counts themselves, and the watch that judges them, are in
test_canary.py: they need the worker shim's counters (PLAN.md's wire format).
"""

import os
import re
import socket
import subprocess
import time

from conftest import BIN, T, wait_until
from deploy import (Client, Deploy, reload_wait, start_master, status,
                    wait_settled)
from metrics_util import (StatsdListener, http_get, metrics_address,
                          promtool_check, scrape, scrape_text, value)

READY = "/health/ready"


def rollback_cli(n, wait=True, timeout=60):
    cmd = [BIN, "rollback"] + (["--wait", "--timeout", "%g" % T(timeout)]
                               if wait else []) + ["-c", n.config_path]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=T(timeout) + 15)
    return r


def test_metrics_endpoint_passes_promtool(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = start_master(narwhal, d, {"metrics_bind": "127.0.0.1:0",
                                  "max_requests": 5, "workers": 2})
    where = metrics_address(n)
    text = scrape_text(where)
    rc, out = promtool_check(text)
    assert rc == 0, out + text
    s = scrape(where)
    assert value(s, "narwhal_generation") == 1
    assert value(s, "narwhal_workers", state="live") == 2
    assert value(s, "narwhal_workers_target") == 2
    # a recycle (max_requests 5) and a reload, then the counters again
    for _ in range(12):
        assert n.get("/", headers={"Connection": "close"}).status == 200
    n.wait_for_log(r"stopping \(replaced by worker \d+\)")
    d.flip("v2")
    r = reload_wait(n)
    assert r.returncode == 0, r
    s = wait_until(lambda: (lambda x: x if value(
        x, "narwhal_worker_restarts_total", cause="recycled") >= 1
        else None)(scrape(where)), 30, interval=0.2,
        what="a recycled restart counted")
    assert value(s, "narwhal_reloads_total", outcome="ok") == 1
    assert value(s, "narwhal_rollbacks_total", trigger="boot") == 0
    assert value(s, "narwhal_generation") == 2
    current = [dict(k[1]) for k in s if k[0] == "narwhal_generation_info"
               and dict(k[1])["role"] == "current"]
    assert current == [{"generation": "2", "role": "current",
                        "tree": d.tree("v2")}], current
    # per (generation, slot) series: slots are 0..workers-1
    slots = sorted(dict(k[1])["slot"] for k in s
                   if k[0] == "narwhal_worker_requests_in_flight" and
                   dict(k[1])["generation"] == "2")
    assert slots == ["0", "1"], slots
    rc, out = promtool_check(scrape_text(where))
    assert rc == 0, out


def test_metrics_on_a_unix_socket_and_other_paths(narwhal):
    path = os.path.join(narwhal.workdir(), "metrics.sock")
    n = narwhal(settings={"metrics_bind": "unix:" + path})
    where = metrics_address(n)
    assert where == ("unix", path)
    assert os.stat(path).st_mode & 0o077 == 0, "owner-only"
    assert value(scrape(where), "narwhal_workers", state="live") == 2
    assert http_get(where, "/")[0] == 404
    assert http_get(where, "/metrics", method="POST")[0] == 405
    status_, headers, body = http_get(where, "/metrics", method="HEAD")
    assert status_ == 200 and body == b"", (status_, body)
    n.stop()
    assert not os.path.exists(path), "the socket is removed at exit"


def test_metrics_clients_are_bounded_and_time_out(narwhal):
    n = narwhal(settings={"metrics_bind": "127.0.0.1:0"})
    where = metrics_address(n)
    idle = []
    for _ in range(6):   # more than the 4 the master serves at once
        s = socket.create_connection(where[1], timeout=T(20))
        idle.append(s)
    t0 = time.monotonic()
    # the master closes idle clients after its timeout; then a scrape runs
    for s in idle:
        assert s.recv(100) in (b"",), "closed without an answer"
    assert value(scrape(where), "narwhal_workers", state="live") == 2
    print("idle clients closed after %.1fs" % (time.monotonic() - t0))
    # serving clients did not stop the workers from serving
    assert n.get("/").status == 200
    for s in idle:
        s.close()


def test_statsd_gets_gunicorn_names(narwhal):
    listener = StatsdListener()
    try:
        n = narwhal(settings={"statsd_host": listener.address,
                              "statsd_prefix": "myapp.web...",
                              "dogstatsd_tags": "env:test,team:a",
                              "metrics_interval": 0.2})
        line = "myapp.web.gunicorn.workers:2|g|#env:test,team:a"
        wait_until(lambda: line in listener.snapshot(), 20,
                   what="statsd line %r" % line)
        assert any(l.startswith("myapp.web.narwhal.workers.busy:")
                   for l in listener.snapshot())
    finally:
        listener.close()


def test_status_has_counters(narwhal):
    n = narwhal()
    for _ in range(3):
        assert n.get("/").status == 200
    s = status(n)
    assert set(s["totals"]) >= {"requests", "status", "bytes", "inflight",
                                "busy", "idle", "latency_buckets"}
    assert len(s["totals"]["latency_buckets"]) == 12
    assert set(s["restarts"]) == {"recycled", "lifetime", "memory",
                                  "crashed", "timed_out", "boot_failed"}
    assert s["reloads"] == {"ok": 0, "refused": 0, "rolled-back": 0,
                            "dependency-down": 0, "watch-rolled-back": 0}
    assert [g["id"] for g in s["generations"]] == [1]
    assert s["generations"][0]["role"] == "current"
    for w in s["workers"]:
        assert w["slot"] in (0, 1)
        assert set(w["counters"]["status"]) == {
            "1xx", "2xx", "3xx", "4xx", "5xx", "500", "502", "503", "504"}
    assert s["watch"]["active"] is False
    r = subprocess.run([BIN, "status", "-c", n.config_path],
                       capture_output=True, text=True, timeout=T(20))
    assert r.returncode == 0, r
    assert re.search(r"^ +GEN ROLE +REQUESTS +5XX +5XX% +INFLIGHT$",
                     r.stdout, re.M), r.stdout
    assert re.search(r"^ +1 current +\d+ +0 +0\.0% +\d+$", r.stdout,
                     re.M), r.stdout
    assert re.search(r"WORKER +GEN +STATE .* BUDGET +SLOT +5XX +INFLIGHT$",
                     r.stdout, re.M), r.stdout


def test_crash_counted_as_restart(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.flip("v1")
    n = start_master(narwhal, d, {"metrics_bind": "127.0.0.1:0"})
    where = metrics_address(n)
    try:
        n.get("/crash", timeout=5)
    except Exception:
        pass
    n.wait_for_log(r"exited on signal 11, respawn")
    s = scrape(where)
    assert value(s, "narwhal_worker_restarts_total", cause="crashed") == 1
    assert value(s, "narwhal_worker_restarts_total", cause="recycled") == 0


def test_reload_starts_with_a_canary(narwhal):
    """watch on: one new worker first, beside every old one; then the rest."""
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = start_master(narwhal, d, {"watch": True, "watch_window": 2,
                                  "workers": 3})
    d.flip("v2")
    mark = n.mark()
    r = reload_wait(n)
    assert r.returncode == 0, r
    assert re.search(r"^progress: generation 2: canary worker \d+ live, "
                     r"watching for 2s$", r.stdout, re.M), r
    assert re.search(r"^progress: generation 2: watch passed", r.stdout,
                     re.M), r
    m = n.wait_for_log(r"generation 2: canary worker (\d+) live beside "
                       r"generation 1", since=mark)
    # the canary went live before any old worker was stopped, and no
    # second new worker was spawned before the watch passed
    lines = n.log_lines()[mark:]
    canary_at = next(i for i, l in enumerate(lines)
                     if "canary worker" in l)
    passed_at = next(i for i, l in enumerate(lines) if "watch passed" in l)
    spawned = [i for i, l in enumerate(lines)
               if re.search(r"gen 2: spawned", l)]
    stopped = [i for i, l in enumerate(lines)
               if re.search(r"gen 1: stopping", l)]
    assert len(spawned) == 3 and spawned[0] < canary_at < spawned[1], lines
    assert spawned[1] > passed_at and min(stopped) > canary_at, lines
    assert int(m.group(1)) > 0
    wait_settled(n, 2, 3)


def test_reload_watching_returns_when_the_canary_is_watched(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = start_master(narwhal, d, {"watch": True, "watch_window": 5})
    d.flip("v2")
    r = subprocess.run([BIN, "reload", "--watching", "--timeout",
                        "%g" % T(60), "-c", n.config_path],
                       capture_output=True, text=True, timeout=T(75))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert re.search(r"^result: ok generation 2: canary worker \d+ live, "
                     r"watching for 5s$", r.stdout, re.M), r.stdout
    wait_settled(n, 2, 2)


def test_rollback_command_goes_back_to_previous_tree(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = start_master(narwhal, d, {"metrics_bind": "127.0.0.1:0"})
    r = rollback_cli(n)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "result: refused no earlier good generation" in r.stdout
    d.flip("v2")
    assert reload_wait(n).returncode == 0
    wait_settled(n, 2, 2)   # the old workers may still be stopping
    assert n.get("/").body == b"v2\n"
    with Client(n.addr) as client:
        client.wait_requests(50)
        r = rollback_cli(n)
        settled = wait_settled(n, 3, 2)
        client.wait_requests(50)
        client.stop()
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert re.search(r"^result: ok generation 3 live, tree %s$"
                     % re.escape(d.tree("v1")), r.stdout, re.M), r.stdout
    assert client.failures() == [], client.summary()
    assert settled["tree"] == d.tree("v1")
    assert d.link() == os.path.join("releases", "v1")
    assert n.get("/").body == b"v1\n"
    n.wait_for_log(r"rollback: %s points at releases/v1 \(was releases/v2\)"
                   % re.escape(d.current))
    s = scrape(metrics_address(n))
    assert value(s, "narwhal_rollbacks_total", trigger="manual") == 1
    # v2 is not a good tree any more: nothing earlier than v1 to go to
    r = rollback_cli(n)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)


def test_reload_applies_metrics_bind_and_statsd_host(narwhal):
    """Everything is tuned in the file: a reload that went live binds a new
    metrics_bind and sends to a new statsd_host, no restart needed."""
    first, second = StatsdListener(), StatsdListener()
    try:
        d = Deploy(narwhal.workdir())
        d.make_release("v1")
        d.flip("v1")
        sock = os.path.join(d.root, "metrics.sock")
        n = start_master(narwhal, d, {"metrics_bind": "127.0.0.1:0",
                                      "metrics_interval": 0.2,
                                      "statsd_host": first.address})
        status_code, _, _ = http_get(metrics_address(n))
        assert status_code == 200
        from deploy import rewrite_config
        rewrite_config(n, metrics_bind="unix:" + sock,
                       statsd_host=second.address, statsd_prefix="app")
        assert reload_wait(n).returncode == 0
        n.wait_for_log(r"metrics at unix:%s/metrics" % re.escape(sock))
        status_code, _, body = http_get(("unix", sock))
        assert status_code == 200 and b"narwhal_requests_total" in body
        for _ in range(5):
            assert n.get("/").status == 200
        wait_until(lambda: second.total("app.gunicorn.requests") == 5, 20,
                   what="5 requests counted at the new statsd_host")
        assert first.total("gunicorn.requests") == 0
    finally:
        first.close()
        second.close()


def test_rollback_after_a_restart(narwhal):
    """The good trees are kept in state_dir: after the master restarts (a
    `systemctl restart`, a reboot), `narwhal rollback` still goes back."""
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    state = os.path.join(d.root, "state")
    n = start_master(narwhal, d, {"state_dir": state})
    d.flip("v2")
    assert reload_wait(n).returncode == 0
    wait_settled(n, 2, 2)
    assert n.stop() == 0
    n = start_master(narwhal, d, {"state_dir": state})
    n.wait_for_log(r"rollback history: 2 good trees from .*good-trees, "
                   r"newest %s" % re.escape(d.tree("v2")))
    assert n.get("/").body == b"v2\n"
    r = rollback_cli(n)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    wait_settled(n, 2, 2)
    assert d.link() == os.path.join("releases", "v1")
    assert n.get("/").body == b"v1\n"


def test_rollback_of_a_plain_directory_tree(narwhal, tmp_path):
    """No symlink: the previous tree is given to the reload directly."""
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    n = start_master(narwhal, d, {"chdir": d.tree("v1")})
    from deploy import rewrite_config
    rewrite_config(n, chdir=d.tree("v2"))
    assert reload_wait(n).returncode == 0
    wait_settled(n, 2, 2)   # the old workers may still be stopping
    assert n.get("/").body == b"v2\n"
    r = rollback_cli(n)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    wait_settled(n, 3, 2)
    assert n.get("/").body == b"v1\n"


def test_rollback_stops_a_running_reload(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "never_ready")
    d.flip("v1")
    n = start_master(narwhal, d, {"ready_path": READY,
                                  "boot_timeout": "%g" % T(60)})
    d.flip("v2")
    mark = n.mark()
    reload_proc = subprocess.Popen(
        [BIN, "reload", "--wait", "-c", n.config_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        n.wait_for_log(r"gen 2: probing", since=mark)
        r = rollback_cli(n)
        out, err = reload_proc.communicate(timeout=T(30))
    finally:
        if reload_proc.poll() is None:
            reload_proc.kill()
            reload_proc.wait()
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert re.search(r"^result: ok generation 2 stopped; generation 1 "
                     r"serves", r.stdout, re.M), r.stdout
    assert reload_proc.returncode == 4, (out, err)
    assert "stopped by narwhal rollback" in out
    assert d.link() == os.path.join("releases", "v1")
    wait_settled(n, 1, 2)
    assert n.get("/").body == b"v1\n"


def test_rollback_with_an_invalid_config_leaves_the_link(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = start_master(narwhal, d)
    d.flip("v2")
    assert reload_wait(n).returncode == 0
    wait_settled(n, 2, 2)
    from deploy import rewrite_config
    rewrite_config(n, text=n.config_text.replace("workers = 2",
                                                 "workers = many"))
    r = rollback_cli(n)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "result: refused" in r.stdout and "workers" in r.stdout, r.stdout
    assert d.link() == os.path.join("releases", "v2")
    assert n.get("/").body == b"v2\n"
