"""Lesson 6: one feed across several worker processes, through a Redis stream.

``uvicorn --workers 2`` runs two processes, each with its own lesson-4 ``ConnectionManager``:
alone, a message reaches only the clients of the sender's worker. Here every worker
*publishes* what its clients say to one Redis stream (``XADD``), and every worker *follows*
that stream with one reader task (``XREAD`` from the last id it has seen) that feeds its own
manager. So every client, on any worker, gets every message, in the stream's order, with
the stream's id:  ``{"id": "1733000000000-0", "text": "alice: hello"}``.

Four exercises, TODO 1 to 4, in file order:

1. ``publish``: append a message to the stream, keeping it bounded;
2. ``Relay._follow``: read the stream from the last id and feed the manager;
3. ``Relay.run``: when Redis goes away, try again with a growing, jittered delay, keeping the
   last id, so nothing published meanwhile is missed;
4. ``catch_up``: a client that reconnects with ``?after=<id>`` first gets what it missed.

Grade them with ``make check`` or the self-check cell in notebooks/06_scale_out.ipynb.

Run it:  ``REDIS_URL=redis://127.0.0.1:PORT/0 uvicorn --factory lessons.l06_scale_out:create_app --workers 2``

Given (reused by import, not copied): lesson 4's ``ConnectionManager`` (bounded outbox and
writer task per client: a client that does not read is dropped) and lesson 3's Origin rule.
So finish lessons 3 and 4 first: this lesson's app delivers through your lesson-4 manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections.abc import Collection
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, WebSocket, WebSocketDisconnect, status
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnected

from .l03_websockets import refuse_foreign_origin
from .l04_broadcast import ConnectionManager

log = logging.getLogger(__name__)

STREAM = "course:l06:feed"  # the one Redis stream every worker writes to and reads from
KEEP = 1000                 # keep at least this many messages for clients that reconnect
BLOCK_MS = 1000             # one XREAD waits at most this long for something new
READ_BATCH = 100            # entries per XREAD, and per page of a catch-up
MAX_PENDING = 4 * READ_BATCH  # lesson 4's outbox bound: a burst of a few reads must fit in it
BACKOFF_FIRST = 0.1         # seconds: the first wait before trying Redis again ...
BACKOFF_MAX = 2.0           # ... doubling up to this, each wait jittered
CATCH_UP_TIMEOUT = 10.0     # a reconnecting client must take its backlog within this time
REDIS_FAILURES = (RedisError, OSError)  # what a Redis call raises when the server is away


def message(entry_id: str, text: str) -> str:
    """The JSON text every client receives for one stream entry."""
    return json.dumps({"id": entry_id, "text": text})


async def publish(redis: aioredis.Redis, text: str) -> str:
    """Append ``text`` (already ``"<name>: <text>"``) to the stream; return the id Redis gave it.

    TODO 1: one ``XADD`` to ``STREAM`` with the text in a field named ``text``, letting Redis
    pick the id (each one greater than the last: the stream's order is everyone's order). Keep the stream
    bounded, about ``KEEP`` entries: ask Redis to trim it as it adds, the cheap approximate
    way (exact trimming costs more and nothing here needs it). Without a bound the stream
    grows for ever; with too small a bound a client that was away cannot catch up.
    """
    ### SOLUTION
    return await redis.xadd(STREAM, {"text": text}, maxlen=KEEP, approximate=True)
    ### STUB
    # return "0-0"  # publishes nothing yet
    ### END


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as numbers, so ids compare as Redis compares them ("9-0" < "10-0")."""
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


class Relay:
    """This worker's one reader of the stream: everything in it goes to this worker's clients.

    ``last_id`` is the id of the last entry handed to the manager (None until the relay first
    reached Redis); ``connected`` says whether it is reading right now.
    """

    def __init__(self, redis_url: str, manager: ConnectionManager) -> None:
        self.redis_url = redis_url
        self.manager = manager
        self.redis: aioredis.Redis | None = None
        self.last_id: str | None = None
        self.connected = False
        self.reconnects = 0
        self.ready = asyncio.Event()  # set once the relay knows where to read from
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait: float = 3.0) -> None:
        """Connect (lazily) and start reading; wait a little for the first position, not for ever."""
        # One immediate retry inside redis-py (a pooled connection that Redis closed is reopened at once);
        # waiting for Redis to come back is this lesson's job (TODO 3), and publish reports failures.
        self.redis = aioredis.Redis.from_url(self.redis_url, decode_responses=True, socket_connect_timeout=1,
                                             socket_timeout=BLOCK_MS / 1000 + 2, retry=Retry(NoBackoff(), 1))
        self._task = asyncio.create_task(self.run(), name="redis-relay")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.redis is not None:
            await self.redis.aclose()

    async def _resume_point(self) -> str:
        """Where to read from after (re)connecting: the last id, unless the stream was lost.

        On the first start: the newest entry (this worker's clients are all new).
        A Redis restarted without persistence comes back with an empty stream; its newest entry
        is then older than our last id, and everything now in it is new to us: read from the start.
        """
        newest = await self.redis.xrevrange(STREAM, count=1)
        newest_id = newest[0][0] if newest else "0-0"
        if self.last_id is None:
            position = newest_id
        elif id_key(newest_id) < id_key(self.last_id):
            log.warning("the stream is older than our last id %s: Redis lost it; reading it from the start",
                        self.last_id)
            position = "0-0"
        else:
            position = self.last_id
        self.ready.set()
        return position

    async def _follow(self) -> None:
        """Read the stream for ever, from ``self.last_id``, and hand each entry to the manager.

        TODO 2: wait for entries after ``self.last_id`` (a blocking ``XREAD`` of at most
        ``READ_BATCH`` entries, waiting ``BLOCK_MS``; an empty reply just means "nothing new
        yet"). Broadcast each entry, in order, as ``message(id, text)`` through the manager, and
        remember its id as the new ``self.last_id``: the next read continues after it. Reading
        "only what is new from now on" each time instead would miss whatever arrived between two
        reads; not moving the last id on would deliver the same entries again and again.
        """
        ### SOLUTION
        while True:
            reply = await self.redis.xread({STREAM: self.last_id}, count=READ_BATCH, block=BLOCK_MS)
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    self.manager.broadcast(message(entry_id, fields["text"]))
                    self.last_id = entry_id
        ### STUB
        # await asyncio.Event().wait()  # reads nothing yet
        ### END

    async def run(self) -> None:
        """The relay task: follow the stream for as long as the worker runs, whatever Redis does.

        TODO 3: when a Redis call fails (any of ``REDIS_FAILURES``: the server restarted, was
        killed, is not up yet), log it, wait, and start again: find the resume point
        (``self._resume_point()``, which keeps ``self.last_id`` unless the stream was lost) and
        follow from there. Wait ``BACKOFF_FIRST`` seconds the first time, twice as long each
        time it fails again, never more than ``BACKOFF_MAX``, and back to the first delay once a
        connection worked. Jitter each wait (a random part of it) so that many workers do not
        all hammer Redis at the same instant when it comes back. Keep ``self.connected`` true
        only while following. Symptom of getting it wrong: after a Redis restart the feed stays
        silent although Redis is up, or messages published meanwhile never arrive.
        """
        ### SOLUTION
        delay = BACKOFF_FIRST
        while True:
            try:
                self.last_id = await self._resume_point()
                self.connected, delay = True, BACKOFF_FIRST
                await self._follow()
            except REDIS_FAILURES as exc:
                log.warning("Redis is unreachable (%s); trying again in up to %.1f s", exc, delay)
            self.connected = False
            self.reconnects += 1
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(2 * delay, BACKOFF_MAX)
        ### STUB
        # self.last_id = await self._resume_point()
        # self.connected = True
        # await self._follow()
        ### END


async def catch_up(websocket: WebSocket, relay: Relay, after: str) -> None:
    """Send a reconnecting client, in order, every kept entry after ``after`` that the relay has passed.

    When this returns, the caller registers the client with the manager *without awaiting
    anything in between*, so the manager's live feed starts exactly after ``relay.last_id``.

    TODO 4: while the client's position (start: ``after``) is before ``relay.last_id``, read
    the stream's entries after the client's position and up to ``relay.last_id`` (``XRANGE``,
    at most ``READ_BATCH`` at a time; "after" means the position itself is excluded) and send
    each one with ``message(...)``, moving the client's position on. The relay may move on
    while you read and send: look at ``relay.last_id`` again after every page. If a page
    comes back empty although the position is before ``relay.last_id``, those entries are no
    longer kept: move the position to ``relay.last_id``. Symptoms: a gap between the backlog
    and the live messages, the message with id ``after`` sent again, or only the first page.
    """
    ### SOLUTION
    position = after
    while id_key(position) < id_key(relay.last_id):
        upto = relay.last_id
        entries = await relay.redis.xrange(STREAM, min=f"({position}", max=upto, count=READ_BATCH)
        if not entries:
            position = upto
        for entry_id, fields in entries:
            await websocket.send_text(message(entry_id, fields["text"]))
            position = entry_id
    ### STUB
    # pass  # sends no backlog yet
    ### END


class _Accepted:
    """A WebSocket that is already accepted, for lesson 4's manager (whose ``connect`` accepts).

    The endpoint accepts first so that ``catch_up`` can send the backlog; the manager then
    registers the client without accepting twice. Everything else goes to the real WebSocket.
    """

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    async def accept(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._websocket, name)


async def _tell(websocket: WebSocket, payload: dict, timeout: float = 1.0) -> None:
    """Send one JSON message to one client (an error about its own message), bounded in time."""
    with contextlib.suppress(TimeoutError, WebSocketDisconnect, WebSocketDisconnected, RuntimeError):
        async with asyncio.timeout(timeout):
            await websocket.send_text(json.dumps(payload))


def create_app(redis_url: str | None = None, allowed_origins: Collection[str | None] = (None,)) -> FastAPI:
    """The feed app: ``WebSocket /ws?name=<name>[&after=<id>]`` and ``GET /relay`` (this worker's state).

    ``redis_url=None`` reads ``$REDIS_URL``, so ``uvicorn --factory ... --workers 2`` runs it.
    ``app.state.manager`` is this worker's lesson-4 manager, ``app.state.relay`` its relay.
    """
    redis_url = redis_url or os.environ.get("REDIS_URL")
    if not redis_url:
        raise RuntimeError("no Redis: pass create_app(redis_url=...) or set REDIS_URL")
    origins = frozenset(allowed_origins)
    manager = ConnectionManager(max_pending=MAX_PENDING)
    relay = Relay(redis_url, manager)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    app = FastAPI(title="Lesson 6: one feed across workers", lifespan=lifespan)
    app.state.manager, app.state.relay = manager, relay

    @app.get("/relay")
    async def relay_state() -> dict:
        return {"pid": os.getpid(), "clients": len(manager), "last_id": relay.last_id,
                "connected": relay.connected, "reconnects": relay.reconnects}

    @app.websocket("/ws")
    async def feed(websocket: WebSocket, name: str = "guest", after: str | None = None):
        if await refuse_foreign_origin(websocket, origins):
            return
        try:
            after_key = id_key(after) if after else None
        except ValueError:
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="after must be a stream id")
            return
        await websocket.accept()
        if after_key is not None:
            if relay.last_id is None:
                await _tell(websocket, {"error": "the feed has not reached Redis yet; reconnect in a moment"})
                await websocket.close(code=status.WS_1013_TRY_AGAIN_LATER)
                return
            # A client coming from another worker may have seen more than our relay has read yet:
            # give the relay a moment to get there, or the live feed would repeat what the client has.
            for _ in range(50):
                if after_key <= id_key(relay.last_id):
                    break
                await asyncio.sleep(0.02)
            try:
                async with asyncio.timeout(CATCH_UP_TIMEOUT):
                    await catch_up(websocket, relay, after)
            except REDIS_FAILURES as exc:
                await _tell(websocket, {"error": f"cannot replay what you missed, Redis is unreachable ({exc})"})
                await websocket.close(code=status.WS_1013_TRY_AGAIN_LATER)
                return
            except TimeoutError:
                await websocket.close(code=status.WS_1013_TRY_AGAIN_LATER, reason="too slow to catch up")
                return
            except (WebSocketDisconnect, WebSocketDisconnected):
                return
        client = _Accepted(websocket)
        await manager.connect(client)  # no await in between: the live feed starts right after the backlog
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    await publish(relay.redis, f"{name}: {text}")
                except REDIS_FAILURES as exc:  # never lose a message silently: tell its sender
                    await _tell(websocket, {"error": f"not sent, Redis is unreachable ({exc}): {text!r}"})
        except (WebSocketDisconnect, WebSocketDisconnected):
            pass
        finally:
            manager.disconnect(client)

    return app
