"""The watch after go-live and exact request counts (issue 11): the parts
that need the worker shim to send its counters with the heartbeat
(PLAN.md's wire format). Until it does, these tests are skipped.

* A release whose /health/ready is 200 but whose main route answers 500 is
  rolled back automatically, under load, within the window; the old code
  serves afterwards, and every 5xx a user saw is counted by narwhal.
* 1% of 500s on the old release and on the new one is not a regression.
* /metrics counts match the requests the test sent, exactly, across a
  recycle and a reload; statsd's gunicorn.requests adds up to the same.
"""

import os
import re
import socket
import threading

import pytest

from conftest import T, Narwhal, wait_until
from deploy import (FAST, Client, Deploy, reload_wait, start_master, status,
                    wait_settled, workers_of)
from metrics_util import (StatsdListener, metrics_address, promtool_check,
                          scrape, scrape_text, value, worker_sends_counters)

pytestmark = pytest.mark.skipif(
    not worker_sends_counters(),
    reason="the worker shim does not send counters with its heartbeat yet")

READY = "/health/ready"
WATCH_ROLLED_BACK = 7


def watched(extra=None):
    s = {"watch": True, "watch_window": "%g" % T(60),
         "watch_min_requests": 50, "metrics_interval": 0.2,
         "metrics_bind": "127.0.0.1:0", "ready_path": READY, "workers": 2}
    s.update(extra or {})
    return s


class Notified(Narwhal):
    """A master with a NOTIFY_SOCKET this test reads (STATUS= lines)."""

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.notify_path = os.path.join(workdir, "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(0.2)
        self.messages = []
        self._done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while not self._done.is_set():
            try:
                data = self.notify.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cond:
                self.messages.append(data.decode(errors="replace"))

    def command(self):
        return ["/usr/bin/env", "NOTIFY_SOCKET=" + self.notify_path] + \
            super().command()

    def stop(self, timeout=20):
        rc = super().stop(timeout)
        self._done.set()
        self.notify.close()
        return rc


def test_main_route_500_is_rolled_back_under_load(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "main_500")
    d.flip("v1")
    s = dict(FAST)
    s["chdir"] = d.current
    s.update(watched())
    n = Notified(narwhal.workdir(), settings=s)
    narwhal.started.append(n)
    n.start()
    where = metrics_address(n)
    with Client(n.addr) as client:
        client.wait_requests(200)
        d.flip("v2")
        mark = n.mark()
        r = reload_wait(n, timeout=120)
        settled = wait_settled(n, 1, 2)
        client.wait_requests(200)
        client.stop()
    print(r)
    print(client.summary())
    assert r.returncode == WATCH_ROLLED_BACK, r
    assert re.search(r"^result: watch-rolled-back generation 2 failed: "
                     r"watch: canary worse than generation 1: 5xx \d+\.\d% ",
                     r.stdout, re.M), r
    assert "%s points back at releases/v1" % d.current in r.stdout, r
    assert d.link() == "releases/v1"
    assert settled["tree"] == d.tree("v1")
    assert settled["last_reload"]["outcome"] == "watch-rolled-back"
    n.wait_for_log(r"generation 2: failed: watch: canary worse", since=mark)
    # the old code serves afterwards
    samples = client.snapshot()
    tail = samples[-200:]
    assert all(s.status == 200 and s.version == "v1" for s in tail), tail
    # what users saw: only the canary's 500s, and narwhal counted each one
    fives = [s for s in samples if s.status == 500]
    others = [s for s in client.failures() if s.status != 500]
    assert others == [], client.summary()
    assert fives, "the canary took no traffic"
    assert all(s.version.startswith("v500") for s in fives)
    wait_until(lambda: value(scrape(where), "narwhal_responses_5xx_total",
                             code="500") == len(fives), 20, interval=0.2,
               what="narwhal's 500 count to reach the %d users saw"
               % len(fives))
    s = scrape(where)
    assert value(s, "narwhal_rollbacks_total", trigger="watch") == 1
    assert value(s, "narwhal_reloads_total", outcome="watch_rolled_back") == 1
    # systemd hears it too
    wait_until(lambda: any("last reload: rolled back by the watch (5xx)" in
                           msg for msg in list(n.messages)), 10,
               what="STATUS= saying the watch rolled back")
    assert any("watching a canary" in msg for msg in list(n.messages))
    print("5xx seen by users during the window: %d of %d requests"
          % (len(fives), len(samples)))


def test_one_percent_on_both_is_not_rolled_back(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1", "one_percent")
    d.make_release("v2", "one_percent")
    d.flip("v1")
    n = start_master(narwhal, d, watched({"watch_window": 5}))
    with Client(n.addr) as client:
        client.wait_requests(1000)
        d.flip("v2")
        r = reload_wait(n, timeout=120)
        wait_settled(n, 2, 2)
        client.stop()
    print(r)
    print(client.summary())
    assert r.returncode == 0, r
    assert re.search(r"^progress: generation 2: watch passed \(",
                     r.stdout, re.M), r
    assert status(n)["last_reload"]["outcome"] == "ok"


def test_counts_match_exactly_across_a_recycle_and_a_reload(narwhal):
    listener = StatsdListener()
    try:
        d = Deploy(narwhal.workdir())
        d.make_release("v1")
        d.make_release("v2")
        d.flip("v1")
        n = start_master(narwhal, d, {
            "metrics_bind": "127.0.0.1:0", "metrics_interval": 0.2,
            "statsd_host": listener.address, "max_requests": 40,
            "workers": 2,
            # the master's own requests on the private socket (probes and
            # the warm-up GET /) are not traffic: they are not counted
            "ready_path": READY})
        where = metrics_address(n)
        sent = 0
        for i in range(150):
            assert n.get("/", headers={"Connection": "close"}).status == 200
            sent += 1
        d.flip("v2")
        assert reload_wait(n).returncode == 0
        # generation 1's workers may still answer what reached them at TERM
        wait_until(lambda: not workers_of(status(n), 1), 30,
                   what="generation 1's workers gone")
        for i in range(150):
            keep = {} if i % 10 else {"Connection": "close"}
            assert n.get("/nope" if i % 50 == 0 else "/",
                         headers=keep).status == 200
            sent += 1
        wait_until(lambda: value(scrape(where), "narwhal_requests_total")
                   == sent, 30, interval=0.2,
                   what="narwhal_requests_total == %d" % sent)
        s = scrape(where)
        assert value(s, "narwhal_requests_total") == sent
        assert value(s, "narwhal_responses_total", code="2xx") == sent
        assert value(s, "narwhal_request_duration_seconds_count") == sent
        # 150 requests on 2 workers with max_requests 40: one recycled
        assert value(s, "narwhal_worker_restarts_total",
                     cause="recycled") >= 1
        assert value(s, "narwhal_reloads_total", outcome="ok") == 1
        gen2 = value(s, "narwhal_generation_requests_total",
                     generation="2")
        assert gen2 == 150, gen2
        rc, out = promtool_check(scrape_text(where))
        assert rc == 0, out
        wait_until(lambda: listener.total("gunicorn.requests") == sent, 20,
                   what="statsd gunicorn.requests adding up to %d" % sent)
        assert listener.total("gunicorn.request.status.2xx") == sent
        assert any(l.startswith("gunicorn.request.duration:")
                   for l in listener.snapshot())
        st = status(n)
        assert st["totals"]["requests"] == sent
    finally:
        listener.close()


def test_errors_after_the_switch_are_rolled_back(narwhal):
    """A release that passes its canary window (here: no traffic to judge)
    and then answers 500 once it has all the traffic: the watch goes on for
    watch_window after the switch, and rolls it back."""
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "main_500")
    d.flip("v1")
    n = start_master(narwhal, d, watched({"watch_window": 10}))
    where = metrics_address(n)
    for _ in range(60):
        assert n.get("/").status == 200
    d.flip("v2")
    mark = n.mark()
    r = reload_wait(n, timeout=60)
    assert r.returncode == 0, r
    assert "too little traffic to judge" in r.stdout, r
    n.wait_for_log(r"generation 2: watching the whole generation for 10s "
                   r"against generation 1's 5xx 0\.0%", since=mark)
    after = status(n)["watch"]["after_switch"]
    assert after["active"] is True and after["generation"] == 2, after
    with Client(n.addr) as client:
        n.wait_for_log(r"generation 2: worse than generation 1 after going "
                       r"live: 5xx 100\.0% .*; rolling back", since=mark)
        settled = wait_settled(n, 3, 2)
        client.wait_requests(100)
        client.stop()
    assert settled["tree"] == d.tree("v1")
    assert d.link() == "releases/v1"
    assert n.find_logs(r"reload \(watch after go-live\)", since=mark)
    tail = client.snapshot()[-100:]
    assert all(x.status == 200 and x.version == "v1" for x in tail), tail
    s = scrape(where)
    assert value(s, "narwhal_rollbacks_total", trigger="watch") == 1
    assert value(s, "narwhal_rollbacks_total", trigger="manual") == 0


def test_a_good_release_passes_the_watch_after_the_switch(narwhal):
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = start_master(narwhal, d, watched({"watch_window": 3}))
    d.flip("v2")
    mark = n.mark()
    with Client(n.addr) as client:
        client.wait_requests(100)
        assert reload_wait(n, timeout=60).returncode == 0
        n.wait_for_log(r"generation 2: watch after go-live passed \(5xx "
                       r"0\.0%", since=mark, timeout=30)
        client.stop()
    assert client.failures() == [], client.summary()
    assert not n.find_logs(r"rolling back", since=mark)
    assert status(n)["generation"] == 2


def test_health_check_503s_while_warming_up_are_not_errors(narwhal):
    """A canary whose ready_path answered 503 before it was ready: those
    answers went to the master's probe, not to users, and do not count."""
    d = Deploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "slow_ready")
    d.flip("v1")
    n = start_master(narwhal, d, watched({"watch_window": 5,
                                          "ready_interval": 0.2,
                                          "ready_grace": 10}),
                     env={"READY_DELAY": "2"})
    with Client(n.addr) as client:
        client.wait_requests(500)
        d.flip("v2")
        mark = n.mark()
        r = reload_wait(n, timeout=120)
        wait_settled(n, 2, 2)
        client.stop()
    print(r)
    assert r.returncode == 0, r
    assert n.find_logs(r"gen 2 probe: %s answered 503" % READY, since=mark) \
        or n.find_logs(r"answered 503", since=mark), n.tail()
    assert re.search(r"^progress: generation 2: watch passed \(5xx 0\.0%",
                     r.stdout, re.M), r
    assert client.failures() == [], client.summary()
