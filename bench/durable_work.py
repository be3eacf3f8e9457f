"""What a durable queue keeps and what it costs: BackgroundTasks versus lesson 5's queue.

    .venv/bin/python bench/durable_work.py                 # the reference solution
    .venv/bin/python bench/durable_work.py --target lessons --jobs 40

Every process is a child of this script (``course.children``), on 127.0.0.1, stopped by its
PID; Redis is a private ``redis-server`` on a free port (``course.redis_server``). Rows:

* **jobs lost, web process SIGKILLed under load**: ``--jobs`` jobs of 0.2 s to 1.2 s are posted
  20 ms apart; 0.3 s after the last 202 the web process gets SIGKILL. BackgroundTasks
  (``course.specimens.background_jobs``): a job is lost if it wrote no row. Queue (lesson 5, two
  workers running all along): a new web process starts on the same Redis, and a job is lost if
  it is not ``done`` within 30 s.
* **POST /jobs latency**: ``--posts`` calls one after another on one connection, while no job runs
  (the specimen's jobs sleep 5 s; no queue worker runs).
* **time to start**: from sending ``POST /jobs`` (a 0-second job) until ``GET /jobs/{id}`` no longer
  says ``queued``, one job at a time, with one idle worker (polled every 2 ms).
* **throughput**: ``--drain`` 0-second jobs queued first, then drained by 1 and by 2 fresh workers;
  the clock starts once every worker has joined the consumer group (start-up not counted).
* **SQLite commits**: 200 one-row commits (``INSERT OR IGNORE`` keyed by a job id, one connection
  each, SQLite's default journal) into one file from 1 process and from 2 processes at once: what a
  0-second job mostly costs, and why two workers writing to one file need not be faster than one.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import multiprocessing
import signal
import sqlite3
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

from course import jobplots, targets
from course.children import serve_in_child, start_child, stop_all_children
from course.redis_server import start_redis
from course.specimens import background_jobs

SPECIMEN = "course.specimens.background_jobs:create_app"
REDELIVER_AFTER = 2.0


def bodies(count: int) -> list[dict]:
    return [{"seconds": round(0.2 + i * (1.0 / max(1, count - 1)), 3)} for i in range(count)]


async def lost_background_tasks(folder: Path, count: int) -> dict:
    db = folder / "specimen.db"
    web = serve_in_child(SPECIMEN, name="bench-specimen", factory_kwargs={"db_path": str(db)})
    jobs = await jobplots.post_jobs(web.url, bodies(count), spacing=0.02)
    await asyncio.sleep(0.3)
    web.signal(signal.SIGKILL)
    web.wait(5)
    finished = background_jobs.finished_jobs(db)
    return {"accepted": len(jobs), "lost": sum(job.id not in finished for job in jobs)}


async def lost_queue(lesson, redis_url: str, folder: Path, count: int) -> dict:
    db = folder / "queue-kill.db"
    factory = f"{lesson.__name__}:create_app"
    kwargs = {"redis_url": redis_url, "db_path": str(db)}
    workers = [start_child(lesson.worker_command(redis_url, db, REDELIVER_AFTER), name=f"bench-kill-worker-{i}")
               for i in (1, 2)]
    web = serve_in_child(factory, name="bench-web", factory_kwargs=kwargs)
    jobs = await jobplots.post_jobs(web.url, bodies(count), spacing=0.02)
    await asyncio.sleep(0.3)
    web.signal(signal.SIGKILL)
    web.wait(5)
    web = serve_in_child(factory, name="bench-web", factory_kwargs=kwargs)
    await jobplots.watch_jobs(web.url, jobs, timeout=30, interval=0.1)
    for child in (web, *workers):
        child.stop()
    return {"accepted": len(jobs), "lost": sum(job.last["status"] != "done" for job in jobs)}


async def costs(lesson, redis_url: str, folder: Path, posts: int, starts: int, drain: int) -> list[dict]:
    db = folder / "queue-cost.db"
    web = serve_in_child(f"{lesson.__name__}:create_app", name="bench-web",
                         factory_kwargs={"redis_url": redis_url, "db_path": str(db)})
    specimen = serve_in_child(SPECIMEN, name="bench-specimen", factory_kwargs={"db_path": str(folder / "cost.db")})
    rows = []
    for name, url, body in (("POST /jobs, BackgroundTasks add_task", specimen.url, {"seconds": 5}),
                            ("POST /jobs, queue (lesson 5)", web.url, {"seconds": 0})):
        latencies = await jobplots.post_latencies(url, posts, body)
        rows.append(row(name, latencies, len(latencies)))
    specimen.kill()

    def start(count: int, prefix: str) -> list:
        return [start_child(lesson.worker_command(redis_url, db, REDELIVER_AFTER), name=f"{prefix}-{i}")
                for i in range(count)]

    # The posts above are queued: one worker drains them (a warm-up), then starts are measured.
    workers = start(1, "bench-start")
    await jobplots.start_delays(web.url, 3, timeout=30)
    delays = await jobplots.start_delays(web.url, starts)
    rows.append(row("time to start, idle worker", delays, len(delays)))
    for count in (1, 2):
        for worker in workers:
            worker.stop()
        result = await jobplots.drain_rate(redis_url, web.url, drain, lambda: start(count, f"bench-rate{count}"))
        workers = result["workers"]
        rows.append({"measure": f"throughput, 0-second jobs, {count} worker{'s' * (count > 1)}",
                     "n": result["jobs"], "p50 (ms)": "", "p99 (ms)": "", "result": f"{result['jobs_per_s']:.0f} jobs/s"})
    for child in (web, *workers):
        child.stop()
    return rows


def _commit_rows(db_path: str, count: int) -> None:
    for _ in range(count):
        with closing(sqlite3.connect(db_path, timeout=10)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS done (job_id TEXT PRIMARY KEY, at REAL NOT NULL)")
            db.execute("INSERT OR IGNORE INTO done (job_id, at) VALUES (?, ?)", (uuid.uuid4().hex, time.time()))


def sqlite_commits(folder: Path, total: int = 200) -> list[dict]:
    rows = []
    for processes in (1, 2):
        db_path = str(folder / f"commits-{processes}.db")
        _commit_rows(db_path, 1)  # the table exists before the clock starts
        started = time.perf_counter()
        children = [multiprocessing.Process(target=_commit_rows, args=(db_path, total // processes))
                    for _ in range(processes)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        elapsed = time.perf_counter() - started
        rows.append({"measure": f"SQLite commits into one file, {processes} process{'es' * (processes > 1)}",
                     "n": total, "p50 (ms)": "", "p99 (ms)": "", "result": f"{total / elapsed:.0f} commits/s"})
    return rows


def row(measure: str, seconds: list[float], n: int) -> dict:
    return {"measure": measure, "n": n, "p50 (ms)": f"{jobplots.percentile(seconds, 0.5) * 1000:.2f}",
            "p99 (ms)": f"{jobplots.percentile(seconds, 0.99) * 1000:.2f}", "result": ""}


async def main(options: argparse.Namespace) -> None:
    targets.activate(options.target)
    lesson = importlib.import_module(f"{targets.package()}.l05_durable_work")
    folder = Path(tempfile.mkdtemp(prefix="bench-durable-"))
    rows = []
    kill_redis = start_redis("bench-durable-kill")
    cost_redis = start_redis("bench-durable-cost")
    try:
        background = await lost_background_tasks(folder, options.jobs)
        queued = await lost_queue(lesson, kill_redis.url, folder, options.jobs)
        for name, result in (("BackgroundTasks", background), ("queue (lesson 5, 2 workers)", queued)):
            rows.append({"measure": f"jobs lost, web SIGKILLed under load, {name}", "n": result["accepted"],
                         "p50 (ms)": "", "p99 (ms)": "", "result": f"{result['lost']} of {result['accepted']} lost"})
        rows += await costs(lesson, cost_redis.url, folder, options.posts, options.starts, options.drain)
        rows += sqlite_commits(folder)
    finally:
        stop_all_children()
        kill_redis.remove()
        cost_redis.remove()
    print(f"lesson: {lesson.__name__}; redeliver_after {REDELIVER_AFTER} s; 127.0.0.1, private redis-server")
    print(jobplots.text_table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="solutions", help="solutions (default), lessons or a directory")
    parser.add_argument("--jobs", type=int, default=50, help="jobs posted before the SIGKILL")
    parser.add_argument("--posts", type=int, default=200, help="POST /jobs calls per latency row")
    parser.add_argument("--starts", type=int, default=30, help="jobs for the time-to-start row")
    parser.add_argument("--drain", type=int, default=200, help="0-second jobs per throughput row")
    started = time.perf_counter()
    asyncio.run(main(parser.parse_args()))
    print(f"({time.perf_counter() - started:.0f} s)")
