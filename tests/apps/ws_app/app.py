"""A raw ASGI 3 WebSocket app for tests/integration/test_websocket.py.

WebSocket routes:
  /echo            echoes every message (text as text, bytes as bytes);
                   picks the subprotocol "chat" when the client offers it
  /info            accepts with subprotocol "chat" and an x-ws header, then
                   sends what the scope said as JSON
  /close?code=&reason=   accepts, then closes with that code and reason
  /reject          closes before accepting: the handshake gets a 403
  /deny            the denial-response extension: a 401 with a body
  /record?id=X     echoes; on websocket.disconnect writes
                   $MARKER_DIR/disconnect-X: "<code> <reason>"
  /pid             sends "<pid> <generation>", then echoes
  /finish?id=X     echoes; after websocket.disconnect sleeps 0.2 s (the app
                   finishing its work) and writes $MARKER_DIR/finished-X
  /slow            accepts and never calls receive()
  /flood?size=N    accepts and sends N-byte messages as fast as send() lets
                   it; $MARKER_DIR/flood-<pid> counts them
  /count           sends the number of WebSockets open in this process
  /send-after-close  closes, then tries to send: the error is reported
                   as a text in $MARKER_DIR/after-close
HTTP: /pid and anything else "hello".
"""

import asyncio
import json
import os
from urllib.parse import parse_qs

MARKER_DIR = os.environ.get("MARKER_DIR")
OPEN = 0


def write_marker(name, text):
    """Whole or not at all: the test reads it as soon as it appears."""
    if MARKER_DIR:
        tmp = os.path.join(MARKER_DIR, "tmp.%s" % name)
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(MARKER_DIR, name))


async def echo_loop(receive, send):
    """Echoes until the client leaves; returns the disconnect message."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return message
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def websocket(scope, receive, send):
    global OPEN
    path = scope["path"]
    query = {k: v[0] for k, v in
             parse_qs(scope["query_string"].decode()).items()}
    message = await receive()
    assert message["type"] == "websocket.connect", message
    if path == "/reject":
        await send({"type": "websocket.close"})
        return
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"x-denied", b"yes")]})
        await send({"type": "websocket.http.response.body",
                    "body": b"denied", "more_body": True})
        await send({"type": "websocket.http.response.body",
                    "body": b"\n"})
        return
    accept = {"type": "websocket.accept"}
    if path == "/info" or (path == "/echo" and
                           "chat" in scope.get("subprotocols", [])):
        accept["subprotocol"] = "chat"
    if path == "/info":
        accept["headers"] = [(b"x-ws", b"yes")]
    await send(accept)
    OPEN += 1
    try:
        if path == "/info":
            info = {k: scope.get(k) for k in
                    ("type", "path", "raw_path", "root_path", "scheme",
                     "http_version", "subprotocols", "asgi")}
            info["query_string"] = scope["query_string"].decode()
            info["raw_path"] = (info["raw_path"] or b"").decode()
            info["headers"] = [[k.decode("latin-1"), v.decode("latin-1")]
                               for k, v in scope["headers"]]
            info["client"] = list(scope["client"]) if scope.get("client") \
                else None
            info["extensions"] = sorted(scope.get("extensions") or {})
            await send({"type": "websocket.send", "text": json.dumps(info)})
            await echo_loop(receive, send)
        elif path == "/close":
            await send({"type": "websocket.close",
                        "code": int(query.get("code", 1000)),
                        "reason": query.get("reason", "")})
        elif path == "/record":
            m = await echo_loop(receive, send)
            write_marker("disconnect-%s" % query["id"], "%s %s" % (
                m.get("code"), m.get("reason", "")))
        elif path == "/pid":
            await send({"type": "websocket.send", "text": "%d %s" % (
                os.getpid(), os.environ.get("NARWHAL_GENERATION", "?"))})
            await echo_loop(receive, send)
        elif path == "/finish":
            m = await echo_loop(receive, send)
            await asyncio.sleep(0.2)
            write_marker("finished-%s" % query["id"], str(m.get("code")))
        elif path == "/slow":
            await asyncio.sleep(3600)
        elif path == "/flood":
            size = int(query.get("size", 65536))
            n = 0
            data = b"f" * size
            while True:
                await send({"type": "websocket.send", "bytes": data})
                n += 1
                if n % 16 == 0:
                    write_marker("flood-%d" % os.getpid(), str(n))
        elif path == "/count":
            await send({"type": "websocket.send", "text": str(OPEN)})
            await echo_loop(receive, send)
        elif path == "/send-after-close":
            await send({"type": "websocket.close", "code": 1000})
            try:
                await send({"type": "websocket.send", "text": "late"})
                write_marker("after-close", "no error")
            except Exception as e:
                write_marker("after-close", "%s: %s" % (type(e).__name__, e))
        else:
            await echo_loop(receive, send)
    finally:
        OPEN -= 1


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "http":
        await receive()
        body = b"hello\n"
        if scope["path"] == "/pid":
            body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
