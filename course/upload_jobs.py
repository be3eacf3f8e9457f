"""The blog's upload rebuilt (notebook 05): the request streams the file to disk, a queue worker does the rest.

The blog post the course grew from read the whole upload into memory and handed the saving and
the logging to ``BackgroundTasks``. Lesson 2 fixed the request half (stream to disk under a name
the server picks, with a size limit); here the processing -- the SHA-256 and the log row -- is a
durable job on the course's queue (:mod:`course.queue`), so a crashed or restarted process loses
no upload:

* ``POST /uploads`` (web process) streams the file part to ``upload_dir/<id>.bin`` with lesson 2's
  own ``storage_path`` and ``save_stream`` (from the current target: your ``lessons/`` file, so
  lesson 2's TODOs must be done first), writes a ``pending`` row, sends ``process_upload`` and
  answers 202;
* ``process_upload`` (worker process) hashes the file and marks the row ``done``, only if it is
  still ``pending``: running it twice changes nothing (at-least-once delivery is safe);
* ``GET /uploads/{id}`` reads the row.

A worker: ``course.queue.worker_argv("course.upload_jobs", redis_url=..., db_path=..., redeliver_after=...)``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from starlette import status
from taskiq import TaskiqDepends, TaskiqState, async_shared_broker

from course.multipart import open_file_field
from course.queue import DurableStreamBroker
from course.targets import load_lesson

__all__ = ["create_app", "process_upload"]

MiB = 1024 * 1024
SCHEMA = """CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL,
    sha256 TEXT, received_at REAL NOT NULL, processed_at REAL)"""


def _connect(db_path: str | Path) -> sqlite3.Connection:
    db = sqlite3.connect(db_path, timeout=10)
    db.row_factory = sqlite3.Row
    return db


def _init_db(db_path: str | Path) -> None:
    with closing(_connect(db_path)) as db, db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)


def create_app(redis_url: str, upload_dir: str | Path, db_path: str | Path, max_bytes: int = 10 * MiB) -> FastAPI:
    lesson2 = load_lesson("l02_uploads")  # composed from lesson 2, not copied
    upload_dir = Path(upload_dir)
    upload_dir.mkdir(parents=True, exist_ok=True)
    _init_db(db_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.broker = DurableStreamBroker(redis_url)  # used here only to send
        await app.state.broker.startup()
        try:
            yield
        finally:
            await app.state.broker.shutdown()

    app = FastAPI(title="The blog's upload, rebuilt", lifespan=lifespan)

    @app.post("/uploads", status_code=status.HTTP_202_ACCEPTED)
    async def upload(request: Request):
        _, chunks = await open_file_field(request)  # the client's filename is not needed here
        upload_id = uuid.uuid4().hex
        path = lesson2.storage_path(upload_dir, upload_id)  # the server picks the name (lesson 2)
        size = await lesson2.save_stream(chunks, path, max_bytes)  # streamed, limited, no partial file (lesson 2)
        with closing(_connect(db_path)) as db, db:
            db.execute("INSERT INTO uploads (id, path, size, status, received_at) VALUES (?, ?, ?, 'pending', ?)",
                       (upload_id, str(path), size, time.time()))
        await process_upload.kicker().with_broker(app.state.broker).kiq(upload_id)
        return {"id": upload_id, "size": size, "status": "pending"}

    @app.get("/uploads/{upload_id}")
    def upload_status(upload_id: str):
        with closing(_connect(db_path)) as db:
            row = db.execute("SELECT id, size, status, sha256 FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no upload {upload_id!r}")
        return {"id": row["id"], "size": row["size"], "status": row["status"], "sha256": row["sha256"]}

    return app


@async_shared_broker.task(task_name="course.upload_jobs.process_upload")
async def process_upload(upload_id: str, state: TaskiqState = TaskiqDepends()) -> None:
    """Hash the stored file and mark its pending row done (a second run finds it done: no change)."""
    with closing(_connect(state.db_path)) as db:
        row = db.execute("SELECT path FROM uploads WHERE id = ?", (upload_id,)).fetchone()
    if row is None:
        return
    checksum = await asyncio.to_thread(load_lesson("l02_uploads").sha256_of_file, row["path"])
    with closing(_connect(state.db_path)) as db, db:
        db.execute("UPDATE uploads SET status = 'done', sha256 = ?, processed_at = ? "
                   "WHERE id = ? AND status = 'pending'", (checksum, time.time(), upload_id))
