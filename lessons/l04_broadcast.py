# This is your file: complete the TODOs. (Generated from solutions/l04_broadcast.py by `make stubs`.)
"""Lesson 4: a broadcast that survives dead, slow and leaving clients.

Every text a client sends over ``/ws`` goes to every connected client, the sender
included, as ``"<name>: <text>"``. Four exercises, TODO 1 to 4, all in ``ConnectionManager``.
Grade them with ``make check`` or the self-check cell in notebooks/04_broadcast.ipynb.

The idea: ``broadcast`` never awaits a client. Each client has a bounded outbox
(``asyncio.Queue``) and one writer task, the only place that sends to it. A client whose
outbox is full, or whose send does not finish within ``send_timeout``, is dropped: forgotten
at once and closed with 1013 "Try Again Later" in the background, and nobody waits for it.

Given: the manager's skeleton (``connect``, ``_close``), the endpoint of ``create_app``, and the
Origin check, which lesson 3 teaches (``refuse_foreign_origin``). The tutorial version this
lesson replaces is ``course.specimens.usual_broadcast`` (notebook 04 shows how it breaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, status
from starlette.websockets import WebSocketDisconnected

from .l03_websockets import refuse_foreign_origin

log = logging.getLogger(__name__)


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
        self._closing: set[asyncio.Task[None]] = set()  # close tasks started by drop(): keep them alive

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

        TODO 1: put the message into every client's outbox without awaiting
        (``Queue.put_nowait``). An outbox that is full (``asyncio.QueueFull``) belongs to a
        client that does not keep up: ``self.drop()`` it and go on with the others. Dropping
        removes the client from ``self._outboxes`` while you loop over it, so loop over a
        copy of its items taken before the loop.
        """
        pass

    async def _write(self, websocket: WebSocket, outbox: asyncio.Queue[str]) -> None:
        """The client's writer task: the only place that sends to it, one message at a time.

        TODO 2: forever, wait for the next message in the outbox and send it with
        ``websocket.send_text``. Give each *send* (not the wait for a message: a quiet room
        is fine) at most ``self.send_timeout`` seconds (``asyncio.timeout``). A send that
        times out means the client is not reading: ``self.drop()`` it. A client that is
        already gone (``WebSocketDisconnect``, or ``WebSocketDisconnected`` once it was
        closed) only needs ``self.disconnect()``.
        """
        await outbox.get()

    def disconnect(self, websocket: WebSocket) -> None:
        """Forget ``websocket`` and stop its writer. Safe to call twice, and during a broadcast.

        TODO 3: remove the client's outbox and writer from the two dicts, without failing
        when they are already gone (the endpoint, the writer and ``drop()`` may all call
        this), and cancel the writer task so it does not wait for messages forever. The
        writer itself may be the caller (``asyncio.current_task()``): a task that cancels
        itself is cancelled at its next ``await``, so leave that one alone.
        """
        pass

    def drop(self, websocket: WebSocket) -> None:
        """Cast off a client that does not keep up: forget it now, close it in the background."""
        if websocket not in self._outboxes:  # already dropped or gone
            return
        log.warning("dropping a client that does not keep up: %s", websocket.client)
        # TODO 4: disconnect() the client at once, then close it with 1013 "Try Again Later"
        # (``status.WS_1013_TRY_AGAIN_LATER``, reason "too slow") by running ``self._close``
        # in a task of its own: the close frame queues behind everything the client has not
        # read, so whoever waited for it would wait as long as the client stays stuck.
        # The event loop keeps only a weak reference to a task: keep it in ``self._closing``
        # until it is done.
        pass

    async def _close(self, websocket: WebSocket, code: int, reason: str) -> None:
        # uvicorn sends the close frame only once the client has read enough of what is queued
        # before it; one that reads nothing never makes room. Give up after close_timeout: uvicorn
        # still holds that connection (and its endpoint task) until the peer reads or goes away,
        # or a TCP_USER_TIMEOUT or a proxy's idle timeout ends it (notebook 04 shows it).
        # A RuntimeError (WebSocketDisconnected is one) means the connection was closed meanwhile,
        # for instance by uvicorn's keepalive timeout: nothing is left to do.
        with contextlib.suppress(TimeoutError, RuntimeError, WebSocketDisconnect):
            async with asyncio.timeout(self.close_timeout):
                await websocket.close(code, reason)


def create_app(allowed_origins: Collection[str | None] = (None,), max_pending: int = 64,
               send_timeout: float = 1.0) -> FastAPI:
    """The lesson's app; its ``ConnectionManager`` is ``app.state.manager``.

    ``allowed_origins`` follows lesson 3's Origin rule: a handshake is accepted iff its
    ``Origin`` header equals one of them exactly; ``None`` in the list accepts clients that
    send no ``Origin`` (not browsers: scripts, other servers, the course's test clients).
    """
    app = FastAPI(title="Lesson 4: a broadcast that survives")
    manager = app.state.manager = ConnectionManager(max_pending=max_pending, send_timeout=send_timeout)

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket, name: str = "guest"):
        if await refuse_foreign_origin(websocket, allowed_origins):  # lesson 3's Origin rule
            return
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
