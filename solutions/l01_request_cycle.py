"""Lesson 1: the request cycle and BackgroundTasks.

An app that accepts work, answers at once, and does the work after the
response has gone out. Three exercises, marked TODO 1 to 3 in the order they
appear below. Grade them with ``make check`` or the self-check cell in
notebooks/01_request_cycle.ipynb.

What is given (at the end of the file): a thread-safe ``JobStore`` (job id ->
status) and the work functions; and the endpoints other than ``POST /reports``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException, Query
from pydantic import BaseModel

log = logging.getLogger(__name__)
FINISHED = ("done", "failed")


# --- the app -------------------------------------------------------------------

def create_app() -> FastAPI:
    """The lesson's app. Its ``JobStore`` is ``app.state.jobs``."""
    app = FastAPI(title="Lesson 1: the request cycle")
    jobs = app.state.jobs = JobStore()

    @app.post("/reports", status_code=202)
    async def request_report(background_tasks: BackgroundTasks, seconds: float = Query(1.0, ge=0, le=10)):
        """TODO 1: create a "report" job, have ``build_report`` run for it AFTER the
        response (as a background task), and answer at once with
        ``{"job_id": ..., "status": "pending"}``. The 202 is already set in the decorator.
        """
        ### SOLUTION
        job_id = jobs.create("report")
        background_tasks.add_task(build_report, jobs, job_id, seconds)
        return {"job_id": job_id, "status": "pending"}
        ### STUB
        # raise HTTPException(501, "TODO 1: schedule build_report and answer 202 with the job id")
        ### END

    @app.post("/imports", status_code=202)
    async def request_import(body: ImportRequest, background_tasks: BackgroundTasks):
        job_id = jobs.create("import")
        background_tasks.add_task(run_recorded, jobs, job_id, import_rows, body.rows)
        # A second task of the same response: it only runs if run_recorded did not raise.
        background_tasks.add_task(jobs.update, job_id, followed_up=True)
        return {"job_id": job_id, "status": "pending"}

    @app.post("/thumbnails", status_code=202)
    async def request_thumbnail(background_tasks: BackgroundTasks, seconds: float = Query(1.0, ge=0, le=10)):
        job_id = jobs.create("thumbnail")
        background_tasks.add_task(make_thumbnail, jobs, job_id, seconds)
        return {"job_id": job_id, "status": "pending"}

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job with id {job_id!r}")
        return job

    @app.get("/ping")
    async def ping():
        return {"pong": True}

    return app


# --- the background tasks ----------------------------------------------------------

def run_recorded(jobs: JobStore, job_id: str, work: Callable[..., Any], *args: Any) -> None:
    """Run ``work(*args)`` as background job ``job_id`` and record how it ended.

    An exception raised in a background task never reaches the client: the
    response went out before the task started. Unless the task records its own
    failure, the error ends up only in the server log and the job looks
    "pending" forever.

    TODO 2: mark the job "running"; run the work; on success mark it "done"
    with ``result=<return value>``; on any exception mark it "failed" with
    ``error="<ExceptionName>: <message>"`` and log it with ``log.exception``.
    Do not re-raise: the failure is recorded, and later tasks still run.
    """
    ### SOLUTION
    jobs.update(job_id, status="running")
    try:
        result = work(*args)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        jobs.update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
    else:
        jobs.update(job_id, status="done", result=result)
    ### STUB
    # work(*args)
    ### END


# TODO 3: make_thumbnail calls blocking code (resize_image). Declared `async def`,
# a background task runs *on the event loop*, and the blocking call freezes every
# other request until it returns. Make it run in Starlette's threadpool instead,
# and still mark the job "done" only once the image is resized.
### SOLUTION
def make_thumbnail(jobs: JobStore, job_id: str, seconds: float) -> None:
    """Resize an image: blocking work that takes ``seconds``."""
    jobs.update(job_id, status="running")
    resize_image(seconds)
    jobs.update(job_id, status="done")
### STUB
# async def make_thumbnail(jobs: JobStore, job_id: str, seconds: float) -> None:
#     """Resize an image: blocking work that takes ``seconds``."""
#     jobs.update(job_id, status="running")
#     resize_image(seconds)
#     jobs.update(job_id, status="done")
### END


# --- given: the job store and the work (you need not change anything below) ---

class JobStore:
    """Job statuses shared by endpoints and background tasks: pending -> running -> done | failed."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # tasks run in other threads

    def create(self, kind: str) -> str:
        job_id = uuid.uuid4().hex[:12]
        with self._lock:
            self._jobs[job_id] = {"id": job_id, "kind": kind, "status": "pending"}
        return job_id

    def update(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            self._jobs[job_id].update(fields)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A copy of the job, or None for an unknown id."""
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job) if job else None


def build_report(jobs: JobStore, job_id: str, seconds: float) -> None:
    """Slow, blocking work (``time.sleep`` stands in for queries and PDF rendering)."""
    jobs.update(job_id, status="running")
    time.sleep(seconds)
    jobs.update(job_id, status="done", result=f"report built in {seconds} s")


def import_rows(rows: list[str]) -> int:
    """Parse every row as an integer; a bad row raises ``ValueError``. Returns the total."""
    return sum(int(row) for row in rows)


def resize_image(seconds: float) -> None:
    """Blocking work that takes ``seconds`` (``time.sleep`` stands in for image resizing)."""
    time.sleep(seconds)


class ImportRequest(BaseModel):
    rows: list[str]
