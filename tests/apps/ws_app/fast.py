"""A FastAPI WebSocket route (Debian's python3-fastapi) for
test_websocket.py: /ws/{room} echoes JSON with the room and the query
parameter `user` added; an HTTP route beside it."""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()


@app.get("/")
async def home():
    return {"hello": "fastapi"}


@app.websocket("/ws/{room}")
async def room(websocket: WebSocket, room: str, user: str = "anon"):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"room": room, "user": user,
                                       "echo": data})
    except WebSocketDisconnect:
        pass
