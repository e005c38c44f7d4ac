"""FastAPI on asyncpg: the version at /, the database at /health/ready."""
import os

import asyncpg
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "VERSION")) as f:
    VERSION = f.read().strip()


def db_password():
    path = os.path.join(HERE, "db_password")
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    return os.environ.get("DB_PASSWORD", "")


app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def index():
    return VERSION + "\n"


@app.get("/pid", response_class=PlainTextResponse)
async def pid():
    return "%d" % os.getpid()


@app.get("/env", response_class=PlainTextResponse)
async def env():
    return "HOME=%s USER=%s\n" % (os.environ.get("HOME"),
                                   os.environ.get("USER"))


@app.get("/health/ready", response_class=PlainTextResponse)
async def ready():
    try:
        conn = await asyncpg.connect(
            host=os.environ["DB_HOST"], port=int(os.environ["DB_PORT"]),
            user=os.environ["DB_USER"], database=os.environ["DB_NAME"],
            password=db_password(), timeout=2, ssl=False)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except Exception as e:
        return PlainTextResponse("db: %s: %s\n" % (type(e).__name__, e),
                                 status_code=503)
    return "ok\n"
