"""A Starlette app (Debian's python3-starlette) for test_asgi.py.

Routes: / (text), /json, /items/{n} (JSON, path parameter and query),
/stream?n=5 (StreamingResponse), /upload (POST, sha256 of the body, read
as a stream), /forever (streams until the client leaves; the generator's
cleanup writes $MARKER_DIR/disconnect-<pid>), /state (lifespan state),
/pid. Lifespan events append "<pid> <event>" to $MARKER_DIR/lifespan.log;
STARTUP_FAIL=1 makes startup raise.
"""

import asyncio
import contextlib
import hashlib
import os

from starlette.applications import Starlette
from starlette.responses import (JSONResponse, PlainTextResponse,
                                 StreamingResponse)
from starlette.routing import Route

MARKER_DIR = os.environ.get("MARKER_DIR")


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


@contextlib.asynccontextmanager
async def lifespan(app):
    if os.environ.get("STARTUP_FAIL"):
        raise RuntimeError("starlette app: cannot reach the database")
    record("startup")
    yield {"started_by": os.getpid()}
    record("shutdown")


async def home(request):
    return PlainTextResponse("hello from starlette\n")


async def json_view(request):
    return JSONResponse({"framework": "starlette", "pid": os.getpid()})


async def item(request):
    return JSONResponse({"n": request.path_params["n"],
                         "q": request.query_params.get("q")})


async def stream(request):
    n = int(request.query_params.get("n", "5"))

    async def chunks():
        for i in range(n):
            yield "line %d\n" % i
            await asyncio.sleep(0.01)
    return StreamingResponse(chunks(), media_type="text/plain")


async def upload(request):
    h = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        h.update(chunk)
        size += len(chunk)
    return JSONResponse({"size": size, "sha256": h.hexdigest()})


async def forever(request):
    async def chunks():
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.05)
        finally:
            write_marker("disconnect-%d" % os.getpid(), "stream closed")
    return StreamingResponse(chunks(), media_type="text/plain")


async def state(request):
    return JSONResponse({"started_by": request.state.started_by})


async def pid(request):
    return PlainTextResponse(str(os.getpid()))


app = Starlette(routes=[
    Route("/", home),
    Route("/json", json_view),
    Route("/items/{n:int}", item),
    Route("/stream", stream),
    Route("/upload", upload, methods=["POST"]),
    Route("/forever", forever),
    Route("/state", state),
    Route("/pid", pid),
], lifespan=lifespan)
