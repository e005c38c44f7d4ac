"""A plain WSGI app (no framework) exercising PEP 3333 end to end.

The integration tests drive it through the real narwhal binary. Every route
answers something a test can check byte for byte; nothing here knows about
narwhal. Routes:

  /                 "Hello, world!\n"
  /pid              the worker's pid
  /env?name=K       os.environ[K] (404 when unset)
  /environ          selected WSGI environ keys as JSON
  /headers          the HTTP_* environ keys as JSON
  /echo             the request body (read from wsgi.input until EOF)
  /sha256           sha256 and length of the request body, read in 64 KiB reads
  /stream?n=&id=&delay=
                    n chunks from an iterable whose close() creates
                    $MARKER_DIR/<id>.closed (and .exhausted when fully consumed)
  /slow?s=3         sleeps s seconds (after logging "slow start" to stderr)
  /write            uses the write() callable from start_response
  /file             a file served through wsgi.file_wrapper
  /big?n=           n bytes of a repeating pattern
  /status?code=     an empty response with that status
  /error            raises before start_response (the server answers 500)
  /error-after      raises after the first body chunk was sent
  /log?msg=         writes msg to stderr
  /p/...            PATH_INFO, QUERY_STRING and RAW_URI as JSON
  /lines            counts the body's lines, iterating over wsgi.input
  /readline?size=   the first readline(size) of the body, then the rest
  /bad-body         returns str instead of bytes (an app bug: 500)
  /no-start         returns a body without calling start_response (500)

make_app() is a factory, for `app = app:make_app()`.
"""

import hashlib
import json
import os
import sys
import time
from urllib.parse import parse_qs

HELLO = b"Hello, world!\n"
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    304: "Not Modified",
    404: "Not Found",
    418: "I'm a teapot",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _marker(name):
    directory = os.environ.get("MARKER_DIR")
    if not directory:
        return None
    return os.path.join(directory, name)


def _touch(path):
    if path:
        with open(path, "a"):
            pass


class Stream:
    """An iterable with close(), as PEP 3333 requires servers to call."""

    def __init__(self, n, ident, delay):
        self.n = n
        self.ident = ident
        self.delay = delay
        self.i = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.i >= self.n:
            _touch(_marker(self.ident + ".exhausted"))
            raise StopIteration
        if self.i and self.delay:
            time.sleep(self.delay)
        self.i += 1
        return b"chunk %d\n" % (self.i - 1)

    def close(self):
        _touch(_marker(self.ident + ".closed"))


def _read_all(stream):
    parts = []
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts)


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _text(start_response, body, status="200 OK"):
    if isinstance(body, str):
        body = body.encode()
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _query(environ)

    if path == "/":
        return _text(start_response, HELLO)

    if path == "/pid":
        return _text(start_response, str(os.getpid()))

    if path == "/env":
        value = os.environ.get(q.get("name", ""))
        if value is None:
            return _text(start_response, "unset\n", "404 Not Found")
        return _text(start_response, value)

    if path == "/environ":
        keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                "CONTENT_TYPE", "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT",
                "SERVER_PROTOCOL", "REMOTE_ADDR", "wsgi.url_scheme",
                "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
                "wsgi.version")
        out = {k: environ[k] for k in keys if k in environ}
        out["wsgi.version"] = list(out.get("wsgi.version", ()))
        out["cwd"] = os.getcwd()
        return _json(start_response, out)

    if path == "/headers":
        out = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
        return _json(start_response, out)

    if path == "/echo":
        body = _read_all(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    if path == "/sha256":
        h = hashlib.sha256()
        n = 0
        stream = environ["wsgi.input"]
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        return _json(start_response, {"sha256": h.hexdigest(), "length": n})

    if path == "/stream":
        n = int(q.get("n", "5"))
        ident = q.get("id", "stream")
        delay = float(q.get("delay", "0"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Stream(n, ident, delay)

    if path == "/slow":
        seconds = float(q.get("s", "3"))
        sys.stderr.write("slow start %s\n" % q.get("id", ""))
        sys.stderr.flush()
        time.sleep(seconds)
        return _text(start_response, "slept %s\n" % q.get("s", "3"))

    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"by write()\n")
        return [b"and returned\n"]

    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/x-python"),
                                  ("Content-Length",
                                   str(os.fstat(f.fileno()).st_size))])
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is None:
            return iter(lambda: f.read(8192), b"")
        return wrapper(f, 8192)

    if path == "/big":
        n = int(q.get("n", str(1 << 20)))
        pattern = b"0123456789abcdef" * 4096
        body = (pattern * (n // len(pattern) + 1))[:n]
        headers = [("Content-Type", "application/octet-stream"),
                   ("Content-Length", str(n))]
        if q.get("close"):
            headers.append(("Connection", "close"))
        start_response("200 OK", headers)
        return [body]

    if path == "/bad-header":
        # a header the server must refuse: start_response raises ValueError
        bad = {"name": ("X Bad", "1"), "value": ("X-Bad", "a\r\nX-Evil: 1"),
               "cl": ("Content-Length", "12abc")}[q.get("kind", "name")]
        start_response("200 OK", [bad])
        return [b"must not be sent\n"]

    if path == "/status":
        code = int(q.get("code", "200"))
        start_response("%d %s" % (code, STATUS_TEXT.get(code, "Unknown")),
                       [("Content-Length", "0")])
        return [b""]

    if path == "/error":
        raise RuntimeError("boom (expected by the tests)")

    if path == "/error-after":
        def gen():
            yield b"partial"
            raise RuntimeError("boom after the headers (expected)")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()

    if path.startswith("/p/"):
        return _json(start_response, {
            "PATH_INFO": path, "QUERY_STRING": environ.get("QUERY_STRING"),
            "RAW_URI": environ.get("RAW_URI", environ.get("REQUEST_URI"))})

    if path == "/lines":
        count = 0
        for _line in environ["wsgi.input"]:
            count += 1
        return _text(start_response, str(count))

    if path == "/readline":
        stream = environ["wsgi.input"]
        size = int(q.get("size", "-1"))
        first = stream.readline(size) if size >= 0 else stream.readline()
        rest = stream.read()
        return _json(start_response, {"first": first.decode("latin-1"),
                                      "rest": rest.decode("latin-1")})

    if path == "/bad-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["a str, not bytes"]

    if path == "/no-start":
        return [b"never started"]

    if path == "/log":
        sys.stderr.write(q.get("msg", "") + "\n")
        sys.stderr.flush()
        return _text(start_response, "logged\n")

    return _text(start_response, "not found\n", "404 Not Found")


def make_app():
    """A factory: `app = app:make_app()` calls it once at boot."""
    def factory_app(environ, start_response):
        if environ.get("PATH_INFO") == "/factory":
            return _text(start_response, "made by the factory\n")
        return application(environ, start_response)
    return factory_app
