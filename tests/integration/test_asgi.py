"""ASGI workers (issue 7): a raw ASGI app, a Starlette app and a FastAPI app
(Debian's packages) served by the real binary, lifespan run exactly once per
worker, a failed lifespan startup treated as a boot failure, the watchdog
catching a blocked event loop, and FastAPI deploys and rollbacks under
continuous traffic.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import threading
import time

import pytest

from conftest import (APPS, HTTPReader, T, build_request, pid_alive,
                      raw_exchange, status_of, wait_until)
from deploy import (Client, Deploy, reload_wait, start_master, status,
                    wait_settled)

ASGI_RELEASES = os.path.join(APPS, "asgi_releases")
UPLOAD = os.urandom(10 * 1024 * 1024)
UPLOAD_SHA = hashlib.sha256(UPLOAD).hexdigest()

# name: (chdir, app, settings); starlette and fastapi use interface = auto
APP_SPECS = {
    "raw": ("asgi_raw", "app:application",
            {"interface": "asgi", "limit_request_body": 20000000,
             "header_timeout": 2}),
    "starlette": ("starlette_app", "app:app", {}),
    "fastapi": ("fastapi_app", "app:app", {}),
}
ALL = ["raw", "starlette", "fastapi"]


@pytest.fixture(scope="module")
def servers(narwhal_module):
    """servers(name): a running master for that app, shared by the module."""
    started = {}

    def get(name):
        if name not in started:
            chdir, app, settings = APP_SPECS[name]
            n = narwhal_module(start=False, app=app, chdir=chdir,
                               settings=settings)
            n.settings["accesslog"] = os.path.join(n.dir, "access.log")
            n.config_text = n.render_config()
            n.start()
            started[name] = n
        return started[name]
    return get


def connect(n):
    sock = socket.create_connection(n.addr, timeout=T(20))
    return sock, HTTPReader(sock)


def exchange(n, method, path, headers=None, body=b""):
    sock, reader = connect(n)
    try:
        sock.sendall(build_request(method, path, headers, body))
        return reader.read_response(method)
    finally:
        sock.close()


def clear_markers(n, prefix):
    for name in os.listdir(n.marker_dir):
        if name.startswith(prefix):
            os.unlink(os.path.join(n.marker_dir, name))


def lifespan_events(n):
    path = os.path.join(n.marker_dir, "lifespan.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def booted_pids(n):
    return sorted({pid for _id, pid, _gen, state, _rest in n.worker_events()
                   if state == "booted"})


# --- every framework ----------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_json_endpoint(servers, name):
    n = servers(name)
    r = n.get("/json")
    assert r.status == 200, r
    assert r.header("content-type").startswith("application/json")
    body = json.loads(r.body)
    assert body["pid"] in booted_pids(n)
    if name != "raw":
        assert body["framework"] == name
        r = n.get("/items/7?q=x")
        assert json.loads(r.body) == {"n": 7, "q": "x"}


def test_fastapi_validation_and_models(servers):
    n = servers("fastapi")
    r = n.request("POST", "/items",
                  body=json.dumps({"name": "nut", "price": 2.5}),
                  headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    assert json.loads(r.body) == {"name": "nut", "price": 2.5, "tags": [],
                                  "total": 5.0}
    r = n.get("/items/not-a-number")
    assert r.status == 422, r
    assert json.loads(r.body)["detail"][0]["loc"] == ["path", "n"]


def test_interface_auto_detects_fastapi(servers):
    n = servers("fastapi")
    assert "interface" not in n.settings
    r = n.get("/")
    assert (r.status, r.body) == (200, b"hello from fastapi\n")


@pytest.mark.parametrize("name", ALL)
def test_streaming_response_is_chunked(servers, name):
    n = servers(name)
    r = exchange(n, "GET", "/stream?n=5")
    assert r.status == 200, r
    assert r.header("transfer-encoding") == "chunked"
    assert r.header("content-length") is None
    lines = r.body.decode().splitlines()
    assert len(lines) == 5 and lines[0].endswith("0") and \
        lines[4].endswith("4"), r.body


@pytest.mark.parametrize("chunked", [False, True],
                         ids=["content-length", "chunked"])
@pytest.mark.parametrize("name", ALL)
def test_upload_10mb(servers, name, chunked):
    n = servers(name)
    sock, reader = connect(n)
    try:
        if chunked:
            step = 256 * 1024
            body = b"".join(b"%x\r\n%s\r\n" % (len(UPLOAD[i:i + step]),
                                             UPLOAD[i:i + step])
                            for i in range(0, len(UPLOAD), step))
            head = build_request("POST", "/upload",
                                 [("Transfer-Encoding", "chunked")])
            sock.sendall(head + body + b"0\r\n\r\n")
        else:
            sock.sendall(build_request("POST", "/upload", body=UPLOAD))
        r = reader.read_response()
    finally:
        sock.close()
    assert r.status == 200, r
    got = json.loads(r.body)
    assert (got["size"], got["sha256"]) == (len(UPLOAD), UPLOAD_SHA)
    if name == "raw":
        # streamed to receive() in pieces, not handed over whole
        assert got["messages"] > 10, got


@pytest.mark.parametrize("name", ALL)
def test_client_disconnect_seen_by_app(servers, name):
    n = servers(name)
    clear_markers(n, "disconnect-")
    sock, reader = connect(n)
    if name == "raw":
        # the app reads the body, then waits for http.disconnect
        sock.sendall(build_request("POST", "/disconnect", body=b"abc"))
        expected = "http.disconnect"
    elif name == "starlette":
        # an endless StreamingResponse: it stops when the client leaves
        sock.sendall(build_request("GET", "/forever"))
        assert reader.readline().startswith(b"HTTP/1.1 200")
        expected = "stream closed"
    else:
        # request.is_disconnected(), polled by the endpoint
        sock.sendall(build_request("GET", "/wait-disconnect"))
        expected = "is_disconnected"
    time.sleep(0.3)
    sock.close()
    found = wait_until(
        lambda: [m for m in os.listdir(n.marker_dir)
                 if m.startswith("disconnect-")], 10,
        what="the app noticing the disconnect")
    with open(os.path.join(n.marker_dir, found[0])) as f:
        assert f.read() == expected
    assert exchange(n, "GET", "/").status == 200


@pytest.mark.parametrize("name,status", [("raw", 500), ("starlette", 403),
                                         ("fastapi", 403)])
def test_websocket_upgrade_without_a_route_is_refused(servers, name, status):
    """These apps have no WebSocket route (test_websocket.py has the apps
    that do): the raw one raises on the scope (500), Starlette's router
    closes before accepting (403). Either way no 101, and the close."""
    n = servers(name)
    data = build_request("GET", "/", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13")])
    out, closed = raw_exchange(n.addr, data, timeout=5)
    assert status_of(out) == status, out
    assert closed


@pytest.mark.parametrize("name", ALL)
def test_lifespan_state_reaches_requests(servers, name):
    n = servers(name)
    sock, reader = connect(n)
    try:
        sock.sendall(build_request("GET", "/pid") +
                     build_request("GET", "/state"))
        pid = int(reader.read_response().body)
        state = json.loads(reader.read_response().body)
    finally:
        sock.close()
    assert state == {"started_by": pid}


# --- the protocol, with the raw app -------------------------------------------

def test_keepalive_and_pipelining_in_order(servers):
    n = servers("raw")
    sock, reader = connect(n)
    try:
        batch = []
        for i in range(10):
            batch += [("GET", "/json", b""), ("GET", "/stream?n=2", b""),
                      ("POST", "/echo", b"body %d" % i)]
        sock.sendall(b"".join(build_request(m, p, body=b)
                              for m, p, b in batch))
        for m, p, b in batch:
            r = reader.read_response()
            assert r.status == 200, (p, r)
            if p == "/echo":
                assert r.body == b
            elif p == "/stream?n=2":
                assert r.body == b"chunk 0\nchunk 1\n"
        # and the connection is still good for more, one at a time
        for i in range(50):
            sock.sendall(build_request("POST", "/echo", body=b"x" * i))
            assert reader.read_response().body == b"x" * i
    finally:
        sock.close()


def test_scope(servers):
    n = servers("raw")
    r = exchange(n, "GET", "/scope/a%20b/%C3%A9?x=1&y=%20",
                 [("X-Custom", "Value"), ("User-Agent", "scope-test")])
    scope = json.loads(r.body)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert (scope["http_version"], scope["method"]) == ("1.1", "GET")
    assert scope["path"] == "/scope/a b/\u00e9"
    assert scope["raw_path"] == "/scope/a%20b/%C3%A9"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["scheme"] == "http"
    assert ["x-custom", "Value"] in scope["headers"]
    assert ["user-agent", "scope-test"] in scope["headers"]
    assert scope["server"] == [n.host, n.port]
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    # a proxy on this host may say the client spoke HTTPS (gunicorn's rule)
    r = exchange(n, "GET", "/scope", [("X-Forwarded-Proto", "https")])
    assert json.loads(r.body)["scheme"] == "https"


def test_plain_asyncio_loop_and_root_path(narwhal):
    n = narwhal(app="app:application", chdir="asgi_raw",
                settings={"interface": "asgi", "asyncio_loop": "asyncio",
                          "workers": 1},
                env={"SCRIPT_NAME": "/app"})
    scope = json.loads(exchange(n, "GET", "/app/scope?q=1").body)
    assert scope["root_path"] == "/app"
    assert scope["path"] == "/scope" and scope["raw_path"] == "/app/scope"
    assert exchange(n, "GET", "/app/stream?n=3").body == \
        b"chunk 0\nchunk 1\nchunk 2\n"
    r = exchange(n, "POST", "/app/upload", body=UPLOAD[:1000000])
    assert json.loads(r.body)["sha256"] == \
        hashlib.sha256(UPLOAD[:1000000]).hexdigest()
    pid = n.worker_pids()[0]
    with open("/proc/%d/maps" % pid) as f:
        assert "uvloop" not in f.read()


def test_http10_and_head(servers):
    n = servers("raw")
    out, closed = raw_exchange(n.addr, b"GET /stream?n=2 HTTP/1.0\r\n\r\n")
    assert closed and status_of(out) == 200
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == b"chunk 0\nchunk 1\n"
    r = exchange(n, "HEAD", "/json")
    assert r.status == 200 and r.body == b""
    assert int(r.header("content-length")) > 0


def test_expect_100_continue(servers):
    n = servers("raw")
    sock, reader = connect(n)
    try:
        sock.sendall(build_request("POST", "/echo", [
            ("Expect", "100-continue"), ("Content-Length", "5")]))
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(b"hello")
        r = reader.read_response()
        assert (r.status, r.body) == (200, b"hello")
    finally:
        sock.close()


def test_unread_body_closes_after_the_answer(servers):
    n = servers("raw")
    sock, reader = connect(n)
    try:
        sock.sendall(build_request("POST", "/nope",
                                   [("Content-Length", str(len(UPLOAD)))]))
        sock.sendall(UPLOAD[:1024 * 1024])
        r = reader.read_response()
        assert r.status == 404 and r.body == b"not found\n"
        assert reader.read_to_eof() == b""
    finally:
        sock.close()


@pytest.mark.parametrize("path,status", [
    ("/error", 500), ("/no-response", 500)])
def test_app_failure_before_the_response_is_500(servers, path, status):
    n = servers("raw")
    out, closed = raw_exchange(n.addr, build_request("GET", path))
    assert status_of(out) == status and closed, out
    n.wait_for_log(r"Exception in ASGI application \(GET /error HTTP/1\.1\)"
                   if path == "/error" else
                   r"ASGI callable returned without starting response "
                   r"\(GET /no-response HTTP/1\.1\)")
    if path == "/error":
        n.wait_for_log(r"RuntimeError: raw app: boom before the response")
    assert exchange(n, "GET", "/").status == 200


def test_app_failure_mid_stream_closes_the_connection(servers):
    n = servers("raw")
    out, closed = raw_exchange(n.addr, build_request("GET", "/error-after"))
    assert status_of(out) == 200 and closed
    assert out.endswith(b"partial\n\r\n"), out  # no terminating chunk
    n.wait_for_log(r"RuntimeError: raw app: boom in the middle")


# Malformed requests: test_malformed.py runs its one table against ASGI too.


def test_broken_chunked_body_is_refused_before_the_app_runs(servers):
    """A chunked body that breaks the rules in the bytes that came with the
    head is answered 400 before the app is called, as with WSGI. One that
    breaks later, once the app runs, is still a 400 (nothing was answered
    yet) and the app sees http.disconnect (worker-shim/README.md)."""
    n = servers("raw")
    head = build_request("POST", "/disconnect",
                         [("Transfer-Encoding", "chunked")])
    ran = r"Exception in ASGI application \(POST /disconnect HTTP/1\.1\)"
    mark = n.mark()
    out, closed = raw_exchange(n.addr, head + b"5\r\nhello\r\nzz\r\n",
                               timeout=5)
    assert status_of(out) == 400 and closed, out
    assert exchange(n, "GET", "/").status == 200
    time.sleep(T(0.5))
    assert not n.find_logs(ran, since=mark), "the app ran"

    sock = socket.create_connection(n.addr, timeout=T(10))
    try:
        sock.sendall(head + b"5\r\nhello\r\n")
        time.sleep(T(0.5))  # the app runs, and waits for the rest
        sock.sendall(b"zz\r\n")
        out = HTTPReader(sock).read_to_eof()
    finally:
        sock.close()
    assert status_of(out) == 400, out
    n.wait_for_log(ran, 10, since=mark)


def test_idle_keepalive_connection_is_closed_on_time(servers):
    n = servers("raw")  # keepalive = 2 (the default)
    sock, reader = connect(n)
    try:
        # the app takes a while: the idle time counts from its answer
        sock.sendall(build_request("GET", "/sleep?s=1"))
        r = reader.read_response()
        assert r.status == 200 and r.header("connection") is None
        t0 = time.monotonic()
        assert reader.read_to_eof() == b""
        assert T(1.5) <= time.monotonic() - t0 < T(3.5)
    finally:
        sock.close()


def test_header_timeout(servers):
    n = servers("raw")  # header_timeout = 2
    t0 = time.monotonic()
    out, closed = raw_exchange(n.addr, b"GET / HTTP/1.1\r\nHost", timeout=8)
    assert status_of(out) == 408 and closed, out
    assert T(1.5) <= time.monotonic() - t0 < T(5)


def test_access_log(servers):
    n = servers("raw")
    r = exchange(n, "GET", "/json?x=1", [("User-Agent", "asgi-test/1"),
                                         ("Referer", "http://ref/")])
    assert r.status == 200
    path = os.path.join(n.dir, "access.log")
    rx = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d '
                    r'[+-]\d{4}\] "GET /json\?x=1 HTTP/1\.1" 200 %d '
                    r'"http://ref/" "asgi-test/1"$' % len(r.body), re.M)

    def logged():
        with open(path) as f:
            return rx.search(f.read())
    wait_until(logged, 5, what="the access log line")


def test_usr1_reopens_the_access_log(narwhal):
    pre = narwhal(start=False)
    path = os.path.join(pre.dir, "access.log")
    n = narwhal(app="app:application", chdir="asgi_raw",
                settings={"interface": "asgi", "accesslog": path})

    def lines_with(p, word):
        try:
            with open(p) as f:
                return [line for line in f if word in line]
        except FileNotFoundError:
            return []
    for i in range(4):
        n.get("/?before=%d" % i, headers={"Connection": "close"})
    wait_until(lambda: len(lines_with(path, "before=")) == 4, 10,
               what="4 lines in the access log")
    os.rename(path, path + ".1")
    n.signal(signal.SIGUSR1)

    def all_new():
        word = "w%d" % time.monotonic_ns()
        for i in range(10):
            n.get("/?%s=%d" % (word, i), headers={"Connection": "close"})
        wait_until(lambda: len(lines_with(path, word)) +
                   len(lines_with(path + ".1", word)) == 10, 5,
                   what="10 access log lines")
        return len(lines_with(path, word)) == 10
    wait_until(all_new, 20, interval=0.2, what="every worker to reopen")
    assert len(lines_with(path + ".1", "before=")) == 4
    assert n.find_logs(r"exited") == []


# --- lifespan and signals -----------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_lifespan_once_per_worker_and_graceful_term(narwhal, name):
    chdir, app, settings = APP_SPECS[name]
    n = narwhal(app=app, chdir=chdir, settings=settings)
    for _ in range(10):
        assert n.get("/json").status == 200
    slow = {}
    if name == "raw":
        # a request in flight at TERM is answered, with Connection: close
        def ask():
            slow["r"] = exchange(n, "GET", "/sleep?s=1.5")
        t = threading.Thread(target=ask)
        t.start()
        time.sleep(0.4)
    n.signal(15)
    assert n.wait_exit(30) == 0
    if slow:
        t.join(T(10))
        assert slow["r"].status == 200 and slow["r"].body == b"slept\n"
        assert slow["r"].header("connection") == "close"
    pids = booted_pids(n)
    assert len(pids) == 2
    events = lifespan_events(n)
    for pid in pids:
        mine = [e[1] for e in events if int(e[0]) == pid]
        assert mine == ["startup", "shutdown"], (pid, events)
    assert {int(e[0]) for e in events} == set(pids), events
    assert len(n.find_logs(r"gen 1: exited with status 0$")) == 2, n.tail()


def test_request_on_idle_connection_at_stop_is_answered(narwhal):
    """As in the WSGI loop: a keep-alive connection that is idle when the
    stop begins is not closed under a request its client is sending; that
    request is answered with Connection: close."""
    n = narwhal(app="app:application", chdir="asgi_raw",
                settings={"interface": "asgi", "workers": 1,
                          "keepalive": 30, "graceful_timeout": 15})
    sock, reader = connect(n)
    try:
        sock.sendall(build_request("GET", "/"))
        assert reader.read_response().status == 200
        slow = {}
        t = threading.Thread(target=lambda: slow.update(
            r=exchange(n, "GET", "/sleep?s=2")), daemon=True)
        t.start()
        time.sleep(0.3)
        n.signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(build_request("GET", "/pid"))
        try:
            r = reader.read_response()
        except (EOFError, ConnectionResetError) as e:
            raise AssertionError("request dropped at graceful stop: %r" % e)
        assert r.status == 200
        assert r.header("connection") == "close"
        assert reader.read_to_eof() == b""
        t.join(T(20))
        assert slow["r"].status == 200
    finally:
        sock.close()
    assert n.wait_exit(20) == 0


def test_graceful_timeout_bounds_the_drain_and_shutdown_runs(narwhal):
    n = narwhal(app="app:application", chdir="asgi_raw",
                settings={"interface": "asgi", "workers": 1,
                          "graceful_timeout": 2})
    pid = n.worker_pids()[0]
    outcome = {}

    def hang():
        try:
            outcome["r"] = exchange(n, "GET", "/sleep?s=60")
        except (OSError, EOFError, ValueError) as e:
            outcome["error"] = e
    t = threading.Thread(target=hang, daemon=True)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    n.signal(signal.SIGTERM)
    assert n.wait_exit(15) == 0
    assert time.monotonic() - t0 < T(3.5)
    t.join(T(5))
    assert "error" in outcome, outcome  # cut off, not answered
    n.wait_for_log(r"graceful_timeout \(2s\): closing 1 connections, 1 "
                   r"requests unfinished")
    n.wait_for_log(r"pid %d gen 1: exited with status 0" % pid)
    assert [e[1] for e in lifespan_events(n)] == ["startup", "shutdown"]


def test_master_gone_means_graceful_stop(narwhal):
    n = narwhal(app="app:application", chdir="asgi_raw",
                settings={"interface": "asgi"})
    pids = n.worker_pids()
    assert len(pids) == 2
    n.signal(signal.SIGKILL)  # the control socket reaches EOF
    n.wait_exit(10)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 15,
               what="orphaned workers to stop")
    events = lifespan_events(n)
    for pid in pids:
        assert [e[1] for e in events if int(e[0]) == pid] == \
            ["startup", "shutdown"], events


def test_lifespan_startup_failure_is_a_boot_failure(narwhal):
    n = narwhal(app="app:application", chdir="asgi_raw", wait=False,
                settings={"interface": "asgi", "workers": 1},
                env={"LIFESPAN": "raise"})
    n.wait_for_log(r"gen 1: exited with status 3, respawn")
    n.wait_for_log(r"stderr: RuntimeError: raw app: startup raised")
    n.wait_for_log(r"stderr: narwhal worker: lifespan startup failed")
    assert not n.find_logs(r"gen 1: booted")


def test_lifespan_failed_message_is_reported(narwhal):
    n = narwhal(app="app:application", chdir="asgi_raw", wait=False,
                settings={"interface": "asgi", "workers": 1},
                env={"LIFESPAN": "fail"})
    n.wait_for_log(r"stderr: raw app: the database is unreachable")
    n.wait_for_log(r"gen 1: exited with status 3, respawn")


def test_app_without_lifespan_support_is_served(narwhal):
    n = narwhal(app="app:application", chdir="asgi_raw",
                settings={"interface": "asgi", "workers": 1},
                env={"LIFESPAN": "unsupported"})
    n.wait_for_log(r"ASGI 'lifespan' protocol appears unsupported "
                   r"\(ValueError: this app only speaks http\)")
    assert n.get("/").body == b"hello\n"
    assert n.get("/state").body == b"{}"


def test_blocked_event_loop_trips_the_watchdog(narwhal):
    n = narwhal(app="app:application", chdir="asgi_raw",
                settings={"interface": "asgi", "timeout": 3})
    before = booted_pids(n)

    def block():
        try:
            exchange(n, "GET", "/block?s=60")
        except (OSError, EOFError, ValueError):
            pass  # the worker is killed under it
    threading.Thread(target=block, daemon=True).start()
    m = n.wait_for_log(r"worker (\d+) pid (\d+) gen 1: stopping \(no "
                       r"heartbeat for 3s, SIGABRT\)", 15)
    hung = int(m.group(2))
    assert hung in before
    # faulthandler's dump names the line that blocks the loop
    n.wait_for_log(r'stderr:   File ".*/asgi_raw/app\.py", line \d+ in '
                   r'application')
    n.wait_for_log(r"pid %d gen 1: exited on signal 6" % hung, 10)
    n.wait_for_log(r"worker %s pid \d+ gen 1: live" % m.group(1), 15,
                   since=0)
    wait_until(lambda: len(n.worker_pids()) == 2 and
               hung not in n.worker_pids(), 15, what="a replacement")
    for _ in range(5):
        assert n.get("/", headers={"Connection": "close"}).status == 200


def test_uvicorn_worker_class_flag_serves_asgi(narwhal):
    # app:wrapped hides its coroutine behind a plain __call__: only the
    # flag (not auto-detection) makes it ASGI
    n = narwhal(app="app:wrapped", chdir="asgi_raw",
                args=["-k", "uvicorn.workers.UvicornWorker"])
    r = n.get("/json")
    assert r.status == 200, r
    assert json.loads(r.body)["hello"] == "world"


# --- FastAPI deploys under load -----------------------------------------------

class AsgiDeploy(Deploy):
    """Release trees from tests/apps/asgi_releases/ instead of releases/."""

    def make_release(self, version, variant="good"):
        tree = os.path.join(self.releases, version)
        if os.path.exists(tree):
            shutil.rmtree(tree)
        os.makedirs(tree)
        for folder in ("common", variant):
            src = os.path.join(ASGI_RELEASES, folder)
            for name in os.listdir(src):
                if name.endswith(".py"):
                    shutil.copy(os.path.join(src, name), tree)
        with open(os.path.join(tree, "VERSION"), "w") as f:
            f.write(version + "\n")
        return tree


FASTAPI_DEPLOY = {"app": "app:app", "ready_path": "/health/ready",
                  "boot_timeout": "%g" % T(15)}


def test_fastapi_reload_v1_to_v2_under_load(narwhal):
    d = AsgiDeploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2")
    d.flip("v1")
    n = start_master(narwhal, d, FASTAPI_DEPLOY)
    v1_pids = booted_pids(n)
    with Client(n.addr) as client:
        client.wait_requests(100)
        d.flip("v2")
        r = reload_wait(n, timeout=60)
        assert r.returncode == 0, r
        wait_settled(n, 2, 2)
        settled_at = time.monotonic()
        client.wait_requests(200)
        client.stop()
    print(client.summary())
    assert client.failures() == [], client.summary()
    assert set(client.versions()) == {"v1", "v2"}, client.summary()
    assert set(client.versions(since=settled_at)) == {"v2"}
    # health-checked over the private socket before going live
    n.wait_for_log(r"gen 2: probing \(/health/ready\)", 5)

    # the old workers ran their lifespan shutdown when they were retired
    def v1_shut_down():
        events = lifespan_events(n)
        return all([e[2] for e in events if int(e[0]) == pid] ==
                   ["startup", "shutdown"] for pid in v1_pids)
    wait_until(v1_shut_down, 15, what="v1 lifespan shutdowns")


def test_fastapi_bad_reload_rolls_back_under_load(narwhal):
    d = AsgiDeploy(narwhal.workdir())
    d.make_release("v1")
    d.make_release("v2", "startup_fails")
    d.flip("v1")
    n = start_master(narwhal, d, dict(FASTAPI_DEPLOY, boot_retries=0))
    before = status(n)
    with Client(n.addr) as client:
        client.wait_requests(100)
        d.flip("v2")
        r = reload_wait(n, timeout=60)
        wait_settled(n, 1, 2)
        client.wait_requests(200)
        client.stop()
    print(r)
    print(client.summary())
    assert r.returncode == 4, r
    assert re.search(r"^result: rolled-back generation 2 failed: ", r.stdout,
                     re.M), r
    assert "release v2: the database is unreachable" in r.stdout, r
    assert re.search(r"exited with status 3 while spawned", r.stdout), r
    assert d.link() == os.path.join("releases", "v1")
    assert client.failures() == [], client.summary()
    assert set(client.versions()) == {"v1"}, client.summary()
    after = status(n)
    assert sorted(w["pid"] for w in after["workers"]) == \
        sorted(w["pid"] for w in before["workers"])


def test_fastapi_recycling_under_load(narwhal):
    d = AsgiDeploy(narwhal.workdir())
    d.make_release("v1")
    d.flip("v1")
    n = start_master(narwhal, d, dict(FASTAPI_DEPLOY, max_requests=50,
                                      max_requests_jitter=10))
    retired = r"worker \d+ pid (\d+) gen 1: retiring \(max_requests " \
              r"(\d+) reached\)"
    with Client(n.addr) as client:
        wait_until(lambda: len(n.find_logs(retired)) >= 4, 30, interval=0.1,
                   what="4 workers recycled for max_requests")
        client.stop()
    print(client.summary())
    assert client.failures() == [], client.summary()
    assert all(50 <= int(m.group(2)) <= 60 for m in n.find_logs(retired))
    # a retired worker ran its lifespan shutdown on the way out
    first = int(n.find_logs(retired)[0].group(1))
    wait_until(lambda: [e[2] for e in lifespan_events(n)
                        if int(e[0]) == first] == ["startup", "shutdown"],
               15, what="lifespan shutdown of a recycled worker")
