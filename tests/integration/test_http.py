"""HTTP/1.1 through the worker's C core: streaming, bodies, keep-alive,
pipelining, concurrency. One server (2 workers) for the whole module."""

import hashlib
import http.client
import json
import os
import re
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (APPS, HTTPReader, T, build_request, raw_exchange,
                      status_of, wait_until)

EXPECTED_STREAM = b"".join(b"chunk %d\n" % i for i in range(5))


@pytest.fixture(scope="module")
def srv(narwhal_module):
    return narwhal_module(settings={"workers": 2, "keepalive": 5})


def connect(n, timeout=20):
    s = socket.create_connection(n.addr, timeout=T(timeout))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def marker(n, name):
    return os.path.join(n.marker_dir, name)


# --- streaming --------------------------------------------------------------

def test_streaming_response_is_chunked_and_closed(srv):
    ident = uuid.uuid4().hex
    with connect(srv) as s:
        s.sendall(build_request("GET", "/stream?n=5&delay=0.05&id=" + ident))
        r = HTTPReader(s).read_response()
    assert r.status == 200
    assert r.body == EXPECTED_STREAM
    # HTTP/1.1 and no Content-Length from the app: chunked framing
    assert (r.header("Transfer-Encoding") or "").lower() == "chunked"
    assert r.header("Content-Length") is None
    wait_until(lambda: os.path.exists(marker(srv, ident + ".closed")), 10,
               what="the iterable's close() to be called")
    assert os.path.exists(marker(srv, ident + ".exhausted"))


def test_streaming_http10_is_close_delimited(srv):
    ident = uuid.uuid4().hex
    data, closed = raw_exchange(
        srv.addr, build_request("GET", "/stream?n=5&id=" + ident,
                                version="HTTP/1.0"))
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert status_of(data) == 200, data[:200]
    assert b"chunked" not in head.lower()
    assert body == EXPECTED_STREAM
    wait_until(lambda: os.path.exists(marker(srv, ident + ".closed")), 10,
               what="close() after an HTTP/1.0 stream")


def test_streaming_close_called_when_client_goes_away(srv):
    ident = uuid.uuid4().hex
    s = connect(srv)
    try:
        s.sendall(build_request("GET", "/stream?n=100000&delay=0.01&id=" + ident))
        got = b""
        while b"chunk 0" not in got:
            data = s.recv(4096)
            assert data, "closed before the first chunk"
            got += data
    finally:
        s.close()
    wait_until(lambda: os.path.exists(marker(srv, ident + ".closed")), 20,
               what="close() after the client disconnected mid-stream")
    assert not os.path.exists(marker(srv, ident + ".exhausted"))
    assert srv.get("/").status == 200


def test_write_callable(srv):
    r = srv.get("/write")
    assert r.status == 200
    assert r.body == b"written by write()\nand returned\n"


def test_file_wrapper(srv):
    with open(os.path.join(APPS, "wsgi_basic", "app.py"), "rb") as f:
        expected = f.read()
    r = srv.get("/file")
    assert r.status == 200
    assert r.body == expected
    assert r.header("Content-Length") == str(len(expected))


def test_large_response(srv):
    n = 8 << 20
    r = srv.get("/big?n=%d" % n)
    assert r.status == 200
    pattern = b"0123456789abcdef" * 4096
    expected = (pattern * (n // len(pattern) + 1))[:n]
    assert len(r.body) == n
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(expected).digest()


def test_head_has_no_body(srv):
    with connect(srv) as s:
        rd = HTTPReader(s)
        s.sendall(build_request("HEAD", "/"))
        r = rd.read_response(method="HEAD")
        assert r.status == 200
        assert r.header("Content-Length") == "14"
        # the next answer on the connection starts right away: no body leaked
        s.sendall(build_request("GET", "/pid"))
        r = rd.read_response()
        assert r.status == 200 and r.body.isdigit()


def test_app_exception_is_500_and_worker_survives(srv):
    mark = srv.mark()
    pids = srv.worker_pids()
    r = srv.get("/error")
    assert r.status == 500
    assert b"boom" not in r.body  # no traceback to the client
    for _ in range(6):
        assert srv.get("/").status == 200
    assert srv.worker_pids() == pids
    assert not srv.find_logs(r"exited", since=mark)


def test_exception_after_headers_aborts_response(srv):
    with connect(srv) as s:
        s.sendall(build_request("GET", "/error-after"))
        rd = HTTPReader(s)
        with pytest.raises((EOFError, ConnectionResetError, ValueError)):
            r = rd.read_response()
            # a complete, well-framed response would hide the failure
            raise AssertionError("complete response despite the error: %r"
                                 % (r.body,))
    assert srv.get("/").status == 200


def test_status_codes_pass_through(srv):
    for code in (201, 204, 301, 404, 418, 503):
        r = srv.get("/status?code=%d" % code)
        assert r.status == code


# --- request bodies -----------------------------------------------------------

def test_chunked_upload_10mb_echoed_intact(srv):
    payload = os.urandom(10 << 20)

    def chunks():
        view = memoryview(payload)
        sizes = (1, 7, 65536, 4093, 1 << 20)
        i = k = 0
        while i < len(payload):
            step = sizes[k % len(sizes)]
            yield bytes(view[i:i + step])
            i += step
            k += 1

    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=T(60))
    try:
        conn.request("POST", "/echo", body=chunks(), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked",
                              "Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 200
    assert len(body) == len(payload)
    assert hashlib.sha256(body).hexdigest() == \
        hashlib.sha256(payload).hexdigest()


def test_content_length_upload_10mb(srv):
    payload = os.urandom(10 << 20)
    r = srv.request("POST", "/sha256", body=payload, timeout=60)
    assert r.status == 200
    assert json.loads(r.body) == {
        "sha256": hashlib.sha256(payload).hexdigest(), "length": len(payload)}


def test_chunked_extensions_and_trailers(srv):
    body = (b"5;name=value\r\nhello\r\n"
            b"1\r\n \r\n"
            b"A;x=\"q\"\r\n0123456789\r\n"
            b"0\r\nX-Trailer: yes\r\n\r\n")
    req = build_request("POST", "/echo", headers=[
        ("Transfer-Encoding", "chunked")]) + body
    with connect(srv) as s:
        s.sendall(req)
        r = HTTPReader(s).read_response()
    assert (r.status, r.body) == (200, b"hello 0123456789")


def test_chunked_upload_sent_slowly(srv):
    """The body arrives in pieces across many reads."""
    with connect(srv) as s:
        s.sendall(build_request("POST", "/echo",
                                headers=[("Transfer-Encoding", "chunked")]))
        for piece in (b"5\r", b"\nwh", b"al", b"e\r\n", b"0", b"\r\n", b"\r\n"):
            time.sleep(0.02)
            s.sendall(piece)
        r = HTTPReader(s).read_response()
    assert (r.status, r.body) == (200, b"whale")


def test_expect_100_continue(srv):
    body = b"z" * 100000
    with connect(srv) as s:
        s.sendall(build_request("POST", "/echo", headers=[
            ("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        s.settimeout(T(2))
        interim = b""
        try:
            interim = s.recv(4096)
        except socket.timeout:
            pass  # a server need not send 100 Continue; curl goes on too
        if interim:
            assert interim.startswith(b"HTTP/1.1 100"), interim
        s.settimeout(T(20))
        s.sendall(body)
        rd = HTTPReader(s)
        if interim:
            # whatever followed the interim answer is the start of the final one
            rd.buf = interim.partition(b"\r\n\r\n")[2]
        r = rd.read_response()
    assert (r.status, r.body) == (200, body)


# --- connections ------------------------------------------------------------

def test_keepalive_many_requests_one_connection(srv):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=T(20))
    try:
        conn.connect()
        local = conn.sock.getsockname()
        pids = set()
        for i in range(10):
            if i % 2:
                body = ("request %d" % i).encode() * 100
                conn.request("POST", "/echo", body=body)
                r = conn.getresponse()
                assert (r.status, r.read()) == (200, body)
            else:
                conn.request("GET", "/pid")
                r = conn.getresponse()
                assert r.status == 200
                pids.add(int(r.read()))
            assert not r.will_close, "server closed a keep-alive connection"
            assert conn.sock is not None and conn.sock.getsockname() == local
        assert len(pids) == 1, "one connection, one worker"
    finally:
        conn.close()


def test_http10_keepalive(srv):
    with connect(srv) as s:
        rd = HTTPReader(s)
        for _ in range(3):
            s.sendall(build_request("GET", "/", version="HTTP/1.0",
                                    headers=[("Connection", "keep-alive")]))
            r = rd.read_response()
            assert (r.status, r.body) == (200, b"Hello, world!\n")
            assert (r.header("Connection") or "").lower() == "keep-alive"


def test_connection_close_is_honoured(srv):
    data, closed = raw_exchange(
        srv.addr, build_request("GET", "/", headers=[("Connection", "close")]))
    assert closed, "server kept a `Connection: close` connection open"
    assert status_of(data) == 200
    assert data.endswith(b"Hello, world!\n")


@pytest.mark.parametrize("who", ["app", "client"])
def test_closing_answer_arrives_whole_despite_a_late_request(srv, who):
    """The connection ends after a big answer, and the client sends another
    request while the answer is still in the worker's send queue. Closing
    with unread input makes the kernel send a reset, which throws away the
    unsent tail; so the worker shuts down its side and drains first. When the
    client itself asked to close, a request after that is its own bug (the
    reset is allowed), but the answer must still arrive whole when nothing
    comes after it."""
    n = 4 << 20
    if who == "app":
        req = build_request("GET", "/big?close=1&n=%d" % n)
    else:
        req = build_request("GET", "/big?n=%d" % n,
                            headers=[("Connection", "close")])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small window keeps most of the answer in the worker's send queue
    # when it is done writing.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(T(20))
    with s:
        s.connect(srv.addr)
        s.sendall(req)
        time.sleep(0.3)  # the worker writes what fits, then finishes
        if who == "app":
            s.sendall(build_request("GET", "/"))  # pipelined, but late
        received = b""
        while True:
            chunk = s.recv(1 << 16)  # a reset fails the test here
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert status_of(head) == 200
    assert len(body) == n, "the answer lost its tail: %d of %d bytes" % (
        len(body), n)


def test_http10_closes_by_default(srv):
    data, closed = raw_exchange(srv.addr,
                                build_request("GET", "/", version="HTTP/1.0"))
    assert closed
    assert data.startswith(b"HTTP/1.")
    assert data.endswith(b"Hello, world!\n")


def test_pipelining_answers_in_order(srv):
    chunked_body = b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    reqs = [
        build_request("GET", "/"),
        build_request("POST", "/echo", body=b"first body"),
        build_request("GET", "/environ?i=2"),
        build_request("POST", "/echo",
                      headers=[("Transfer-Encoding", "chunked")]) + chunked_body,
        build_request("HEAD", "/"),
        build_request("GET", "/stream?n=5&id=" + uuid.uuid4().hex),
        build_request("GET", "/environ?i=6", headers=[("Connection", "close")]),
    ]
    with connect(srv) as s:
        s.sendall(b"".join(reqs))
        rd = HTTPReader(s)
        r = rd.read_response()
        assert (r.status, r.body) == (200, b"Hello, world!\n")
        r = rd.read_response()
        assert (r.status, r.body) == (200, b"first body")
        r = rd.read_response()
        assert json.loads(r.body)["QUERY_STRING"] == "i=2"
        r = rd.read_response()
        assert (r.status, r.body) == (200, b"abcdefg")
        r = rd.read_response(method="HEAD")
        assert (r.status, r.body) == (200, b"")
        r = rd.read_response()
        assert (r.status, r.body) == (200, EXPECTED_STREAM)
        r = rd.read_response()
        assert json.loads(r.body)["QUERY_STRING"] == "i=6"
        assert rd.read_to_eof() == b"", "bytes after the last answer"


def test_pipelining_fifty_requests(srv):
    with connect(srv) as s:
        s.sendall(b"".join(build_request("GET", "/environ?i=%d" % i)
                           for i in range(50)))
        rd = HTTPReader(s)
        for i in range(50):
            r = rd.read_response()
            assert r.status == 200
            assert json.loads(r.body)["QUERY_STRING"] == "i=%d" % i


def test_fifty_concurrent_clients(srv):
    clients = 50
    barrier = threading.Barrier(clients, timeout=T(30))

    def client(i):
        body = os.urandom(1000 + i * 997)
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=T(60))
        try:
            conn.connect()
            barrier.wait()
            conn.request("POST", "/echo", body=body)
            r = conn.getresponse()
            got = (r.status, r.read())
            conn.request("GET", "/environ?client=%d" % i)
            r = conn.getresponse()
            env = json.loads(r.read())
            return got == (200, body) and env["QUERY_STRING"] == "client=%d" % i
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(client, range(clients), timeout=T(120)))
    assert results == [True] * clients
    # and it still serves afterwards
    assert srv.get("/").status == 200


# --- the request line and headers, as the app sees them -----------------------

def test_path_info_is_decoded_and_raw_uri_kept(srv):
    r = srv.get("/p/a%20b/%7Ecaf%C3%A9?x=%20y&z")
    assert r.status == 200
    env = json.loads(r.body)
    # PEP 3333: url-decoded, bytes as latin-1
    assert env["PATH_INFO"] == "/p/a b/~caf\u00c3\u00a9"
    assert env["QUERY_STRING"] == "x=%20y&z"
    if env["RAW_URI"] is not None:
        assert env["RAW_URI"] == "/p/a%20b/%7Ecaf%C3%A9?x=%20y&z"


def test_absolute_form_request_target(srv):
    with connect(srv) as s:
        s.sendall(build_request("GET", "http://example.test/p/abs?q=1"))
        r = HTTPReader(s).read_response()
    assert r.status == 200
    env = json.loads(r.body)
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/p/abs", "q=1")


def test_repeated_headers_are_joined(srv):
    with connect(srv) as s:
        s.sendall(build_request("GET", "/headers", headers=[
            ("X-Multi", "a"), ("X-Multi", "b"), ("x-multi", "c")]))
        r = HTTPReader(s).read_response()
    joined = json.loads(r.body)["HTTP_X_MULTI"]
    # "a,b,c" (gunicorn) or "a, b, c": the same list
    assert [v.strip() for v in joined.split(",")] == ["a", "b", "c"]


def test_wsgi_input_iteration_and_readline(srv):
    body = b"one\ntwo\nthree\nno newline at the end"
    r = srv.request("POST", "/lines", body=body)
    assert (r.status, r.body) == (200, b"4")
    r = srv.request("POST", "/readline", body=body)
    assert json.loads(r.body) == {"first": "one\n",
                                  "rest": "two\nthree\nno newline at the end"}
    r = srv.request("POST", "/readline?size=2", body=body)
    assert json.loads(r.body)["first"] == "on"
    # chunked input, same answers
    with connect(srv) as s:
        s.sendall(build_request("POST", "/lines",
                                headers=[("Transfer-Encoding", "chunked")]) +
                  b"5\r\none\nt\r\n8\r\nwo\nthree\r\n0\r\n\r\n")
        r = HTTPReader(s).read_response()
    assert r.body == b"3"  # one, two, three: lines span chunks


def test_empty_bodies(srv):
    r = srv.request("POST", "/echo", body=b"")
    assert (r.status, r.body) == (200, b"")
    with connect(srv) as s:
        s.sendall(build_request("POST", "/echo",
                                headers=[("Transfer-Encoding", "chunked")]) +
                  b"0\r\n\r\n")
        r = HTTPReader(s).read_response()
    assert (r.status, r.body) == (200, b"")


def test_app_bugs_are_500_and_worker_survives(srv):
    mark = srv.mark()
    for path in ("/bad-body", "/no-start"):
        with connect(srv) as s:
            s.sendall(build_request("GET", path))
            r = HTTPReader(s).read_response()
        assert r.status == 500, path
    assert srv.get("/").status == 200
    assert not srv.find_logs(r"exited", since=mark)


@pytest.mark.parametrize("kind,message", [
    ("name", "invalid header name 'X Bad'"),
    ("value", "invalid value for header 'X-Bad'"),
    ("cl", "invalid Content-Length '12abc'")])
def test_refused_response_header_is_500_naming_it(srv, kind, message):
    """A header that would break the framing (a space in a name, CR LF in a
    value, a bad Content-Length) never reaches the client."""
    mark = srv.mark()
    with connect(srv) as s:
        s.sendall(build_request("GET", "/bad-header?kind=" + kind))
        r = HTTPReader(s).read_response()
    assert r.status == 500, kind
    assert b"X-Evil" not in r.body and r.header("X-Evil") is None
    srv.wait_for_log(r"ValueError: " + re.escape(message), 10, since=mark)
    assert srv.get("/").status == 200


def test_many_idle_connections(srv):
    """200 connections open at once, then a request on each."""
    socks = []
    try:
        for _ in range(200):
            socks.append(connect(srv))
        for i, s in enumerate(socks):
            s.sendall(build_request("GET", "/environ?c=%d" % i))
        for i, s in enumerate(socks):
            r = HTTPReader(s).read_response()
            assert json.loads(r.body)["QUERY_STRING"] == "c=%d" % i
    finally:
        for s in socks:
            s.close()


def test_server_500_has_a_date_and_its_size_in_the_access_log(narwhal):
    """The 500 the server answers for a failed app is a real response: it
    has a Date, and the access log records its body size (22 bytes:
    "Internal Server Error\\n"), not 0."""
    pre = narwhal(start=False)
    path = os.path.join(pre.dir, "access.log")
    n = narwhal(settings={"workers": 1, "accesslog": path})
    word = uuid.uuid4().hex
    r = n.get("/error?w=" + word)
    assert r.status == 500
    assert r.body == b"Internal Server Error\n"
    assert r.header("Date")

    def logged():
        try:
            with open(path) as f:
                return [l for l in f.read().splitlines() if word in l]
        except FileNotFoundError:
            return []
    lines = wait_until(logged, 10, what="the access log line")
    assert len(lines) == 1
    assert lines[0].split('"')[2].split() == ["500", "22"], lines[0]
