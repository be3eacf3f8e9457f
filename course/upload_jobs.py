"""The blog's upload rebuilt (notebook 05): the request streams the file to disk, a queue worker does the rest.

The blog post the course grew from read the whole upload into memory and handed the saving and
the logging to ``BackgroundTasks``. Lesson 2 fixed the request half (stream to disk under a name
the server picks, with a size limit); here the processing -- the SHA-256 and the log row -- is a
durable job on the course's queue (:mod:`course.queue`), so a crashed or restarted process loses
no upload:

* ``POST /uploads`` (web process) streams the file part to ``upload_dir/<id>.bin``
  (:func:`course.multipart.open_file_field`), writes a ``pending`` row, sends ``process_upload``
  and answers 202;
* ``process_upload`` (worker process) hashes the file and marks the row ``done``, only if it is
  still ``pending``: running it twice changes nothing (at-least-once delivery is safe);
* ``GET /uploads/{id}`` reads the row.

A worker: ``course.queue.worker_argv("course.upload_jobs", redis_url=..., db_path=..., redeliver_after=...)``.
"""

from __future__ import annotations

import asyncio
import hashlib
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
        path = upload_dir / f"{upload_id}.bin"  # the server picks the name
        size = 0
        with open(path, "xb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    out.close()
                    path.unlink()
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"larger than {max_bytes} bytes")
                await asyncio.to_thread(out.write, chunk)
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
        return dict(row)

    return app


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


@async_shared_broker.task(task_name="course.upload_jobs.process_upload")
async def process_upload(upload_id: str, state: TaskiqState = TaskiqDepends()) -> None:
    """Hash the stored file and mark its pending row done (a second run finds it done: no change)."""
    with closing(_connect(state.db_path)) as db:
        row = db.execute("SELECT path FROM uploads WHERE id = ?", (upload_id,)).fetchone()
    if row is None:
        return
    checksum = await asyncio.to_thread(_sha256, row["path"])
    with closing(_connect(state.db_path)) as db, db:
        db.execute("UPDATE uploads SET status = 'done', sha256 = ?, processed_at = ? "
                   "WHERE id = ? AND status = 'pending'", (checksum, time.time(), upload_id))
