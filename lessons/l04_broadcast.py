# This is your file: complete the TODOs. (Generated from solutions/l04_broadcast.py by `make stubs`.)
"""Lesson 4: a broadcast that survives dead, slow and leaving clients.

Every text a client sends over ``/ws`` goes to every connected client, the
sender included, as ``"<name>: <text>"``. Four exercises, marked TODO 1 to 4.
Grade them with ``make check`` or the self-check cell in notebooks/04_broadcast.ipynb.

What is given: ``UsualConnectionManager`` and ``create_usual_app`` (the version
found in most tutorials, kept to compare against), the skeleton of the robust
``ConnectionManager``, and the endpoint of ``create_app``.

The robust manager never awaits a client inside ``broadcast``: each client has
a bounded outbox (``asyncio.Queue``) and one writer task that sends from it. A
client whose outbox is full, or whose send does not finish within
``send_timeout``, is dropped with close code 1013, and nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketDisconnected

log = logging.getLogger(__name__)

# 1013 "Try Again Later": the IANA registry describes it as a server "casting off some of its
# clients" under a temporary condition. 1008 (policy violation) is about a message received.
TOO_SLOW = 1013
# 1008 before accept(): the server answers the handshake with HTTP 403 instead of 101.
POLICY_VIOLATION = 1008


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
    app = FastAPI(title="Lesson 4: the usual broadcast")
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


class ConnectionManager:
    """Fan-out that a slow, stuck or vanished client cannot hold up.

    ``len(manager)`` is the number of clients currently registered.
    """

    def __init__(self, max_pending: int = 64, send_timeout: float = 1.0, close_timeout: float = 5.0) -> None:
        self.max_pending = max_pending  # messages waiting for one client before it counts as too slow
        self.send_timeout = send_timeout  # seconds one send may take before the client counts as too slow
        self.close_timeout = close_timeout  # a dropped client has this long to take its close frame
        self._outboxes: dict[WebSocket, asyncio.Queue[str]] = {}
        self._writers: dict[WebSocket, asyncio.Task[None]] = {}
        self._closing: set[asyncio.Task[None]] = set()  # drop() closes in the background: keep the tasks alive

    def __len__(self) -> int:
        return len(self._outboxes)

    def __contains__(self, websocket: object) -> bool:
        return websocket in self._outboxes

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        outbox: asyncio.Queue[str] = asyncio.Queue(self.max_pending)
        self._outboxes[websocket] = outbox
        self._writers[websocket] = asyncio.create_task(self._write(websocket, outbox), name="ws-writer")

    def broadcast(self, message: str) -> None:
        """Queue ``message`` for every client without waiting for any of them.

        TODO 1: loop over a *snapshot* of the outboxes (``list(self._outboxes.items())``),
        because dropping a client changes the dict while you loop. Put the message
        in each outbox with ``put_nowait``; an outbox that is full
        (``asyncio.QueueFull``) belongs to a client that is not keeping up: drop it
        with ``self.drop(websocket)`` and go on with the others.
        """
        pass

    async def _write(self, websocket: WebSocket, outbox: asyncio.Queue[str]) -> None:
        """The client's writer task: the only place that sends to it.

        TODO 2: forever, take the next message from the outbox (``await outbox.get()``) and
        send it with ``websocket.send_text``, giving the send at most ``self.send_timeout``
        seconds (``async with asyncio.timeout(...)``). A send that times out means the
        client is not reading: ``self.drop(websocket)``. A client that is already gone
        (``WebSocketDisconnect``, or ``WebSocketDisconnected`` once it was closed) only needs
        ``self.disconnect(websocket)``.
        """
        await outbox.get()

    def disconnect(self, websocket: WebSocket) -> None:
        """Forget ``websocket`` and stop its writer. Safe to call twice, and during a broadcast.

        TODO 3: remove the client from ``self._outboxes`` and ``self._writers`` without
        failing when it is already gone (``dict.pop(key, None)``), and cancel its writer
        task, unless the writer is the task calling this (``asyncio.current_task()``).
        """
        pass

    def drop(self, websocket: WebSocket) -> None:
        """Cast off a client that is too slow: forget it now, close it with 1013 in the background."""
        if websocket not in self._outboxes:
            return
        log.warning("dropping a client that does not keep up: %s", websocket.client)
        self.disconnect(websocket)
        task = asyncio.create_task(self._close(websocket, TOO_SLOW, "too slow"), name="ws-drop")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, websocket: WebSocket, code: int, reason: str) -> None:
        # The close frame queues behind what the client has not read yet; one that reads nothing
        # never makes room for it. Nobody waits for this task, so it may take a while, but not forever.
        with contextlib.suppress(TimeoutError, WebSocketDisconnect, WebSocketDisconnected):
            async with asyncio.timeout(self.close_timeout):
                await websocket.close(code, reason)


def create_app(allowed_origins: Iterable[str | None] = (None,), max_pending: int = 64,
               send_timeout: float = 1.0) -> FastAPI:
    """The lesson's app; its ``ConnectionManager`` is ``app.state.manager``.

    ``allowed_origins`` lists the ``Origin`` header values accepted at the handshake.
    Browsers always send one; ``None`` in the list accepts clients that send none
    (scripts and servers, which are not exposed to cross-site WebSocket hijacking).
    """
    app = FastAPI(title="Lesson 4: a broadcast that survives")
    manager = app.state.manager = ConnectionManager(max_pending=max_pending, send_timeout=send_timeout)
    origins = frozenset(allowed_origins)

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket, name: str = "guest"):
        # TODO 4: browsers let any web page open a WebSocket to your server, with the user's
        # cookies. Before accepting, refuse a handshake whose Origin header
        # (``websocket.headers.get("origin")``, None when absent) is not in ``origins``:
        # ``await websocket.close(code=POLICY_VIOLATION)`` and return. The client sees HTTP 403.
        pass
        await manager.connect(websocket)
        try:
            while True:
                text = await websocket.receive_text()
                manager.broadcast(f"{name}: {text}")
        except (WebSocketDisconnect, WebSocketDisconnected):  # it left, or drop() closed it
            pass
        finally:
            manager.disconnect(websocket)

    return app
