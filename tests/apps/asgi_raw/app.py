"""A raw ASGI 3 app (no framework) for tests/integration/test_asgi.py.

Routes:
  /                 "hello\\n"
  /json             {"hello": "world", "pid": ...}
  /scope[/...]      the scope as JSON (bytes as latin-1 text)
  /stream?n=5       n chunks, no Content-Length: chunked on the wire
  /upload           POST: {"size": n, "sha256": hex, "messages": k}
  /echo             POST: the body back, with its Content-Length
  /disconnect       reads the body, answers nothing and waits for
                    http.disconnect; writes $MARKER_DIR/disconnect-<pid>
  /sleep?s=1        asyncio.sleep(s), then "slept\\n"
  /block?s=10       time.sleep(s) in the loop: a hung worker
  /error            raises before http.response.start
  /error-after      raises after sending part of a streamed body
  /no-response      returns without sending anything
  /state            what lifespan startup put into scope["state"]
  /pid              the worker's pid

Lifespan: each event appends "<pid> <event>" to $MARKER_DIR/lifespan.log.
LIFESPAN=fail answers lifespan.startup.failed; LIFESPAN=raise raises after
receiving lifespan.startup; LIFESPAN=unsupported raises before receiving.
`wrapped` is the same app behind a sync __call__ (see Wrapped).
"""

import asyncio
import hashlib
import json
import os
import time
from urllib.parse import parse_qs

MARKER_DIR = os.environ.get("MARKER_DIR")
LIFESPAN = os.environ.get("LIFESPAN", "")


def write_marker(name, text):
    """Whole or not at all: the test reads it as soon as it appears."""
    if MARKER_DIR:
        tmp = os.path.join(MARKER_DIR, "tmp.%s" % name)
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(MARKER_DIR, name))


def record(event):
    if MARKER_DIR:
        with open(os.path.join(MARKER_DIR, "lifespan.log"), "a") as f:
            f.write("%d %s\n" % (os.getpid(), event))


async def lifespan(scope, receive, send):
    if LIFESPAN == "unsupported":
        raise ValueError("this app only speaks http")
    message = await receive()
    assert message["type"] == "lifespan.startup"
    if LIFESPAN == "fail":
        record("startup-failed")
        await send({"type": "lifespan.startup.failed",
                    "message": "raw app: the database is unreachable"})
        return
    if LIFESPAN == "raise":
        raise RuntimeError("raw app: startup raised")
    scope["state"]["started_by"] = os.getpid()
    record("startup")
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    record("shutdown")
    await send({"type": "lifespan.shutdown.complete"})


async def answer(send, status, body, ctype=b"text/plain", headers=()):
    if isinstance(body, str):
        body = body.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-pid", str(os.getpid()).encode())]
                + list(headers)})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive):
    chunks, messages = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        messages += 1
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    assert scope["type"] == "http"
    path = scope["path"]
    query = {k: v[0] for k, v in
             parse_qs(scope["query_string"].decode()).items()}

    if path == "/":
        return await answer(send, 200, "hello\n")
    if path == "/json":
        return await answer(send, 200, json.dumps(
            {"hello": "world", "pid": os.getpid()}), b"application/json")
    if path == "/scope" or path.startswith("/scope/"):
        s = {k: v for k, v in scope.items() if k != "state"}
        return await answer(send, 200, json.dumps(jsonable(s)),
                            b"application/json")
    if path == "/state":
        return await answer(send, 200, json.dumps(scope.get("state")),
                            b"application/json")
    if path == "/pid":
        return await answer(send, 200, str(os.getpid()))
    if path == "/stream":
        n = int(query.get("n", "5"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(n):
            await send({"type": "http.response.body",
                        "body": b"chunk %d\n" % i, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/upload":
        h = hashlib.sha256()
        size = messages = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            messages += 1
            body = message.get("body", b"")
            h.update(body)
            size += len(body)
            if not message.get("more_body", False):
                break
        return await answer(send, 200, json.dumps(
            {"size": size, "sha256": h.hexdigest(), "messages": messages}),
            b"application/json")
    if path == "/echo":
        body, _ = await read_body(receive)
        return await answer(send, 200, body, b"application/octet-stream")
    if path == "/disconnect":
        await read_body(receive)
        message = await receive()  # nothing comes until the client leaves
        write_marker("disconnect-%d" % os.getpid(), message["type"])
        return
    if path == "/sleep":
        await asyncio.sleep(float(query.get("s", "1")))
        return await answer(send, 200, "slept\n")
    if path == "/block":
        time.sleep(float(query.get("s", "10")))
        return await answer(send, 200, "woke up\n")
    if path == "/error":
        raise RuntimeError("raw app: boom before the response")
    if path == "/error-after":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial\n",
                    "more_body": True})
        raise RuntimeError("raw app: boom in the middle")
    if path == "/no-response":
        return
    return await answer(send, 404, "not found\n")


class Wrapped:
    """An ASGI app behind a plain (not async) __call__, as some middleware
    is written: `interface = auto` takes it for WSGI, so serving it needs
    `interface = asgi` (or -k uvicorn.workers.UvicornWorker)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, scope, receive, send):
        return self.app(scope, receive, send)


wrapped = Wrapped(application)
