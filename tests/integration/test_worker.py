"""The worker side of the contract: timeouts, graceful stop, environment,
app loading."""

import json
import os
import signal
import socket
import threading
import time

from conftest import APPS, T, HTTPReader, build_request, pid_alive
from deploy import Client


def test_idle_keepalive_connection_is_closed(narwhal):
    n = narwhal(settings={"workers": 1, "keepalive": 1})
    s = socket.create_connection(n.addr, timeout=T(15))
    try:
        s.sendall(build_request("GET", "/"))
        rd = HTTPReader(s)
        assert rd.read_response().status == 200
        start = time.monotonic()
        assert rd.read_to_eof() == b""
        assert time.monotonic() - start < T(10)
    finally:
        s.close()


def test_idle_workers_take_turns_at_new_connections(narwhal):
    """A new connection goes to an idle worker, and idle workers take turns:
    one registered first does not take them all (a canary started beside
    the old workers must see its share)."""
    n = narwhal(settings={"workers": 3})
    live = n.worker_pids()
    assert len(live) == 3, live
    seen = {}
    for _ in range(60):
        s = socket.create_connection(n.addr, timeout=T(15))
        try:
            rd = HTTPReader(s)
            for _ in range(2):
                s.sendall(build_request("GET", "/pid"))
                r = rd.read_response()
                assert r.status == 200, r
            pid = int(r.body)
        finally:
            s.close()
        seen[pid] = seen.get(pid, 0) + 1
    assert sorted(seen) == sorted(live), seen
    assert min(seen.values()) >= 10, seen


def test_keepalive_timeout_is_a_lingering_close(narwhal):
    """A request that races with the keep-alive timeout meets an EOF (which
    clients retry on a new connection), not a reset."""
    n = narwhal(settings={"workers": 1, "keepalive": 1})
    s = socket.create_connection(n.addr, timeout=T(15))
    try:
        s.sendall(build_request("GET", "/"))
        rd = HTTPReader(s)
        assert rd.read_response().status == 200
        assert rd.read_to_eof() == b""
        s.sendall(build_request("GET", "/"))
        time.sleep(0.3)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        assert err == 0, "reset instead of a lingering close: errno %d" % err
    finally:
        s.close()


def test_term_closes_idle_keepalive_connections(narwhal):
    """Graceful stop does not wait for idle keep-alive clients."""
    n = narwhal(settings={"workers": 2, "keepalive": 60,
                          "graceful_timeout": 30})
    socks = []
    try:
        for _ in range(4):
            s = socket.create_connection(n.addr, timeout=T(30))
            s.sendall(build_request("GET", "/"))
            assert HTTPReader(s).read_response().status == 200
            socks.append(s)
        start = time.monotonic()
        n.signal(signal.SIGTERM)
        assert n.wait_exit(25) == 0
        assert time.monotonic() - start < T(10), \
            "waited for idle keep-alive connections"
        for s in socks:
            assert s.recv(100) == b""
    finally:
        for s in socks:
            s.close()


def test_graceful_timeout_bounds_the_drain(narwhal):
    n = narwhal(settings={"workers": 1, "graceful_timeout": 2})
    worker = n.worker_pids()[0]
    mark = n.mark()
    t = threading.Thread(target=_quietly, args=(n.get, "/slow?s=60&id=gt"),
                         daemon=True)
    t.start()
    n.wait_for_log(r"stderr: slow start gt", 10, since=mark)
    start = time.monotonic()
    n.signal(signal.SIGTERM)
    code = n.wait_exit(20)
    assert time.monotonic() - start < T(15)
    assert not pid_alive(worker)
    n.wait_for_log(r"worker \d+ pid %d gen 1: exited on signal 9" % worker, 5)
    assert code == 0


def _quietly(fn, *a):
    try:
        fn(*a, timeout=90)
    except Exception:
        pass


def test_worker_stopped_behind_the_masters_back_is_replaced(narwhal):
    n = narwhal(settings={"workers": 1})
    old = n.worker_pids()[0]
    mark = n.mark()
    os.kill(old, signal.SIGTERM)
    n.wait_for_log(r"worker \d+ pid %d gen 1: exited with status 0" % old, 15,
                   since=mark)
    m = n.wait_for_log(r"worker \d+ pid (\d+) gen 1: live", 20, since=mark)
    assert int(m.group(1)) != old
    assert n.worker_pid_via_http() == int(m.group(1))


def test_app_traceback_reaches_the_log(narwhal):
    n = narwhal(settings={"workers": 1})
    pid = n.worker_pids()[0]
    mark = n.mark()
    assert n.get("/error").status == 500
    n.wait_for_log(r"worker \d+ pid %d gen 1 stderr: .*RuntimeError: boom"
                   % pid, 10, since=mark)


def test_shim_path_not_inherited_by_the_app(narwhal):
    n = narwhal(settings={"workers": 1})
    r = n.get("/env?name=PYTHONPATH")
    assert r.status == 404 or b"worker-shim" not in r.body, r.body


def test_pythonpath_setting(narwhal):
    n = narwhal(app="extra_mod:application",
                settings={"workers": 1,
                          "pythonpath": os.path.join(APPS, "extra_path")})
    assert n.get("/").body == b"from the extra path\n"


def test_app_factory(narwhal):
    n = narwhal(app="app:make_app()", settings={"workers": 1})
    assert n.get("/factory").body == b"made by the factory\n"
    assert n.get("/").body == b"Hello, world!\n"


def test_chdir_symlink_resolves_to_the_tree(narwhal):
    d = narwhal.workdir()
    link = os.path.join(d, "current")
    os.symlink(os.path.join(APPS, "wsgi_basic"), link)
    n = narwhal(chdir=link, settings={"workers": 1})
    m = n.wait_for_log(r"generation 1: live, 1 workers?, tree (\S+)", 5)
    assert m.group(1) == os.path.realpath(link)
    assert json.loads(n.get("/environ").body)["cwd"] == os.path.realpath(link)


def test_request_pending_on_keepalive_connection_at_stop_is_answered(narwhal):
    """A request the client already sent on an idle keep-alive connection
    when the worker begins its graceful stop is in flight: it is answered
    (with `Connection: close`), not dropped by closing the connection under
    it. Dropping it is what wrk counts as read errors during recycling and
    reloads under keep-alive load."""
    n = narwhal(settings={"workers": 1, "keepalive": 30,
                          "graceful_timeout": 15})
    b = socket.create_connection(n.addr, timeout=T(20))
    try:
        rd = HTTPReader(b)
        b.sendall(build_request("GET", "/"))
        assert rd.read_response().status == 200
        mark = n.mark()
        slow = {}
        t = threading.Thread(
            target=lambda: slow.update(r=n.get("/slow?s=2&id=pending",
                                                timeout=30)),
            daemon=True)
        t.start()
        n.wait_for_log(r"stderr: slow start pending", 10, since=mark)
        n.signal(signal.SIGTERM)
        time.sleep(0.3)
        # the worker is still inside the slow request; this one waits
        b.sendall(build_request("GET", "/pid"))
        try:
            r = rd.read_response()
        except (EOFError, ConnectionResetError) as e:
            raise AssertionError("request dropped at graceful stop: %r" % e)
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close"
        t.join(T(20))
        assert slow["r"].status == 200
    finally:
        b.close()
    assert n.wait_exit(20) == 0


def _stop_idle_setup(narwhal):
    """One worker, a keep-alive connection that has had one answer (idle
    now), and the worker stopping: busy with a slow request, so the stop
    begins when that one ends."""
    n = narwhal(settings={"workers": 1, "keepalive": 30,
                          "graceful_timeout": 15})
    b = socket.create_connection(n.addr, timeout=T(20))
    rd = HTTPReader(b)
    b.sendall(build_request("GET", "/"))
    assert rd.read_response().status == 200
    return n, b, rd


def test_partial_request_pending_at_stop_is_completed_and_answered(narwhal):
    """Half a request is in the socket when the stop begins; the rest comes
    after: the request is answered (Connection: close), not cut off."""
    n, b, rd = _stop_idle_setup(narwhal)
    try:
        mark = n.mark()
        slow = {}
        t = threading.Thread(
            target=lambda: slow.update(r=n.get("/slow?s=1&id=partial",
                                                timeout=30)),
            daemon=True)
        t.start()
        n.wait_for_log(r"stderr: slow start partial", 10, since=mark)
        n.signal(signal.SIGTERM)
        req = build_request("GET", "/pid")
        b.sendall(req[:10])
        t.join(T(20))
        assert slow["r"].status == 200
        time.sleep(0.3)  # the stop has begun: the half request was read
        b.sendall(req[10:])
        r = rd.read_response()
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close"
        assert rd.read_to_eof() == b""
    finally:
        b.close()
    assert n.wait_exit(20) == 0


def test_request_just_after_stop_on_idle_connection_is_answered(narwhal):
    """A client that sends its next request a moment after the worker began
    to stop (it had not seen any close) is answered with Connection: close:
    under load that moment is when most idle connections get their next
    request."""
    n, b, rd = _stop_idle_setup(narwhal)
    try:
        mark = n.mark()
        n.signal(signal.SIGTERM)
        n.wait_for_log(r"worker \d+ pid \d+ gen 1: stopping", 10, since=mark)
        time.sleep(0.2)
        b.sendall(build_request("GET", "/pid"))
        try:
            r = rd.read_response()
        except (EOFError, ConnectionResetError) as e:
            raise AssertionError("request dropped at graceful stop: %r" % e)
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close"
    finally:
        b.close()
    assert n.wait_exit(20) == 0


def test_idle_connection_at_stop_gets_a_lingering_close(narwhal):
    """An idle keep-alive connection is closed at stop with a FIN, and a
    request that races with it gets a clean EOF, not a reset: the worker
    reads and drops it instead of leaving it to the kernel to refuse."""
    n, b, rd = _stop_idle_setup(narwhal)
    try:
        n.signal(signal.SIGTERM)
        start = time.monotonic()
        assert rd.read_to_eof() == b""
        assert time.monotonic() - start < T(5)
        b.sendall(build_request("GET", "/pid"))
        time.sleep(0.3)
        # a reset would show as a socket error (EPIPE after our EOF)
        err = b.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        assert err == 0, "reset instead of a lingering close: errno %d" % err
        b.sendall(b"\r\n")
        assert b.recv(100) == b""
    finally:
        b.close()
    assert n.wait_exit(20) == 0


def test_stop_under_keepalive_load_drops_no_request(narwhal):
    """Reloads while keep-alive clients send without pause: every request
    is answered, and none finds its connection closed under it (what wrk
    counts as read errors, and what a client without retries fails on)."""
    n = narwhal(settings={"workers": 2, "keepalive": 30, "min_uptime": 0,
                          "graceful_timeout": 10})
    clients = [Client(n.addr, batch=10 ** 6, singles=0, max_seconds=60)
               for _ in range(6)]
    for c in clients:
        c.start()
    try:
        for c in clients:
            c.wait_requests(20)
        for gen in (2, 3):
            mark = n.mark()
            n.signal(signal.SIGHUP)
            n.wait_for_log(r"generation %d: live" % gen, 30, since=mark)
            for _ in range(2):
                n.wait_for_log(r"worker \d+ pid \d+ gen %d: exited "
                               r"with status 0" % (gen - 1), 20, since=mark)
            for c in clients:
                c.wait_requests(20)
    finally:
        for c in clients:
            c.stop()
    summaries = [c.summary() for c in clients]
    assert sum(c.stale_retries for c in clients) == 0, summaries
    assert not any(c.failures() for c in clients), summaries
