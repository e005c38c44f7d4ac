"""A raw ASGI WebSocket echo for the bench (tests/bench/bench.py, `ws`).

Any WebSocket path echoes every message back as it came (text as text,
bytes as bytes); plain HTTP gets "Hello, world!" so the bench's readiness
check works unchanged.
"""


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        message = await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send",
                            "text": message["text"]})
            else:
                await send({"type": "websocket.send",
                            "bytes": message["bytes"]})
    elif scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", b"14")]})
        await send({"type": "http.response.body", "body": b"Hello, world!\n"})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
