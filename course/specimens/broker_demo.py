"""Three stock taskiq-redis brokers side by side, to show which one loses a job when its worker dies.

Notebook 05 starts a taskiq worker on :func:`broker_from_env` for each kind, kicks a few
:func:`demo_job` s, SIGKILLs the worker while they run and starts another one:

* ``list``   :class:`taskiq_redis.ListQueueBroker`: ``LPUSH`` / ``BRPOP``; a popped message is gone
  from Redis, so what the dead worker held is lost;
* ``pubsub`` :class:`taskiq_redis.PubSubBroker`: ``PUBLISH``; Redis keeps nothing at all (a message
  published while no worker listens is dropped, and every listening worker runs it);
* ``stream`` :class:`taskiq_redis.RedisStreamBroker`, as shipped: ``XREADGROUP`` and ``XACK``; the
  dead worker's entries stay in the group's pending list, but this broker reclaims them (``XAUTOCLAIM``)
  only after ``XREADGROUP`` returned NEW messages, so on a quiet queue they wait;
* ``course`` the course's :class:`course.queue.DurableStreamBroker` (the same stream, fixed): it
  reclaims a dead worker's jobs on a quiet queue too.

:func:`effect_job` shows what redelivery costs: its visible effect (a row) happens before the job
ends, so a job killed after the effect and run again makes it twice, unless it is recorded
idempotently (a unique key per job, ``INSERT OR IGNORE``).

The job records when it started and finished (and in which process) in a SQLite file, so the
notebook can count what ran. Everything comes from the environment, because the taskiq CLI
imports this module in a fresh process: ``BROKER_DEMO_KIND``, ``BROKER_DEMO_REDIS``,
``BROKER_DEMO_DB`` (and ``BROKER_DEMO_IDLE_MS`` for the stream's reclaim idle time).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from taskiq import AsyncBroker
from taskiq_redis import ListQueueBroker, PubSubBroker, RedisStreamBroker

__all__ = ["KINDS", "broker_from_env", "effects", "init_db", "make_broker", "runs", "start_worker", "worker_argv"]

KINDS = ("list", "pubsub", "stream", "course")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (job TEXT, pid INTEGER, started REAL, finished REAL);
CREATE TABLE IF NOT EXISTS emails (job TEXT);                    -- the naive effect: one row per send
CREATE TABLE IF NOT EXISTS emails_once (job TEXT PRIMARY KEY);   -- the idempotent one: one row per job
"""


def init_db(db_path: str | Path) -> None:
    with closing(sqlite3.connect(db_path, timeout=10)) as db, db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)


def effects(db_path: str | Path) -> dict[str, dict[str, int]]:
    """``{job: {"emails": rows, "emails_once": rows}}``: how many times each job's effect was recorded."""
    counts: dict[str, dict[str, int]] = {}
    with closing(sqlite3.connect(db_path, timeout=10)) as db:
        for table in ("emails", "emails_once"):
            for job, count in db.execute(f"SELECT job, COUNT(*) FROM {table} GROUP BY job"):
                counts.setdefault(job, {"emails": 0, "emails_once": 0})[table] = count
    return counts


def runs(db_path: str | Path) -> list[dict]:
    """Every start of a job, with ``finished`` None when it never finished."""
    with closing(sqlite3.connect(db_path, timeout=10)) as db:
        rows = db.execute("SELECT job, pid, started, finished FROM runs ORDER BY started").fetchall()
    return [dict(zip(("job", "pid", "started", "finished"), row)) for row in rows]


def make_broker(kind: str, redis_url: str, db_path: str | Path, idle_ms: int = 1000) -> AsyncBroker:
    """A stock broker of ``kind`` with :func:`demo_job` registered on it (the same for kicker and worker)."""
    queue = f"broker-demo-{kind}"
    if kind == "list":
        broker = ListQueueBroker(redis_url, queue_name=queue)
    elif kind == "pubsub":
        broker = PubSubBroker(redis_url, queue_name=queue)
    elif kind == "stream":
        broker = RedisStreamBroker(redis_url, queue_name=queue, idle_timeout=idle_ms, xread_block=500)
    elif kind == "course":
        from course.queue import DurableStreamBroker

        broker = DurableStreamBroker(redis_url, redeliver_after=idle_ms / 1000, queue_name=queue)
    else:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    db_path = str(db_path)

    def started(job: str) -> int:
        with closing(sqlite3.connect(db_path, timeout=10)) as db, db:
            return db.execute("INSERT INTO runs (job, pid, started) VALUES (?, ?, ?)",
                              (job, os.getpid(), time.time())).lastrowid

    def finished(run: int) -> None:
        with closing(sqlite3.connect(db_path, timeout=10)) as db, db:
            db.execute("UPDATE runs SET finished = ? WHERE rowid = ?", (time.time(), run))

    @broker.task(task_name="demo_job")
    async def demo_job(job: str, seconds: float) -> None:
        run = started(job)
        await asyncio.sleep(seconds)  # the work
        finished(run)

    @broker.task(task_name="effect_job")
    async def effect_job(job: str, before: float, after: float, idempotent: bool) -> None:
        """Work ``before`` s, send "the email" (a row), work ``after`` s more."""
        run = started(job)
        await asyncio.sleep(before)
        with closing(sqlite3.connect(db_path, timeout=10)) as db, db:
            if idempotent:  # the job's id is the key: a second run finds its row and adds nothing
                db.execute("INSERT OR IGNORE INTO emails_once (job) VALUES (?)", (job,))
            else:
                db.execute("INSERT INTO emails (job) VALUES (?)", (job,))
        await asyncio.sleep(after)
        finished(run)

    # The kicking side calls broker.demo_job.kiq(...) / broker.effect_job.kiq(...).
    broker.demo_job, broker.effect_job = demo_job, effect_job
    return broker


def broker_from_env() -> AsyncBroker:
    """The worker's broker (``taskiq worker course.specimens.broker_demo:broker_from_env``)."""
    return make_broker(os.environ["BROKER_DEMO_KIND"], os.environ["BROKER_DEMO_REDIS"],
                       os.environ["BROKER_DEMO_DB"], int(os.environ.get("BROKER_DEMO_IDLE_MS", "1000")))


def worker_argv(python: str, kind: str, concurrency: int = 10) -> list[str]:
    """One worker process (``--workers 1``), run from the repository root. The course's broker is
    run as course.queue runs it: it asks for a job only when it has a free slot (no prefetch)."""
    argv = [python, "-m", "taskiq", "worker", "course.specimens.broker_demo:broker_from_env",
            "--workers", "1", "--log-level", "WARNING", "--max-async-tasks", str(concurrency)]
    return argv + (["--max-prefetch", "0"] if kind == "course" else [])


def start_worker(kind: str, redis_url: str, db_path: str | Path, *, name: str, concurrency: int = 10,
                 idle_ms: int = 1000, timeout: float = 20.0):
    """Start one worker for ``kind`` (a :class:`course.children.Child`, SIGKILL it with ``.kill()``).

    For ``pubsub`` this returns once the worker has subscribed: Redis drops a message published
    while nobody listens, so kicking earlier would lose it before any worker died."""
    import sys

    import redis

    from course.children import start_child
    from course.waiting import wait_until

    env = {"BROKER_DEMO_KIND": kind, "BROKER_DEMO_REDIS": redis_url, "BROKER_DEMO_DB": str(db_path),
           "BROKER_DEMO_IDLE_MS": str(idle_ms)}
    worker = start_child(worker_argv(sys.executable, kind, concurrency), name=name, env=env)
    if kind == "pubsub":
        with closing(redis.Redis.from_url(redis_url, socket_timeout=5)) as client:
            channel = f"broker-demo-{kind}"
            if not wait_until(lambda: worker.alive and client.pubsub_numsub(channel)[0][1] >= 1, timeout):
                worker.kill()
                raise RuntimeError(f"the {kind} worker did not subscribe:\n{worker.log_text(3000)}")
    return worker
