# This is your file: complete the TODOs. (Generated from solutions/l07_capstone.py by `make stubs`.)
"""Lesson 7, the capstone: the blog's upload app done right, in a real browser.

One page (``GET /``) with a form. The browser uploads a file with ``XMLHttpRequest`` (it reports
the bytes sent; ``fetch`` does not); the app streams it to disk under its size limit (lesson 2),
hands the processing to a durable job on the queue (lesson 5), and the job's progress and its
result travel to every open page, on any worker, through lesson 6's relay over a WebSocket::

    browser --POST /uploads--> web worker --save_stream--> disk
                                          --kiq---------> queue worker --progress, "processed"--> Redis stream
    browser <--WebSocket /ws-- any web worker <--relay (lesson 6)----------------------------------'

Composed, not copied: the WebSocket endpoint, the relay, the catch-up after ``?after=<id>`` and
lesson 4's manager are lesson 6's ``create_app`` itself; this file puts a gate in front of its
``/ws`` (whose Origin and session may open it) and adds the page, the upload and the job.

Five exercises, TODO 1 to 5:

1. ``origin_allowed_here``: lesson 3's Origin rule, plus "the page's own origin", whatever port
   the app runs on;
2. ``session_valid``: only a browser that loaded the page (and got its cookie) opens the feed;
3. ``announce_once``: the job may run twice (at least once delivery); its line must appear once;
4. and 5, in ``l07_capstone.js`` (next to this file, served to the page as ``/live.js``):
   the reconnect delay with backoff and jitter, and the reconnect-and-resume loop, graded in Chromium.

Grade them with ``make check`` or the self-check cell in notebooks/07_capstone.ipynb.

Run it (with a queue worker, see ``worker_command``)::

    REDIS_URL=redis://127.0.0.1:PORT/0 uvicorn --factory lessons.l07_capstone:create_app --workers 2
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
import uuid
from collections.abc import Collection
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from redis.exceptions import WatchError
from starlette import status
from starlette.concurrency import run_in_threadpool
from taskiq import TaskiqDepends, TaskiqState, async_shared_broker

import course
from course.multipart import open_file_field
from course.queue import DurableStreamBroker, worker_argv

from . import l06_scale_out as relay_lesson
from .l02_uploads import display_name, finish_upload, init_db, record_pending, save_stream, storage_path
from .l03_websockets import origin_allowed

MiB = 1024 * 1024
MAX_UPLOAD_BYTES = 64 * MiB
SAME_ORIGIN = "same-origin"  # in allowed_origins: "the page's own origin", the one whose host:port is the Host
SESSION_COOKIE = "session"
SESSION_SECONDS = 24 * 3600
PROCESS_STEPS = 10           # the job reports its progress this many times
PROCESS_STEP_SECONDS = 0.05  # and works (sleeps) this long per step, so the progress is visible
UPLOAD_DIR_ENV = "CAPSTONE_UPLOAD_DIR"  # how a queue worker learns where the uploads are
HERE = Path(__file__).resolve().parent
STATIC = Path(course.__file__).resolve().parent / "capstone_static"  # the page: given, not an exercise
LIVE_JS = HERE / "l07_capstone.js"  # YOUR page code (its two exercises), next to this file


# --- TODO 1: the page's own origin --------------------------------------------------------

def origin_allowed_here(origin: str | None, host: str | None, allowed_origins: Collection[str | None]) -> bool:
    """Lesson 3's Origin rule, plus one entry: ``SAME_ORIGIN`` in ``allowed_origins`` allows the
    page's own origin, the one the app serves the page from, on whatever host and port that is.

    ``origin`` is the handshake's ``Origin`` header (None if absent), ``host`` its ``Host`` header.

    TODO 1: allow ``origin`` if lesson 3's ``origin_allowed`` allows it against the OTHER entries
    of ``allowed_origins`` (the sentinel is not an origin), or if ``SAME_ORIGIN`` is one of them
    and ``origin`` is ``http://`` or ``https://`` followed by exactly ``host``, nothing else (no
    path, no user, no other port: ``urllib.parse.urlsplit`` takes it apart). A missing ``Origin``
    or ``Host`` is never "the same origin". Symptom: a page on another port of the same machine
    opens the feed (same site: it even sends the user's cookies), or your own page cannot.
    """
    return True  # TODO 1: every page is let in


# --- TODO 2: the session ------------------------------------------------------------------------

class Sessions:
    """Sessions in Redis (``capstone:session:<token>``), so every worker knows every session."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @staticmethod
    def key(token: str) -> str:
        return f"capstone:session:{token}"

    async def create(self) -> str:
        token = secrets.token_urlsafe(24)
        await self.redis.set(self.key(token), "1", ex=SESSION_SECONDS)
        return token


async def session_valid(sessions: Sessions, token: str | None) -> bool:
    """Whether ``token`` (the ``session`` cookie of a handshake, None if it has none) is a session
    this app created.

    TODO 2: a missing or empty cookie is no session; otherwise the session is valid iff its key
    (``sessions.key(token)``) exists in Redis (``sessions.redis``). Never trust the cookie's mere
    presence: anyone can send ``session=anything``. Symptom: a script with a made-up cookie, or a
    browser that never loaded the page, gets the feed.
    """
    return True  # TODO 2: no session is checked


# --- the gate in front of lesson 6's /ws -----------------------------------------------------------

class FeedGate:
    """ASGI middleware: a WebSocket handshake on ``/ws`` passes only with an allowed ``Origin`` (TODO 1)
    and a valid session cookie (TODO 2); otherwise it is refused before ``accept()`` (uvicorn answers
    403, and the page's WebSocket closes without ever opening). A handshake that passes goes on to
    lesson 6's endpoint without its ``Origin`` header (already judged here: lesson 6's exact list,
    ``(None,)``, then lets it in), and the first message on it says which worker process holds it."""

    def __init__(self, app, allowed_origins: Collection[str | None]) -> None:
        self.app = app
        self.allowed_origins = tuple(allowed_origins)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket" or scope["path"] != "/ws":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = _cookies(headers.get("cookie", ""))
        sessions = Sessions(scope["app"].state.redis)
        if not (origin_allowed_here(headers.get("origin"), headers.get("host"), self.allowed_origins)
                and await session_valid(sessions, cookies.get(SESSION_COOKIE))):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": status.WS_1008_POLICY_VIOLATION, "reason": ""})
            return
        inner = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k.lower() != b"origin"])

        async def send_with_hello(message) -> None:
            await send(message)
            if message["type"] == "websocket.accept":
                await send({"type": "websocket.send", "text": json.dumps({"hello": {"worker": os.getpid()}})})

        await self.app(inner, receive, send_with_hello)


def _cookies(header: str) -> dict[str, str]:
    pairs = (part.strip().partition("=") for part in header.split(";") if "=" in part)
    return {name: value for name, _, value in pairs}


# --- the uploads' records, and the job ------------------------------------------------------------

class Uploads:
    """Each upload is a Redis hash ``capstone:upload:<id>``: name, size, where it is stored, status, done
    (steps), sha256."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @staticmethod
    def key(upload_id: str) -> str:
        return f"capstone:upload:{upload_id}"

    async def create(self, upload_id: str, name: str, size: int, path: Path) -> None:
        await self.redis.hset(self.key(upload_id), mapping={"name": name, "size": size, "path": str(path),
                                                            "status": "queued", "done": 0, "steps": PROCESS_STEPS})

    async def get(self, upload_id: str) -> dict | None:
        fields = await self.redis.hgetall(self.key(upload_id))
        if not fields:
            return None
        return {"id": upload_id, "name": fields["name"], "size": int(fields["size"]), "status": fields["status"],
                "done": int(fields["done"]), "steps": int(fields["steps"]), "sha256": fields.get("sha256"),
                "path": fields.get("path")}


def event_text(kind: str, **fields) -> str:
    """What the capstone puts in a feed entry's ``text``: JSON the page reads (``kind`` says which)."""
    return json.dumps({"kind": kind, **fields})


def processed_text(upload_id: str, name: str, size: int, sha256: str) -> str:
    return event_text("processed", upload=upload_id, name=name, size=size, sha256=sha256)


async def announce_once(redis: Redis, upload_id: str, text: str) -> str | None:
    """Add the feed line ``text`` for upload ``upload_id`` to lesson 6's stream, once per upload
    however often the job runs; return its stream id, or None if it had been announced already.

    TODO 3: a job runs at least once, so twice sometimes (lesson 5): a second run must not add a
    second line. Mark the upload's record (``Uploads.key``) with a field ``announced`` in the SAME
    transaction as the ``XADD``, and add nothing if the field is there: watch the key
    (``async with redis.pipeline(transaction=True) as pipe: await pipe.watch(key)``), read the
    field (the pipe runs commands at once while it watches), and if it is not set, ``pipe.multi()``,
    queue the ``XADD`` (``relay_lesson.STREAM``, bounded as in lesson 6: ``maxlen=relay_lesson.KEEP``,
    approximate) and the ``HSET``, and ``await pipe.execute()``. If another run changed the key in
    between, ``execute`` raises ``WatchError``: try again. Checking first and adding after, in two
    steps, lets two runs both see "not yet"; marking after the XADD outside the transaction lets a
    crash in between announce twice.
    """
    key = Uploads.key(upload_id)
    raise NotImplementedError("TODO 3: announce the processed upload in the feed, once")


@async_shared_broker.task(task_name="l07_capstone.process_upload")
async def process_upload(upload_id: str, state: TaskiqState = TaskiqDepends()) -> None:
    """The job, in a queue worker: hash the upload step by step (telling the feed how far it got),
    record the result in SQLite (lesson 2's row) and in Redis, and announce it once (TODO 3)."""
    uploads = Uploads(state.redis)
    record = await uploads.get(upload_id)
    if record is None:
        return
    # Where the web process stored it (a worker started with another upload folder still finds it).
    path = Path(record["path"]) if record["path"] else storage_path(Path(os.environ[UPLOAD_DIR_ENV]), upload_id)
    await state.redis.hset(uploads.key(upload_id), mapping={"status": "running", "done": 0})
    digest = hashlib.sha256()
    step_bytes = max(1, -(-record["size"] // PROCESS_STEPS))
    with path.open("rb") as file:
        for step in range(1, PROCESS_STEPS + 1):
            digest.update(await asyncio.to_thread(file.read, step_bytes))
            await asyncio.sleep(PROCESS_STEP_SECONDS)  # the "work": visible progress, cancellable
            await state.redis.hset(uploads.key(upload_id), "done", step)
            await relay_lesson.publish(state.redis, event_text("progress", upload=upload_id, done=step,
                                                               steps=PROCESS_STEPS))
    sha256 = digest.hexdigest()
    await asyncio.to_thread(init_db, state.db_path)  # the worker's database may be a new file
    await asyncio.to_thread(finish_upload, state.db_path, upload_id, path, lambda _path: sha256)
    await state.redis.hset(uploads.key(upload_id), mapping={"status": "done", "sha256": sha256})
    await announce_once(state.redis, upload_id, processed_text(upload_id, record["name"], record["size"], sha256))


def worker_command(redis_url: str, db_path: Path, upload_dir: Path) -> list[str]:
    """The argv of one queue worker for the capstone's jobs (run it with the checkout as working directory).

    The worker learns where the uploads are from ``$CAPSTONE_UPLOAD_DIR`` (``env`` sets it)."""
    return ["env", f"{UPLOAD_DIR_ENV}={Path(upload_dir).resolve()}",
            *worker_argv(__name__, redis_url=redis_url, db_path=db_path, redeliver_after=5.0)]


# --- the app ----------------------------------------------------------------------------------------

def create_app(upload_dir: str | Path | None = None, db_path: str | Path | None = None, redis_url: str | None = None,
               allowed_origins: Collection[str | None] = (SAME_ORIGIN,),
               max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The capstone: lesson 6's feed app, gated, plus the page and the upload.

    ``redis_url=None`` reads ``$REDIS_URL`` (so ``uvicorn --factory ... --workers 2`` runs it);
    likewise ``upload_dir`` and ``db_path`` default to ``$CAPSTONE_UPLOAD_DIR`` and
    ``$CAPSTONE_DB_PATH``, else ``course-capstone/`` in the temporary folder (the same for every worker).
    Only the page's own origin may open the feed by default (``SAME_ORIGIN``).
    """
    redis_url = redis_url or os.environ.get("REDIS_URL")
    if not redis_url:
        raise RuntimeError("no Redis: pass create_app(redis_url=...) or set REDIS_URL")
    default = Path(tempfile.gettempdir()) / "course-capstone"
    upload_dir = Path(upload_dir or os.environ.get(UPLOAD_DIR_ENV) or default / "uploads").resolve()
    db_path = Path(db_path or os.environ.get("CAPSTONE_DB_PATH") or default / "uploads.db")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    upload_dir.mkdir(parents=True, exist_ok=True)
    init_db(db_path)
    app = relay_lesson.create_app(redis_url)  # WebSocket /ws?after=<id>, GET /relay, the relay in its lifespan
    app.title = "Lesson 7: the capstone"
    feed_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.redis = Redis.from_url(redis_url, decode_responses=True)
        app.state.broker = DurableStreamBroker(redis_url)  # only sends jobs from here
        await app.state.broker.startup()
        try:
            async with feed_lifespan(app):
                yield
        finally:
            await app.state.broker.shutdown()
            await app.state.redis.aclose()

    app.router.lifespan_context = lifespan
    app.add_middleware(FeedGate, allowed_origins=allowed_origins)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request):
        response = HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))
        token = request.cookies.get(SESSION_COOKIE)
        if not token or not await app.state.redis.exists(Sessions.key(token)):  # a new visitor: a new session
            response.set_cookie(SESSION_COOKIE, await Sessions(app.state.redis).create(), max_age=SESSION_SECONDS,
                                httponly=True, samesite="lax")
        return response

    @app.get("/live.js")
    async def live_js():
        return FileResponse(LIVE_JS, media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico")
    async def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/worker")
    async def worker():
        return {"pid": os.getpid()}

    @app.post("/uploads", status_code=status.HTTP_202_ACCEPTED)
    async def upload(request: Request):
        # No session needed to upload (the feed shows uploads to everyone; a session would prove nothing:
        # anyone gets one by loading the page). Lesson 2's limits apply to every upload.
        client_filename, chunks = await open_file_field(request, "file")
        name = display_name(client_filename)
        upload_id = uuid.uuid4().hex
        path = storage_path(upload_dir, upload_id)
        size = await save_stream(chunks, path, max_upload_bytes)  # lesson 2: to disk, with the limit
        await run_in_threadpool(record_pending, db_path, upload_id, name, size)
        await Uploads(app.state.redis).create(upload_id, name, size, path)
        await process_upload.kicker().with_broker(app.state.broker).kiq(upload_id)  # lesson 5: a durable job
        return {"id": upload_id, "name": name, "size": size, "status_url": f"/uploads/{upload_id}"}

    @app.get("/uploads/{upload_id}")
    async def upload_status(upload_id: str):
        record = await Uploads(app.state.redis).get(upload_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no upload {upload_id!r}")
        del record["path"]  # where the server keeps files is none of the client's business
        return record

    return app
