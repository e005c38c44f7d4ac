"""The FastAPI app every ASGI release tree is built from.

A tree holds this file, a variant's app.py and a VERSION file. Routes:
/ (the version, with X-Pid, X-Generation and X-Version headers), /pid,
/slow?s=1, /health/ready. Startup and shutdown append
"<pid> <version> <event>" to $MARKER_DIR/lifespan.log; a variant passes
fail_startup=True to make startup raise.
"""

import asyncio
import os

from fastapi import FastAPI, Response

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "VERSION")) as f:
    VERSION = f.read().strip()


def record(event):
    directory = os.environ.get("MARKER_DIR")
    if directory:
        with open(os.path.join(directory, "lifespan.log"), "a") as f:
            f.write("%d %s %s\n" % (os.getpid(), VERSION, event))


def make_app(fail_startup=False):
    app = FastAPI()

    @app.on_event("startup")
    async def startup():
        if fail_startup:
            raise RuntimeError("release %s: the database is unreachable"
                               % VERSION)
        record("startup")

    @app.on_event("shutdown")
    async def shutdown():
        record("shutdown")

    def answer(body, status=200):
        return Response(body, status_code=status, media_type="text/plain",
                        headers={"X-Pid": str(os.getpid()),
                                 "X-Generation":
                                     os.environ.get("NARWHAL_GENERATION", ""),
                                 "X-Version": VERSION})

    @app.get("/")
    async def home():
        return answer(VERSION + "\n")

    @app.get("/pid")
    async def pid():
        return answer(str(os.getpid()))

    @app.get("/slow")
    async def slow(s: float = 1.0):
        await asyncio.sleep(s)
        return answer(VERSION + "\n")

    @app.get("/health/ready")
    async def ready():
        return answer("ready\n")

    return app
