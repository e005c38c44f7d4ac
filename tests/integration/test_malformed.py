"""Bad input never kills a worker: malformed and oversized requests, each
answered with a 4xx status line, and the same worker serving afterwards.

Every test runs against a WSGI worker and an ASGI worker (one table of
cases, one engine under both). One worker each, so "the worker pid is
unchanged" means the one process survived every case. Limits are set
explicitly so the cases do not depend on defaults. Many cases come from
gunicorn's tests/requests/invalid corpus (read for its cases).
"""

import re
import socket
import threading
import time

import pytest

from conftest import T, build_request, raw_exchange, status_of

LIMIT_LINE = 4094
LIMIT_FIELDS = 100
LIMIT_FIELD_SIZE = 8190
LIMIT_BODY = 65536

ANY_4XX = tuple(range(400, 500))


def head(lines):
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


H = "Host: localhost"

# (id, request bytes, acceptable statuses). One status where the right answer
# is clear; any 4xx where servers reasonably differ.
CASES = [
    ("garbage-request-line", b"GARBAGE\r\n\r\n", (400,)),
    ("empty-method", b" / HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("bad-version", head(["GET / HTTP/1.x", H]), (400, 505)),
    ("unsupported-version", head(["GET / HTTP/3.7", H]), (400, 505)),
    ("lowercase-protocol", head(["GET / http/1.1", H]), (400, 505)),
    ("missing-version-with-headers", head(["GET /", H]), ANY_4XX),
    ("space-in-uri", head(["GET /a b HTTP/1.1", H]), (400,)),
    ("control-char-in-uri", head(["GET /a\x01b HTTP/1.1", H]), (400,)),
    ("bad-method-token", head(["G(T / HTTP/1.1", H]), ANY_4XX),
    ("request-line-too-long",
     head(["GET /" + "a" * (LIMIT_LINE + 100) + " HTTP/1.1", H]), (414,)),
    ("too-many-headers",
     head(["GET / HTTP/1.1", H] +
          ["X-H%d: v" % i for i in range(LIMIT_FIELDS + 20)]), (431,)),
    ("header-field-too-large",
     head(["GET / HTTP/1.1", H, "X-Big: " + "b" * (LIMIT_FIELD_SIZE + 100)]),
     (431,)),
    # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without
    # Host, with more than one Host, or with an invalid Host value
    ("http11-without-host", head(["GET / HTTP/1.1"]), (400,)),
    ("two-host-headers", head(["GET / HTTP/1.1", H, "Host: other"]), (400,)),
    ("invalid-host-value", head(["GET / HTTP/1.1", "Host: a b"]), (400,)),
    ("tab-in-host-value", head(["GET / HTTP/1.1", "Host: a\tb"]), (400,)),
    ("control-char-in-host", head(["GET / HTTP/1.1", "Host: a\x01b"]),
     (400,)),
    ("userinfo-in-host", head(["GET / HTTP/1.1", "Host: u@evil"]), (400,)),
    ("slash-in-host", head(["GET / HTTP/1.1", "Host: a/b"]), (400,)),
    ("two-hosts-http10",
     head(["GET / HTTP/1.0", H, "Host: other"]), (400,)),
    ("empty-plus-second-host",
     head(["GET / HTTP/1.1", "Host:", H]), (400,)),
    ("header-without-colon", head(["GET / HTTP/1.1", H, "NoColonHere"]),
     (400,)),
    ("space-before-colon", head(["GET / HTTP/1.1", "Host : localhost"]),
     (400,)),
    ("empty-header-name", head(["GET / HTTP/1.1", H, ": value"]), (400,)),
    ("nul-in-header-value", head(["GET / HTTP/1.1", H, "X-A: a\x00b"]),
     (400,)),
    ("cr-in-header-value", head(["GET / HTTP/1.1", H, "X-A: a\rb"]), (400,)),
    ("obs-fold", head(["GET / HTTP/1.1", H, "X-A: a", " folded"]), ANY_4XX),
    ("cl-and-te",
     head(["POST /echo HTTP/1.1", H, "Content-Length: 5",
           "Transfer-Encoding: chunked"]) + b"0\r\n\r\n", (400,)),
    ("te-chunked-not-last",
     head(["POST /echo HTTP/1.1", H, "Transfer-Encoding: chunked, gzip"]) +
     b"0\r\n\r\n", (400, 501)),
    ("two-different-content-lengths",
     head(["POST /echo HTTP/1.1", H, "Content-Length: 3",
           "Content-Length: 4"]) + b"abcd", (400,)),
    ("negative-content-length",
     head(["POST /echo HTTP/1.1", H, "Content-Length: -1"]), (400,)),
    ("non-numeric-content-length",
     head(["POST /echo HTTP/1.1", H, "Content-Length: abc"]), (400,)),
    ("plus-sign-content-length",
     head(["POST /echo HTTP/1.1", H, "Content-Length: +3"]) + b"abc", (400,)),
    ("huge-content-length",
     head(["POST /echo HTTP/1.1", H,
           "Content-Length: 99999999999999999999999999"]), (400, 413)),
    ("body-over-limit",
     head(["POST /echo HTTP/1.1", H, "Content-Length: %d" % (LIMIT_BODY + 1)]),
     (413,)),
    ("bad-chunk-size",
     head(["POST /echo HTTP/1.1", H, "Transfer-Encoding: chunked"]) +
     b"zz\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk-size-overflow",
     head(["POST /echo HTTP/1.1", H, "Transfer-Encoding: chunked"]) +
     b"ffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", (400, 413)),
    ("chunk-data-without-crlf",
     head(["POST /echo HTTP/1.1", H, "Transfer-Encoding: chunked"]) +
     b"5\r\nhelloXX0\r\n\r\n", (400,)),
    # bare LF and NUL, anywhere in the head
    ("bare-lf", b"GET / HTTP/1.1\nHost: x\n\n", (400,)),
    ("bare-lf-request-line", b"GET\n/\nHTTP/1.1\r\n\r\n", (400,)),
    ("bare-lf-in-value",
     b"GET / HTTP/1.1\r\nHost: x\r\nNewline: a\nContent-Length: 26\r\n"
     b"GET / HTTP/1.1\nHost: x\r\n\r\n", (400,)),
    ("nul-in-method", b"GET\x00 /foo HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("nul-in-header-name", head(["GET / HTTP/1.1", H, "ba\x00z: bar"]),
     (400,)),
    ("colon-in-method", head(["GET: /foo HTTP/1.1", H]), (400,)),
    ("non-ascii-method", head(["GET\xc3\x9f /x HTTP/1.1", H]), (400,)),
    ("non-ascii-header-name",
     head(["GET / HTTP/1.1", H, "Content-Length\xc3\x9f: 3"]), (400,)),
    ("bel-in-value", head(["GET / HTTP/1.1", H, "X-V: a\x07b"]), (400,)),
    ("del-in-value", head(["GET / HTTP/1.1", H, "X-V: a\x7fb"]), (400,)),
    # request line and target (RFC 9112 3.2)
    ("no-target", head(["GET HTTP/1.1", H]), (400,)),
    ("ftp-version", head(["GET /foo FTP/1.1", H]), (400, 505)),
    ("version-111", head(["GET /foo HTTP/111", H]), (400, 505)),
    ("version-0.99", head(["GET /foo HTTP/0.99", H]), (400, 505)),
    ("version-2.0", head(["GET /foo HTTP/2.0", H]), (400, 505)),
    ("huge-version",
     head(["GET /the/future HTTP/" + "1" * 90 + ".1", H]), (400, 505)),
    ("relative-target", head(["GET foo/bar HTTP/1.1", H]), (400,)),
    ("authority-target-not-connect",
     head(["GET example.com:443 HTTP/1.1", "Host: example.com:443"]), (400,)),
    ("broken-absolute-url", head(["PUT s://]ufd/: HTTP/1.1", H]), (400,)),
    ("absolute-url-without-host", head(["GET http:///x HTTP/1.1", H]),
     (400,)),
    ("absolute-url-with-userinfo", head(["GET http://u@h/x HTTP/1.1", H]),
     (400,)),
    ("asterisk-not-options", head(["GET * HTTP/1.1", H]), (400,)),
    # framing (smuggling shapes)
    ("space-before-colon-cl",
     head(["POST /echo HTTP/1.1", H, "Content-Length : 3"]) + b"xyz", (400,)),
    ("cl-with-a-space", head(["POST /echo HTTP/1.1", H, "Content-Length: 0 1"])
     + b"x", (400,)),
    ("cl-list-form", head(["POST /echo HTTP/1.1", H, "Content-Length: 5, 5"])
     + b"hello", (400,)),
    ("cl-minus-zero", head(["POST /echo HTTP/1.0", "Content-Length: -0"]),
     (400,)),
    ("cl-underscore", head(["POST /echo HTTP/1.0", "Content-Length: 0_1"]),
     (400,)),
    ("te-tab-chunked-with-cl",
     head(["POST /echo HTTP/1.1", H, "Content-Length: 12",
           "Transfer-Encoding: \tchunked"]) + b"5\r\nhello\r\n0\r\n\r\n",
     (400,)),
    ("te-identity-chunked-twice",
     head(["POST /echo HTTP/1.1", H,
           "Transfer-Encoding: identity, chunked, identity, chunked"]) +
     b"5\r\nhello\r\n0\r\n\r\n", (400, 501)),
    ("te-chunked-twice",
     head(["POST /echo HTTP/1.1", H, "Transfer-Encoding: chunked",
           "Transfer-Encoding: chunked"]) + b"5\r\nhello\r\n0\r\n\r\n",
     (400,)),
    ("te-chunked-in-http10",
     head(["POST /echo HTTP/1.0", "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n0\r\n\r\n", (400,)),
    ("te-chunked-then-identity",
     head(["POST /echo HTTP/1.1", H, "Transfer-Encoding: chunked",
           "Transfer-Encoding: identity"]) + b"5\r\nhello\r\n0\r\n\r\n",
     (400, 501)),
    # chunk sizes and extensions (issue 15.7 too)
    ("chunk-size-underscore", head(["POST /echo HTTP/1.1", H,
                                    "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n6_0\r\n world\r\n0\r\n\r\n", (400,)),
    ("chunk-size-minus", head(["POST /echo HTTP/1.1", H,
                               "Transfer-Encoding: chunked"]) +
     b"-5\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk-size-plus", head(["POST /echo HTTP/1.1", H,
                              "Transfer-Encoding: chunked"]) +
     b"+5\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk-size-trailing-space", head(["POST /echo HTTP/1.1", H,
                                        "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n0 \r\n\r\n", (400,)),
    ("chunk-size-leading-space", head(["POST /echo HTTP/1.1", H,
                                       "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n 0\r\n\r\n", (400,)),
    ("chunk-size-missing", head(["POST /echo HTTP/1.1", H,
                                 "Transfer-Encoding: chunked"]) +
     b"\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk-ext-without-size", head(["POST /echo HTTP/1.1", H,
                                     "Transfer-Encoding: chunked"]) +
     b" ;foo=bar\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk-line-bare-lf", head(["POST /echo HTTP/1.1", H,
                                 "Transfer-Encoding: chunked"]) +
     b"5\n;\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk-ext-bare-cr", head(["POST /echo HTTP/1.1", H,
                                "Transfer-Encoding: chunked"]) +
     b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk-ext-empty", head(["POST /echo HTTP/1.1", H,
                              "Transfer-Encoding: chunked"]) +
     b"5;\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk-ext-no-name", head(["POST /echo HTTP/1.1", H,
                                "Transfer-Encoding: chunked"]) +
     b"5;=x\r\nhello\r\n0\r\n\r\n", (400,)),
    # trailers, checked like header fields (issue 15.7)
    ("trailer-without-colon", head(["POST /echo HTTP/1.1", H,
                                    "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n", (400,)),
    ("trailer-obs-fold", head(["POST /echo HTTP/1.1", H,
                               "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n0\r\nX-T: a\r\n folded\r\n\r\n", (400,)),
    ("trailer-bad-name", head(["POST /echo HTTP/1.1", H,
                               "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n0\r\nBad Name: v\r\n\r\n", (400,)),
    ("trailer-space-before-colon", head(["POST /echo HTTP/1.1", H,
                                         "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n0\r\nX-T : v\r\n\r\n", (400,)),
    ("trailer-control-byte", head(["POST /echo HTTP/1.1", H,
                                   "Transfer-Encoding: chunked"]) +
     b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n", (400,)),
]


# Both apps answer /pid, /echo (the body back) and / (200).
INTERFACES = {
    "wsgi": dict(),
    "asgi": dict(app="app:application", chdir="asgi_raw",
                 interface="asgi"),
}


@pytest.fixture(scope="module", params=sorted(INTERFACES))
def srv(request, narwhal_module):
    spec = dict(INTERFACES[request.param])
    settings = {
        "workers": 1,
        "limit_request_line": LIMIT_LINE,
        "limit_request_fields": LIMIT_FIELDS,
        "limit_request_field_size": LIMIT_FIELD_SIZE,
        "limit_request_body": LIMIT_BODY,
        "header_timeout": 2,
    }
    if "interface" in spec:
        settings["interface"] = spec.pop("interface")
    n = narwhal_module(settings=settings, **spec)
    n.first_pid = n.worker_pid_via_http()
    return n


def assert_still_serving(n):
    r = n.get("/pid", headers={"Connection": "close"})
    assert r.status == 200
    assert int(r.body) == n.first_pid, "the worker was replaced"


def test_enough_cases():
    assert len(CASES) >= 80
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("data,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_malformed_request(srv, data, expected):
    mark = srv.mark()
    got, closed = raw_exchange(srv.addr, data, timeout=10)
    status = status_of(got)
    assert status in expected, \
        "expected %s, got %r" % (expected if len(expected) < 5 else "4xx",
                                 got[:300])
    assert closed, "connection left open after a %d" % status
    assert_still_serving(srv)
    assert not srv.find_logs(r"exited", since=mark)


@pytest.mark.parametrize("lines", [
    ["GET / HTTP/1.0"],
    ["GET / HTTP/1.1", "Host: example.com:8080"],
    ["GET / HTTP/1.1", "Host: [::1]:8000"],
    ["GET / HTTP/1.1", "Host: 127.0.0.1"],
    ["GET / HTTP/1.1", "Host: xn--bcher-kva.example"],
    ["GET / HTTP/1.1", "Host:"],  # empty authority: allowed (RFC 9110 7.2)
    ["GET / HTTP/1.1", "host:   example.com  "],
], ids=["http10-without-host", "host-with-port", "ipv6-literal", "ipv4",
        "punycode", "empty-host", "lowercase-name-ows"])
def test_good_host_is_accepted(srv, lines):
    got, _ = raw_exchange(srv.addr, head(lines + ["Connection: close"]))
    assert status_of(got) == 200, got[:300]


@pytest.mark.parametrize("data,body", [
    (head(["GET http://example.com/pid HTTP/1.1", H, "Connection: close"]),
     None),
    (head(["POST /echo HTTP/1.1", H, "Transfer-Encoding: chunked",
           "Connection: close"]) +
     b"5;name=value;q=\"a;b\"\r\nhello\r\n6; x\r\n world\r\n0\r\n"
     b"X-Sum: abc\r\nEmpty:\r\n\r\n", b"hello world"),
    (head(["POST /echo HTTP/1.1", H, "Content-Length: 3",
           "Content-Length: 3", "Connection: close"]) + b"abc", b"abc"),
], ids=["absolute-form", "chunk-extensions-and-trailers", "repeated-cl"])
def test_good_framing_is_accepted(srv, data, body):
    """What the strict parser must still take: absolute-form targets, chunk
    extensions (quoted ones with ';' in them) and trailers, a repeated
    identical Content-Length."""
    got, _ = raw_exchange(srv.addr, data)
    assert status_of(got) == 200, got[:300]
    if body is not None:
        assert got.endswith(b"\r\n\r\n" + body), got[-200:]


DATE_RE = re.compile(
    rb"\r\nDate: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    rb"\d\d:\d\d:\d\d GMT\r\n")


@pytest.mark.parametrize("data,status", [
    (head(["GET / HTTP/1.1"]), 400),
    (head(["GET /" + "a" * (LIMIT_LINE + 1) + " HTTP/1.1", H]), 414),
    (head(["GET / HTTP/1.1", H, "X-Big: " + "b" * (LIMIT_FIELD_SIZE + 1)]),
     431),
    (head(["POST /echo HTTP/1.1", H,
           "Content-Length: %d" % (LIMIT_BODY + 1)]), 413),
], ids=["400", "414", "431", "413"])
def test_error_responses_have_a_date(srv, data, status):
    """RFC 9110 6.6.1: an origin server with a clock sends Date, in its
    error answers too."""
    got, _ = raw_exchange(srv.addr, data)
    assert status_of(got) == status, got[:300]
    head_bytes, sep, body = got.partition(b"\r\n\r\n")
    assert sep, got
    assert DATE_RE.search(head_bytes + b"\r\n"), head_bytes
    assert head_bytes.count(b"\r\nDate:") == 1
    assert re.search(rb"\r\nContent-Length: %d\r\n" % len(body),
                     head_bytes + b"\r\n"), got


def send_while_reading(srv, data):
    """Sends data while a thread reads: a client that reads as it writes
    gets an early answer even if the server closes without reading it all."""
    s = socket.create_connection(srv.addr, timeout=T(10))
    received = []

    def reader():
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                received.append(data)
        except OSError:
            pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        s.sendall(data)
    except OSError:
        pass
    t.join(T(10))
    s.close()
    return b"".join(received)


def test_body_over_limit_while_sending(srv):
    got = send_while_reading(srv, build_request(
        "POST", "/echo", body=b"x" * (LIMIT_BODY * 8)))
    assert status_of(got) == 413, got[:200]
    assert_still_serving(srv)


def test_one_chunk_over_limit(srv):
    size = LIMIT_BODY * 4
    got = send_while_reading(srv, build_request(
        "POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) +
        b"%x\r\n" % size + b"a" * size + b"\r\n0\r\n\r\n")
    assert status_of(got) == 413, got[:200]
    assert_still_serving(srv)


def test_chunk_size_over_limit_rejected_before_the_data(srv):
    """As for a Content-Length over the limit: the declared chunk size alone
    is enough to answer 413, without waiting for (and buffering) the data."""
    data = build_request("POST", "/echo",
                         headers=[("Transfer-Encoding", "chunked")]) + \
        b"%x\r\n" % (LIMIT_BODY * 4) + b"a" * 1000
    got, closed = raw_exchange(srv.addr, data, timeout=5)
    assert status_of(got) == 413, got[:200]
    assert closed
    assert_still_serving(srv)


def test_chunked_body_over_limit(srv):
    chunks = b"".join(b"1000\r\n" + b"c" * 4096 + b"\r\n"
                      for _ in range(LIMIT_BODY // 4096 + 4)) + b"0\r\n\r\n"
    data = build_request("POST", "/echo",
                         headers=[("Transfer-Encoding", "chunked")]) + chunks
    got, _ = raw_exchange(srv.addr, data)
    assert status_of(got) == 413, got[:200]
    assert_still_serving(srv)


def test_body_at_limit_is_accepted(srv):
    body = b"y" * LIMIT_BODY
    r = srv.request("POST", "/echo", body=body)
    assert (r.status, r.body) == (200, body)


def test_header_timeout_closes_idle_half_request(srv):
    """A client that never finishes its request head is dropped (408 or a
    plain close) after header_timeout, and the worker goes on serving."""
    s = socket.create_connection(srv.addr, timeout=T(30))
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        # meanwhile the worker serves others
        assert_still_serving(srv)
        start = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        waited = time.monotonic() - start
    finally:
        s.close()
    assert data == b"" or status_of(data) == 408, data[:200]
    assert waited < T(25)
    assert_still_serving(srv)


@pytest.mark.parametrize("data", [
    head(["POST /echo HTTP/1.1", H, "Content-Length: 100"]) + b"x" * 10,
    head(["POST /echo HTTP/1.1", H, "Transfer-Encoding: chunked"]) +
    b"a\r\n0123456789\r\n",
    head(["POST /echo HTTP/1.1", H, "Content-Length: 100"]),
], ids=["content-length", "chunked", "no-body-byte"])
def test_stalled_body_times_out(srv, data):
    """A request body that stops arriving is answered 408 and closed after
    header_timeout (2 s here) of silence, not held for 30 s."""
    start = time.monotonic()
    got, closed = raw_exchange(srv.addr, data, timeout=15)
    waited = time.monotonic() - start
    assert closed, "connection still open after %.1fs" % waited
    assert status_of(got) == 408, got[:200]
    assert T(1.5) <= waited < T(8), waited
    assert_still_serving(srv)


def test_slow_steady_body_is_not_cut_off(srv):
    """The body timeout is silence between reads, not a deadline: a body
    that trickles in for longer than header_timeout still gets through."""
    s = socket.create_connection(srv.addr, timeout=T(20))
    try:
        s.sendall(head(["POST /echo HTTP/1.1", H, "Content-Length: 8",
                        "Connection: close"]))
        for ch in b"abcdefgh":
            time.sleep(0.5)
            s.sendall(bytes([ch]))
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert status_of(data) == 200, data[:200]
    assert data.endswith(b"\r\n\r\nabcdefgh")


def test_slowloris_does_not_block_others(srv):
    """Several connections trickling a head do not starve a normal client."""
    socks = []
    try:
        for _ in range(5):
            s = socket.create_connection(srv.addr, timeout=T(10))
            s.sendall(b"GET / HTTP/1.1\r\n")
            socks.append(s)
        assert_still_serving(srv)
    finally:
        for s in socks:
            s.close()
