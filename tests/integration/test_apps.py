"""Real apps served by the real binary: plain WSGI, Flask, Django."""

import hashlib
import json
import os


def test_plain_wsgi_app(narwhal):
    n = narwhal()
    r = n.get("/")
    assert r.status == 200
    assert r.body == b"Hello, world!\n"
    assert r.header("Content-Type") == "text/plain"

    r = n.get("/environ?a=1&b=two")
    assert r.status == 200
    env = json.loads(r.body)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "a=1&b=two"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(n.port)
    assert env.get("SCRIPT_NAME", "") == ""
    # the worker runs in its code tree
    assert env["cwd"] == n.settings["chdir"]

    r = n.get("/nope")
    assert r.status == 404


def test_request_headers_reach_environ(narwhal):
    n = narwhal(settings={"workers": 1})
    r = n.get("/headers", headers={"X-Custom-Thing": "v1",
                                   "Accept": "text/plain"})
    h = json.loads(r.body)
    assert h["HTTP_X_CUSTOM_THING"] == "v1"
    assert h["HTTP_ACCEPT"] == "text/plain"
    assert h["HTTP_HOST"] == "127.0.0.1:%d" % n.port
    r = n.request("POST", "/environ", body=b"abc",
                  headers={"Content-Type": "text/x-test"})
    env = json.loads(r.body)
    assert env["CONTENT_TYPE"] == "text/x-test"
    assert env["CONTENT_LENGTH"] == "3"


def test_env_section_reaches_workers(narwhal):
    n = narwhal(settings={"workers": 1}, env={"NW_TEST_VALUE": "from-ini"})
    r = n.get("/env?name=NW_TEST_VALUE")
    assert (r.status, r.body) == (200, b"from-ini")
    for name in ("NARWHAL_WORKER_ID", "NARWHAL_GENERATION"):
        r = n.get("/env?name=" + name)
        assert r.status == 200, name


def test_flask_app(narwhal):
    n = narwhal(app="app:app", chdir="flask_app")
    r = n.get("/")
    assert (r.status, r.body) == (200, b"flask ok\n")

    r = n.get("/json?x=1")
    assert r.status == 200
    assert r.header("Content-Type") == "application/json"
    data = json.loads(r.body)
    assert data["framework"] == "flask"
    assert data["args"] == {"x": "1"}
    assert data["pid"] in n.worker_pids()

    r = n.request("POST", "/form", body=b"name=narwhal&kind=whale",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    assert json.loads(r.body) == {"name": "narwhal", "kind": "whale"}

    r = n.request("PUT", "/upload", body=b"x" * 300000)
    assert json.loads(r.body) == {"length": 300000}

    # multipart, parsed by Werkzeug from wsgi.input
    boundary = "nwboundary"
    payload = os.urandom(200000)
    body = (("--%s\r\nContent-Disposition: form-data; name=\"f\"; "
             "filename=\"x.bin\"\r\nContent-Type: application/octet-stream"
             "\r\n\r\n" % boundary).encode() + payload +
            ("\r\n--%s\r\nContent-Disposition: form-data; name=\"note\""
             "\r\n\r\nhi\r\n--%s--\r\n" % (boundary, boundary)).encode())
    r = n.request("POST", "/files", body=body, headers={
        "Content-Type": "multipart/form-data; boundary=" + boundary})
    assert r.status == 200
    assert json.loads(r.body) == {
        "note": "hi", "name": "x.bin",
        "sha256": hashlib.sha256(payload).hexdigest()}

    assert n.get("/user/ahab").body == b"hello ahab\n"
    assert n.get("/teapot").status == 418
    assert n.get("/missing").status == 404


def test_django_project(narwhal):
    n = narwhal(app="mysite.wsgi:application", chdir="django_project")
    r = n.get("/")
    assert (r.status, r.body) == (200, b"django ok\n")

    r = n.get("/info/?q=whale", headers={"Host": "example.test"})
    assert r.status == 200
    data = json.loads(r.body)
    assert data["framework"] == "django"
    assert data["path"] == "/info/"
    assert data["query"] == {"q": "whale"}
    assert data["host"] == "example.test"

    # CommonMiddleware's APPEND_SLASH redirect
    r = n.get("/info")
    assert r.status == 301
    assert r.header("Location") == "/info/"

    body = bytes(range(256)) * 1000
    r = n.request("POST", "/echo/", body=body)
    assert (r.status, r.body) == (200, body)

    # DEBUG = False: a plain 404 page, no traceback
    r = n.get("/does-not-exist/")
    assert r.status == 404
    assert b"Traceback" not in r.body
