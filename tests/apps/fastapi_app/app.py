"""A FastAPI app (Debian's python3-fastapi) for test_asgi.py.

Routes: / (text), /json, /items/{n} (path and query validation: a bad n is
a 422), POST /items (a pydantic model in, JSON out), /stream?n=5, /upload
(POST, sha256 of the body), /wait-disconnect (polls
request.is_disconnected(); writes $MARKER_DIR/disconnect-<pid> when the
client has gone), /state, /pid. Startup and shutdown events append
"<pid> <event>" to $MARKER_DIR/lifespan.log; STARTUP_FAIL=1 makes startup
raise.
"""

import asyncio
import hashlib
import os

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

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


app = FastAPI()


@app.on_event("startup")
async def startup():
    if os.environ.get("STARTUP_FAIL"):
        raise RuntimeError("fastapi app: cannot reach the database")
    app.state.started_by = os.getpid()
    record("startup")


@app.on_event("shutdown")
async def shutdown():
    record("shutdown")


class Item(BaseModel):
    name: str
    price: float
    tags: list = []


@app.get("/", response_class=PlainTextResponse)
async def home():
    return "hello from fastapi\n"


@app.get("/json")
async def json_view():
    return {"framework": "fastapi", "pid": os.getpid()}


@app.get("/items/{n}")
async def read_item(n: int, q: str = None):
    return {"n": n, "q": q}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price": item.price, "tags": item.tags,
            "total": item.price * 2}


@app.get("/stream")
async def stream(n: int = 5):
    async def chunks():
        for i in range(n):
            yield "line %d\n" % i
            await asyncio.sleep(0.01)
    return StreamingResponse(chunks(), media_type="text/plain")


@app.post("/upload")
async def upload(request: Request):
    h = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        h.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


@app.get("/wait-disconnect")
async def wait_disconnect(request: Request):
    for _ in range(200):
        if await request.is_disconnected():
            write_marker("disconnect-%d" % os.getpid(), "is_disconnected")
            return PlainTextResponse("gone\n")
        await asyncio.sleep(0.05)
    return PlainTextResponse("still here\n")


@app.get("/state")
async def state():
    return {"started_by": app.state.started_by}


@app.get("/pid", response_class=PlainTextResponse)
async def pid():
    return str(os.getpid())
