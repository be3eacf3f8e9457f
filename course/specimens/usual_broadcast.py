"""The tutorial broadcast, kept as it is to show what goes wrong with it (notebook 04, bench/broadcast.py).

``UsualConnectionManager`` is the ``ConnectionManager`` most tutorials show: a list of
WebSockets and a ``broadcast`` that awaits each client in turn, inside the sender's endpoint.
Notebook 04 breaks it four ways on a real uvicorn; ``lessons/l04_broadcast.py`` teaches the
robust version. Do not copy it.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect


class UsualConnectionManager:
    """The tutorial version: a list, and a broadcast that awaits each client in turn."""

    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        for connection in self.active_connections:
            await connection.send_text(message)

    def __len__(self) -> int:
        return len(self.active_connections)


def create_usual_app() -> FastAPI:
    """The tutorial's app around ``UsualConnectionManager``; the manager is ``app.state.manager``."""
    app = FastAPI(title="The usual broadcast (tutorial specimen)")
    manager = app.state.manager = UsualConnectionManager()

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket, name: str = "guest"):
        await manager.connect(websocket)
        try:
            while True:
                data = await websocket.receive_text()
                await manager.broadcast(f"{name}: {data}")
        except WebSocketDisconnect:
            manager.disconnect(websocket)

    return app


__all__ = ["UsualConnectionManager", "create_usual_app"]
