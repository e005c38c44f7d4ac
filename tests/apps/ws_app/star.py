"""A Starlette WebSocket route (Debian's python3-starlette) for
test_websocket.py: /ws accepts, greets, then echoes text with a prefix."""

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def ws(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("hello from starlette")
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text("starlette: " + text)
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/ws", ws)])
