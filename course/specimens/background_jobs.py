"""The job endpoint most tutorials end with: ``POST /jobs`` answers 202 and does the work with
``BackgroundTasks`` in the web process. Kept as it is so notebook 05 and ``bench/durable_work.py``
can count what a restart or a crash of that process loses. Do not copy it: see lesson 5.

The only additions to the usual snippet: the database is a parameter, and each finished job
writes one row (``finished``), so the loss can be counted from outside. The job's status lives
where tutorials keep it, in a dict of the process: it dies with the process.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path

from fastapi import BackgroundTasks, FastAPI, HTTPException
from pydantic import BaseModel

__all__ = ["create_app", "finished_jobs"]

SCHEMA = "CREATE TABLE IF NOT EXISTS finished (id TEXT PRIMARY KEY, seconds REAL, finished_at REAL)"


class JobRequest(BaseModel):
    seconds: float = 0.0


def _connect(db_path: str) -> sqlite3.Connection:
    return sqlite3.connect(db_path, timeout=10)


def finished_jobs(db_path: str | Path) -> dict[str, float]:
    """``{job id: finished_at (time.time())}`` for every job that finished."""
    with closing(_connect(str(db_path))) as db:
        db.execute(SCHEMA)
        return dict(db.execute("SELECT id, finished_at FROM finished").fetchall())


def create_app(db_path: str | Path) -> FastAPI:
    """``POST /jobs {"seconds"}`` -> 202 ``{"id"}``; the job sleeps, then writes its row.
    ``GET /jobs/{id}`` answers from the process's memory."""
    db_path = str(db_path)
    with closing(_connect(db_path)) as db, db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)
    app = FastAPI(title="Jobs with BackgroundTasks (the specimen)")
    statuses: dict[str, str] = {}  # the usual "job store": a dict in the web process

    async def run_job(job_id: str, seconds: float) -> None:
        statuses[job_id] = "running"
        await asyncio.sleep(seconds)  # the work
        with closing(_connect(db_path)) as db, db:
            db.execute("INSERT INTO finished (id, seconds, finished_at) VALUES (?, ?, ?)",
                       (job_id, seconds, time.time()))
        statuses[job_id] = "done"

    @app.post("/jobs", status_code=202)
    async def create_job(job: JobRequest, background_tasks: BackgroundTasks):
        job_id = uuid.uuid4().hex
        statuses[job_id] = "queued"
        background_tasks.add_task(run_job, job_id, job.seconds)
        return {"id": job_id}

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str):
        if job_id not in statuses:
            raise HTTPException(404, f"No job with id {job_id!r}.")
        return {"id": job_id, "status": statuses[job_id]}

    return app
