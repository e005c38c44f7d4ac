"""A tiny FastAPI app: the ASGI benchmark's JSON endpoint (GET /json)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/json")
async def json_endpoint():
    return {"message": "Hello, world!", "items": [1, 2, 3], "ok": True}
