"""gunicorn's settings for a server behind a proxy, in WSGI and ASGI:
access_log_format (and the JSON access log), forwarded_allow_ips with
secure_scheme_headers, and the PROXY protocol, v1 and v2."""

import json
import os
import socket
import struct

import pytest

from conftest import (T, build_request, raw_exchange, status_of, wait_until)

INTERFACES = [("wsgi_basic", "app:application", "/environ"),
              ("asgi_raw", "app:application", "/scope")]


def ask(n, path, headers=(), prefix=b""):
    raw, _ = raw_exchange(n.addr, prefix + build_request(
        "GET", path, headers=list(headers) + [("Connection", "close")]))
    return raw


def body_json(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    assert status_of(raw) == 200, raw[:300]
    return json.loads(body)


def scheme_and_client(doc):
    """(url scheme, client address) from /environ or /scope."""
    if "wsgi.url_scheme" in doc:
        return doc["wsgi.url_scheme"], doc["REMOTE_ADDR"]
    return doc["scheme"], doc["client"][0]


def access_lines(n, needle):
    return [l for l in n.stdout_lines() if needle in l]


@pytest.mark.parametrize("chdir,app,path", INTERFACES,
                         ids=[i[0] for i in INTERFACES])
def test_access_log_format_atoms(narwhal, chdir, app, path):
    fmt = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
           'm=%(m)s U=%(U)s q=%(q)s H=%(H)s D=%(D)s L=%(L)s p=%(p)s '
           'x=%({x-trace}i)s ct=%({content-type}o)s none=%(nope)s %%')
    n = narwhal(chdir=chdir, app=app, settings={
        "workers": 1, "accesslog": "-", "access_log_format": fmt})
    raw = ask(n, path + "?a=1", headers=[
        ("X-Trace", "t-42"), ("User-Agent", "ua/1"),
        ("Authorization", "Basic dXNlcjpwYXNz")])
    assert status_of(raw) == 200
    lines = wait_until(lambda: access_lines(n, "x=t-42"), 10,
                       what="the access log line")
    line = lines[0]
    assert line.startswith('127.0.0.1 - user ['), line
    assert '"GET %s?a=1 HTTP/1.1" 200 ' % path in line
    assert '"-" "ua/1" m=GET U=%s q=a=1 H=HTTP/1.1 D=' % path in line
    pid = n.worker_pids()[0]
    ct = "application/json"  # the answer's Content-Type
    assert line.endswith(" p=<%d> x=t-42 ct=%s none=- %%" % (pid, ct)), line
    d = int(line.split(" D=")[1].split()[0])
    secs = float(line.split(" L=")[1].split()[0])
    assert d >= 0 and abs(secs - d / 1e6) < 1e-5


@pytest.mark.parametrize("chdir,app,path", INTERFACES,
                         ids=[i[0] for i in INTERFACES])
def test_access_log_response_headers_and_environ(narwhal, chdir, app, path):
    """%({name}o)s: the answer's header; %({NAME}e)s: the request's CGI
    variable, else the worker's environment variable."""
    fmt = ('ct=%({Content-Type}o)s xp=%({x-pid}o)s no=%({x-none}o)s '
           'e=%({NW_ALOG_ENV}e)s em=%({REQUEST_METHOD}e)s '
           'eh=%({HTTP_X_TRACE}e)s eu=%({NW_UNSET_ENV}e)s')
    n = narwhal(chdir=chdir, app=app, settings={
        "workers": 1, "accesslog": "-", "access_log_format": fmt},
        env={"NW_ALOG_ENV": "from-env"})
    raw = ask(n, path, headers=[("X-Trace", "t-43")])
    assert status_of(raw) == 200
    line = wait_until(lambda: access_lines(n, "eh=t-43"), 10,
                      what="the access log line")[0]
    pid = n.worker_pids()[0]
    xp = str(pid) if chdir == "asgi_raw" else "-"
    assert line == ("ct=application/json xp=%s no=- e=from-env em=GET "
                    "eh=t-43 eu=-" % xp), line


def test_json_access_log(narwhal):
    n = narwhal(settings={"workers": 1, "accesslog": "-",
                          "access_log_format": "json"})
    assert status_of(ask(n, "/environ?x=\"y\"", headers=[
        ("User-Agent", "a\"b")])) == 200
    lines = wait_until(lambda: access_lines(n, '"path":"/environ"'), 10,
                       what="the JSON line")
    doc = json.loads(lines[0])
    assert doc["method"] == "GET" and doc["status"] == 200
    assert doc["query"] == 'x="y"' and doc["user_agent"] == 'a"b'
    assert doc["remote_addr"] == "127.0.0.1" and doc["bytes"] > 0
    assert isinstance(doc["duration_us"], int)


@pytest.mark.parametrize("chdir,app,path", INTERFACES,
                         ids=[i[0] for i in INTERFACES])
def test_forwarded_allow_ips_and_secure_scheme_headers(narwhal, chdir, app,
                                                       path):
    # gunicorn's default: 127.0.0.1 is trusted
    n = narwhal(chdir=chdir, app=app, settings={"workers": 1})
    doc = body_json(ask(n, path, headers=[("X-Forwarded-Proto", "https")]))
    assert scheme_and_client(doc)[0] == "https"
    n.stop()
    # a peer not in forwarded_allow_ips cannot claim https
    n = narwhal(chdir=chdir, app=app, settings={
        "workers": 1, "forwarded_allow_ips": "10.9.8.7"})
    doc = body_json(ask(n, path, headers=[("X-Forwarded-Proto", "https")]))
    assert scheme_and_client(doc)[0] == "http"
    n.stop()
    # "*" and a header of the app's own
    n = narwhal(chdir=chdir, app=app, settings={
        "workers": 1, "forwarded_allow_ips": "*",
        "secure_scheme_headers": "X-SCHEME=https"})
    doc = body_json(ask(n, path, headers=[("X-Scheme", "https")]))
    assert scheme_and_client(doc)[0] == "https"
    doc = body_json(ask(n, path, headers=[("X-Forwarded-Proto", "https")]))
    assert scheme_and_client(doc)[0] == "http"


def proxy_v2(src, dst, sport, dport):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + \
        struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


@pytest.mark.parametrize("chdir,app,path", INTERFACES,
                         ids=[i[0] for i in INTERFACES])
def test_proxy_protocol_v1_and_v2(narwhal, chdir, app, path):
    n = narwhal(chdir=chdir, app=app, settings={
        "workers": 1, "proxy_protocol": "true", "accesslog": "-"})
    v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"
    doc = body_json(ask(n, path, prefix=v1))
    assert scheme_and_client(doc)[1] == "203.0.113.7"
    doc = body_json(ask(n, path, prefix=proxy_v2("198.51.100.9", "192.0.2.1",
                                                  40000, 443)))
    assert scheme_and_client(doc)[1] == "198.51.100.9"
    # the access log shows the client, not the proxy
    wait_until(lambda: access_lines(n, "198.51.100.9 - -"), 10,
               what="the client in the access log")
    # as in gunicorn, the header may be left out: the peer is the client
    doc = body_json(ask(n, path))
    assert scheme_and_client(doc)[1] == "127.0.0.1"
    # a broken one is a bad request
    raw = ask(n, path, prefix=b"PROXY TCP4 nonsense\r\n")
    assert status_of(raw) == 400, raw[:200]
    # keep-alive: the header comes once, then requests as usual
    s = socket.create_connection(n.addr, timeout=T(10))
    try:
        s.sendall(v1 + build_request("GET", path) +
                  build_request("GET", path, headers=[("Connection",
                                                       "close")]))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.count(b"HTTP/1.1 200") == 2
    assert data.count(b"203.0.113.7") == 2


def test_proxy_header_from_a_peer_not_allowed_is_not_trusted(narwhal):
    n = narwhal(settings={"workers": 1, "proxy_protocol": "true",
                          "proxy_allow_ips": "10.9.8.7"})
    # 127.0.0.1 may not send one: the request is served as it came
    doc = body_json(ask(n, "/environ"))
    assert doc["REMOTE_ADDR"] == "127.0.0.1"
    raw = ask(n, "/environ",
              prefix=b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n")
    assert status_of(raw) in (400, 403), raw[:200]
