"""Lesson 5: work that must not be lost -- a real task queue on a real Redis.

The web process does no work: ``POST /jobs`` writes the job's record to Redis, puts a message
on the queue and answers ``202 {"id": ...}`` at once. Separate *worker processes* take the
messages and run the jobs. ``GET /jobs/{id}`` answers from Redis, so any web process -- a
restarted one, a second one -- can say how every job is doing::

    {"id": "...", "status": "queued" | "running" | "done" | "failed", "attempts": 1, "error": null}

Four exercises, marked TODO 1 to 4. Grade them with ``make check`` or the self-check cell in
notebooks/05_durable_work.ipynb.

What is given: the queue (``course.queue``: taskiq on a Redis stream, fixed so that a job whose
worker died is taken over by a live worker after ``redeliver_after`` seconds), the worker
process (``worker_command``), the job itself (``work``: sleep, and fail on purpose for the
first ``fail_times`` attempts), ``backoff`` and the Redis helpers of ``JobStore``.

Delivery is *at least once*: a worker that dies after the work but before it acknowledges the
message makes the job run again elsewhere. So the effect of a job -- here a row in SQLite at
``db_path`` -- must be recorded idempotently.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from starlette import status
from taskiq import TaskiqDepends, TaskiqState, async_shared_broker

from course.queue import DurableStreamBroker, worker_argv

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a job that fails this many times ends "failed"
BACKOFF_FIRST = 0.5  # seconds to wait after the first failed attempt; doubles after each
BACKOFF_MAX = 5.0  # never wait longer than this between two attempts
MAX_ERROR_CHARS = 200  # the error text a client sees is short


class JobRequest(BaseModel):
    seconds: float = Field(ge=0, description="how long the job works (sleeps)")
    fail_times: int = Field(default=0, ge=0, description="the job fails on purpose on its first N attempts")


class JobStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    attempts: int
    error: str | None = None


# --- the web process ------------------------------------------------------------------------

def create_app(redis_url: str, db_path: Path) -> FastAPI:
    """The web process: it records and enqueues jobs, and reports on them. It runs none.

    (``db_path`` is where the workers record completions; the web process never opens it.)
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.broker = DurableStreamBroker(redis_url)  # used here only to send
        await app.state.broker.startup()  # creates the stream and the group: jobs wait for a worker
        redis = Redis.from_url(redis_url, decode_responses=True)
        app.state.jobs = JobStore(redis)
        try:
            yield
        finally:
            await redis.aclose()
            await app.state.broker.shutdown()

    app = FastAPI(title="Lesson 5: durable work", lifespan=lifespan)

    @app.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
    async def post_job(job: JobRequest) -> dict[str, str]:
        jobs: JobStore = app.state.jobs
        # TODO 1a: give the job a new id (``uuid.uuid4().hex``), record it in Redis as queued
        # (``await jobs.create(...)``) BEFORE you send it -- a worker may start it at once --, then
        # send it to the workers: ``await run_job.kicker().with_broker(app.state.broker).kiq(job_id)``.
        # Answer ``{"id": job_id}`` (the decorator makes it a 202). Do no work here.
        ### SOLUTION
        job_id = uuid.uuid4().hex
        await jobs.create(job_id, seconds=job.seconds, fail_times=job.fail_times)
        await run_job.kicker().with_broker(app.state.broker).kiq(job_id)
        return {"id": job_id}
        ### STUB
        # raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, "TODO 1a: record the job, send it to the queue, answer 202")
        ### END

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> JobStatus:
        jobs: JobStore = app.state.jobs
        # TODO 1b: answer with the job's record from Redis (``await jobs.get(job_id)``),
        # and 404 when there is no such job. Nothing about jobs lives in this process.
        ### SOLUTION
        record = await jobs.get(job_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
        return record
        ### STUB
        # raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, "TODO 1b: read the job's record from Redis; 404 if unknown")
        ### END

    return app


# --- the job records in Redis ----------------------------------------------------------------

class JobStore:
    """Each job is a Redis hash ``l05:job:<id>``: status, attempts, error, seconds, fail_times.

    The web process and every worker share it: that is what lets any of them answer for any job.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis  # a client with decode_responses=True: fields come back as str

    @staticmethod
    def key(job_id: str) -> str:
        return f"l05:job:{job_id}"

    async def create(self, job_id: str, *, seconds: float, fail_times: int) -> None:
        await self.redis.hset(self.key(job_id), mapping={
            "status": "queued", "attempts": 0, "seconds": seconds, "fail_times": fail_times})

    async def get(self, job_id: str) -> JobStatus | None:
        fields = await self.redis.hgetall(self.key(job_id))
        if not fields:
            return None
        return JobStatus(id=job_id, status=fields["status"], attempts=int(fields["attempts"]),
                         error=fields.get("error") or None)

    async def params(self, job_id: str) -> dict[str, float | int] | None:
        """What the job was asked to do: ``{"seconds": ..., "fail_times": ...}``, or None if unknown."""
        seconds, fail_times = await self.redis.hmget(self.key(job_id), ["seconds", "fail_times"])
        if seconds is None:
            return None
        return {"seconds": float(seconds), "fail_times": int(fail_times)}

    async def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        await self.redis.hset(self.key(job_id), mapping={"status": status, "error": error or ""})

    async def start_attempt(self, job_id: str) -> int:
        """A worker starts the job (again): count the attempt, say "running"; return the attempt's number."""
        # TODO 2: in ONE transaction (``async with self.redis.pipeline(transaction=True) as pipe:``),
        # add 1 to the job's "attempts" field (HINCRBY) and set its "status" to "running" (HSET), then
        # ``await pipe.execute()`` and return the new attempts count. Count every start: the first,
        # each retry, and each run after a worker died -- so never set it to a fixed number.
        ### SOLUTION
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.key(job_id), "attempts", 1)
            pipe.hset(self.key(job_id), "status", "running")
            attempts, _ = await pipe.execute()
        return attempts
        ### STUB
        # raise NotImplementedError("TODO 2: count the attempt and mark the job running in Redis")
        ### END


# --- the worker processes -------------------------------------------------------------------

def record_completion(db_path: Path, job_id: str) -> None:
    """Record in SQLite at ``db_path`` that job ``job_id`` finished, ONCE per job.

    A job can run twice (a worker died before it acknowledged the message), so this can be
    called twice for the same job. The table must still hold one row for it.
    """
    with closing(sqlite3.connect(db_path, timeout=10)) as db, db:
        # TODO 3: make the job's id a unique key of the table, and write the row so that a second
        # write for the same job changes nothing (SQLite: ``INSERT OR IGNORE``, or an upsert).
        ### SOLUTION
        db.execute("CREATE TABLE IF NOT EXISTS completions (job_id TEXT PRIMARY KEY, finished_at REAL NOT NULL)")
        db.execute("INSERT OR IGNORE INTO completions (job_id, finished_at) VALUES (?, ?)", (job_id, time.time()))
        ### STUB
        # raise NotImplementedError("TODO 3: record the job's completion in SQLite, once per job")
        ### END


def worker_command(redis_url: str, db_path: Path, redeliver_after: float) -> list[str]:
    """The argv of one worker process (run it with the repository root as working directory).

    It runs this module's ``run_job`` for every message, one job at a time. A job whose worker
    stopped (SIGKILL, a crash) is taken over by a live worker about ``redeliver_after`` s later.
    """
    return worker_argv(__name__, redis_url=redis_url, db_path=db_path, redeliver_after=redeliver_after)


@async_shared_broker.task(task_name="l05_durable_work.run_job")
async def run_job(job_id: str, state: TaskiqState = TaskiqDepends()) -> None:
    """Run one job in a worker, attempt after attempt, until it is done or has failed for good.

    ``state.redis`` and ``state.db_path`` come from the worker process (``course.queue``).
    """
    jobs = JobStore(state.redis)
    params = await jobs.params(job_id)
    if params is None:
        log.warning("job %s has no record: nothing to run", job_id)
        return
    while True:
        attempt = await jobs.start_attempt(job_id)
        try:
            await work(params["seconds"], params["fail_times"], attempt)
            await asyncio.to_thread(record_completion, state.db_path, job_id)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            log.warning("job %s, attempt %d failed: %s", job_id, attempt, error)
            # TODO 4: retry, but not forever and not at once. If this was attempt MAX_ATTEMPTS
            # (or later), the job has failed for good: set its status to "failed" with the error
            # text and return. Otherwise set it back to "queued" with the error text (a client
            # sees why it is waiting), wait ``backoff(attempt)`` seconds, and go round again.
            ### SOLUTION
            if attempt >= MAX_ATTEMPTS:
                await jobs.set_status(job_id, "failed", error)
                return
            await jobs.set_status(job_id, "queued", error)
            await asyncio.sleep(backoff(attempt))
            ### STUB
            # raise  # the job stays "running" forever and nobody is told: fix that
            ### END
        else:
            await jobs.set_status(job_id, "done")
            return


async def work(seconds: float, fail_times: int, attempt: int) -> None:
    """The job itself: work for ``seconds`` (cancellable), failing on its first ``fail_times`` attempts."""
    await asyncio.sleep(seconds)
    if attempt <= fail_times:
        raise RuntimeError(f"attempt {attempt} failed on purpose ({fail_times} planned failures)")


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt``: 0.5, 1, 2, 4, 5, 5, ..."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1))
