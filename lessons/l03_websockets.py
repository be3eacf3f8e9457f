# This is your file: complete the TODOs. (Generated from solutions/l03_websockets.py by `make stubs`.)
"""Lesson 3: HTTP versus WebSocket versus server-sent events.

An app with a stream of events that clients can poll over HTTP (``GET /events``),
have pushed to them over a WebSocket (``/events/push``) or stream as server-sent
events (``GET /events/stream``), and an echo WebSocket that counts its clients.
Five exercises, in file order:

* TODO 1 ``push_events``: push each event at once, and keep reading while you do;
* TODO 2 ``echo``: count the echo clients, however they leave;
* TODO 3 ``echo_messages``: limit the message size;
* TODO 4 ``origin_allowed`` and ``refuse_foreign_origin``: the course's Origin rule;
* TODO 5 ``stream_events``: the same events as server-sent events, resumable, with keep-alive.

What is given: ``EventLog`` (just below), and ``create_app`` at the end of the
file, which wires the routes to your functions. Grade your work with
``make check`` or the self-check cell in notebooks/03_http_vs_websocket.ipynb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Iterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel
from starlette import status

log = logging.getLogger(__name__)
# Pages served by this app itself (on uvicorn's default port), and clients that are not browsers
# (no Origin header: they could send any Origin they like, so refusing them would protect no one).
DEFAULT_ORIGINS = (None, "http://localhost:8000", "http://127.0.0.1:8000")
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_KEEPALIVE_SECONDS = 15.0  # FastAPI's own ping interval for an idle event stream


class EventLog:
    """Events numbered from 1: ``publish`` one, read those ``since`` an id, or take a ``subscription``.

    Everything runs on the server's event loop (in endpoints): the subscribers'
    ``asyncio.Queue`` objects belong to that loop.
    """

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, text: str) -> dict[str, Any]:
        event = {"id": len(self._events) + 1, "text": text, "at": time.time()}
        self._events.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)
        return event

    def since(self, after_id: int) -> list[dict[str, Any]]:
        """The events newer than ``after_id``, oldest first."""
        return self._events[after_id:]

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives every event published while the ``with`` block runs."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


async def push_events(websocket: WebSocket, events: EventLog) -> None:
    """``/events/push``, after the handshake was accepted: each new event to this client, as JSON.

    TODO 1: subscribe (``events.subscription()``) and send each event from its
    queue with ``send_json`` as soon as it arrives. A push client may also send
    messages (they are ignored), and a loop that never reads breaks two ways:
    the server stops reading the connection once a message waits unread, so
    the client's answers to uvicorn's keep-alive pings go unread and it is cut
    off with 1011 after ``ws_ping_interval + ws_ping_timeout``; and the news
    that the server is shutting down also arrives as a received message
    (``WebSocketDisconnect``), so a loop that never reads holds shutdown
    forever. So send and receive at the same time, and stop both as soon as
    either ends. A client leaving is the normal end: no error, log it at INFO.
    """
    await websocket.close(reason="TODO 1: push each new event to this client")


async def echo(websocket: WebSocket, clients: set[WebSocket], max_message_bytes: int) -> None:
    """``/echo``, after the handshake was accepted: keep ``clients`` right around the echo loop.

    TODO 2: add this websocket to ``clients``, and remove it however the
    connection ends: the client closes, vanishes, or sends a message that is
    too big. When the client leaves, receive_text() raises WebSocketDisconnect
    (its .code says how): that is the normal end of a WebSocket, not an
    error, so handle it and log it at INFO level with its code.
    """
    clients.add(websocket)
    await echo_messages(websocket, max_message_bytes)


async def echo_messages(websocket: WebSocket, max_message_bytes: int) -> None:
    """Send every text message straight back, until the client leaves."""
    while True:
        message = await websocket.receive_text()
        # TODO 3: a message longer than `max_message_bytes` (count UTF-8 bytes,
        # not characters) is refused: close the WebSocket with the "message too
        # big" code (starlette.status has it) and a short reason, and stop
        # echoing.
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
    return True


async def refuse_foreign_origin(websocket: WebSocket, allowed_origins: Collection[str | None]) -> bool:
    """Refuse the handshake unless the client comes from an allowed origin; say whether it was refused.

    Call it before ``accept()``: ``if await refuse_foreign_origin(websocket, allowed): return``.

    TODO 4 (continued): if the handshake's ``Origin`` is not allowed by
    :func:`origin_allowed`, close the WebSocket with the policy-violation code
    *before* accepting it, and return True. Otherwise return False (the caller
    then accepts).
    """
    return False


async def stream_events(events: EventLog, last_event_id: int | None,
                        keepalive_seconds: float) -> AsyncIterator[ServerSentEvent]:
    """``GET /events/stream``: the events as server-sent events, for as long as the client stays.

    TODO 5: yield each event as a ``ServerSentEvent`` whose ``data`` is the
    event and whose ``id`` is its id, as text: a browser's ``EventSource``
    remembers the last id it saw and, when the connection drops, reconnects
    on its own with that id in the ``Last-Event-ID`` header, which arrives
    here as ``last_event_id`` (None on a first connection: then send only
    the events published from now on, as push does). On a reconnect, first
    the events the client missed (newer than ``last_event_id``), then each
    new one as it is published: none lost in between, none twice. And when
    no event has come for ``keepalive_seconds``, yield a comment (a
    ``ServerSentEvent`` with only a ``comment``), so that proxies see traffic
    and keep the idle connection open, and a client that left is noticed.
    """
    yield ServerSentEvent(comment="TODO 5: stream the events")


class Event(BaseModel):
    text: str


def create_app(allowed_origins: Collection[str | None] = DEFAULT_ORIGINS,
               max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
               keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS) -> FastAPI:
    """The lesson's app. ``app.state.clients`` is the set of echo clients; ``app.state.events`` the events."""
    app = FastAPI(title="Lesson 3: HTTP versus WebSocket versus server-sent events")
    clients: set[WebSocket] = set()
    events = EventLog()
    app.state.clients, app.state.events = clients, events

    @app.post("/events", status_code=status.HTTP_201_CREATED)
    async def publish_event(event: Event):
        return events.publish(event.text)

    @app.get("/events")
    async def poll_events(after: int = Query(0, ge=0, description="the last event id you have seen")):
        return {"events": events.since(after)}

    @app.get("/events/stream", response_class=EventSourceResponse)
    async def stream(last_event_id: Annotated[int | None, Header(ge=0)] = None):
        async with contextlib.aclosing(stream_events(events, last_event_id, keepalive_seconds)) as items:
            async for item in items:  # (FastAPI streams what an endpoint yields; this one passes yours on)
                yield item

    @app.websocket("/events/push")
    async def push(websocket: WebSocket):
        if await refuse_foreign_origin(websocket, allowed_origins):
            return
        await websocket.accept()
        await push_events(websocket, events)

    @app.websocket("/echo")
    async def echo_endpoint(websocket: WebSocket):
        if await refuse_foreign_origin(websocket, allowed_origins):
            return
        await websocket.accept()
        await echo(websocket, clients, max_message_bytes)

    return app
