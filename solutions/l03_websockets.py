"""Lesson 3: HTTP versus WebSocket.

An app with a stream of events that clients can either poll over HTTP or have
pushed to them over a WebSocket, and an echo WebSocket that counts its clients.
Four exercises: push events (TODO 1), count clients however they leave (TODO 2),
limit the message size (TODO 3), refuse foreign origins (TODO 4). Grade them
with ``make check`` or the self-check cell in notebooks/03_http_vs_websocket.ipynb.

What is given: ``ConnectedClients`` and ``EventLog`` (both safe to read and
wait on from another thread, such as a test or a notebook), ``POST /events``
to publish an event, and ``GET /events?after=N`` to poll for new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Collection, Iterator
from typing import Any

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect, status
from pydantic import BaseModel

log = logging.getLogger(__name__)
# Pages served by this app itself (uvicorn's default port), and clients that are not browsers (no Origin).
DEFAULT_ORIGINS = (None, "http://localhost:8000", "http://127.0.0.1:8000")
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024


class ConnectedClients:
    """The echo WebSockets connected right now."""

    def __init__(self) -> None:
        self._sockets: set[WebSocket] = set()
        self._changed = threading.Condition()  # the server's thread writes, tests and notebooks read

    def add(self, websocket: WebSocket) -> None:
        with self._changed:
            self._sockets.add(websocket)
            self._changed.notify_all()

    def remove(self, websocket: WebSocket) -> None:
        with self._changed:
            self._sockets.discard(websocket)
            self._changed.notify_all()

    @property
    def count(self) -> int:
        with self._changed:
            return len(self._sockets)

    def wait_for_count(self, expected: int, timeout: float) -> int:
        """Block until ``expected`` clients are connected or ``timeout`` seconds pass; return the count."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._sockets) == expected, timeout)
            return len(self._sockets)


class EventLog:
    """Events numbered from 1, for pollers (``since``) and push subscribers (``subscription``).

    ``publish`` and ``subscription`` run on the server's event loop (in endpoints):
    the subscribers' ``asyncio.Queue`` objects belong to that loop.
    """

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._changed = threading.Condition()

    def publish(self, text: str) -> dict[str, Any]:
        with self._changed:
            event = {"id": len(self._events) + 1, "text": text, "at": time.time()}
            self._events.append(event)
            subscribers = list(self._subscribers)
        for queue in subscribers:
            queue.put_nowait(event)
        return event

    def since(self, after_id: int) -> list[dict[str, Any]]:
        """The events newer than ``after_id``, oldest first."""
        with self._changed:
            return self._events[after_id:]

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives every event published while the ``with`` block runs."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        with self._changed:
            self._subscribers.add(queue)
            self._changed.notify_all()
        try:
            yield queue
        finally:
            with self._changed:
                self._subscribers.discard(queue)
                self._changed.notify_all()

    @property
    def subscriber_count(self) -> int:
        with self._changed:
            return len(self._subscribers)

    def wait_for_subscribers(self, expected: int, timeout: float) -> int:
        """Block until ``expected`` push clients are subscribed or ``timeout`` seconds pass; return the count."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._subscribers) == expected, timeout)
            return len(self._subscribers)


class Event(BaseModel):
    text: str


def create_app(allowed_origins: Collection[str | None] = DEFAULT_ORIGINS,
               max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> FastAPI:
    """The lesson's app. ``app.state.clients`` counts echo clients; ``app.state.events`` holds the events."""
    app = FastAPI(title="Lesson 3: HTTP versus WebSocket")
    clients = app.state.clients = ConnectedClients()
    events = app.state.events = EventLog()

    @app.post("/events", status_code=201)
    async def publish_event(event: Event):
        return events.publish(event.text)

    @app.get("/events")
    async def poll_events(after: int = Query(0, ge=0, description="the last event id you have seen")):
        return {"events": events.since(after)}

    @app.websocket("/events/push")
    async def push_events(websocket: WebSocket):
        if await refuse_foreign_origin(websocket, allowed_origins):
            return
        await websocket.accept()
        # TODO 1: push every new event to this client as JSON, as soon as it is
        # published. Subscribe with `events.subscription()`, then wait for each
        # event on the queue it gives you and send it. This loop never reads, so
        # it learns that the client left only when a send fails with
        # WebSocketDisconnect: end quietly then (the subscription must end too).
        ### SOLUTION
        with events.subscription() as new_events:
            try:
                while True:
                    await websocket.send_json(await new_events.get())
            except WebSocketDisconnect as exc:
                log.info("push client left with close code %s", exc.code)
        ### STUB
        # await websocket.close(reason="TODO 1: push each new event to this client")
        ### END

    @app.websocket("/echo")
    async def echo(websocket: WebSocket):
        if await refuse_foreign_origin(websocket, allowed_origins):
            return
        await websocket.accept()
        # TODO 2: keep `clients` right. Add this websocket after accepting it,
        # and remove it however the connection ends: the client closes, vanishes,
        # or sends a message that is too big. When the client leaves,
        # receive_text() raises WebSocketDisconnect (its .code says how): that is
        # the normal end of a WebSocket, not an error, so handle it and log it at
        # INFO level with its code.
        ### SOLUTION
        clients.add(websocket)
        try:
            await echo_messages(websocket, max_message_bytes)
        except WebSocketDisconnect as exc:
            log.info("echo client left with close code %s", exc.code)
        finally:
            clients.remove(websocket)
        ### STUB
        # clients.add(websocket)
        # await echo_messages(websocket, max_message_bytes)
        ### END

    return app


async def echo_messages(websocket: WebSocket, max_message_bytes: int) -> None:
    """Send every text message straight back, until the client leaves."""
    while True:
        message = await websocket.receive_text()
        # TODO 3: a message longer than `max_message_bytes` (count UTF-8 bytes,
        # not characters) is refused: close the WebSocket with the "message too
        # big" code (1009) and a short reason, and stop echoing (return).
        ### SOLUTION
        if len(message.encode()) > max_message_bytes:
            await websocket.close(code=status.WS_1009_MESSAGE_TOO_BIG,
                                  reason=f"messages are limited to {max_message_bytes} bytes")
            return
        ### STUB
        ### END
        await websocket.send_text(message)


def origin_allowed(origin: str | None, allowed_origins: Collection[str | None]) -> bool:
    """THE ORIGIN RULE of this course (lesson 4 uses it too).

    ``origin`` is the handshake's ``Origin`` header, or None when there is none.
    It is allowed iff it equals one of ``allowed_origins`` exactly: the same
    string, not a prefix, not a part, not the same letters in another case.
    A browser always sends ``Origin`` with a WebSocket handshake, so no
    ``Origin`` means the client is not a browser: it is allowed iff ``None``
    is one of ``allowed_origins``.

    TODO 4: return whether ``origin`` is allowed by that rule.
    """
    ### SOLUTION
    return origin in allowed_origins
    ### STUB
    # return True
    ### END


async def refuse_foreign_origin(websocket: WebSocket, allowed_origins: Collection[str | None]) -> bool:
    """Refuse the handshake unless the client comes from an allowed origin; say whether it was refused.

    Call it before ``accept()``: ``if await refuse_foreign_origin(websocket, allowed): return``.

    TODO 4 (continued): if the handshake's ``Origin`` is not allowed by
    :func:`origin_allowed`, close the WebSocket with the policy-violation code
    *before* accepting it, and return True. Otherwise return False (the caller
    then accepts).
    """
    ### SOLUTION
    if origin_allowed(websocket.headers.get("origin"), allowed_origins):
        return False
    await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
    return True
    ### STUB
    # return False
    ### END
