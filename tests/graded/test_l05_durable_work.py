"""Graded checks for lessons/l05_durable_work.py, on a real Redis and real worker processes.

Each check starts its web process (uvicorn in a thread, or in a child process where a *new*
process is the point) and its worker processes (``worker_command``, each in its own process
group, killed by PID when the check ends), on the session's private redis-server, emptied
before every check. Workers take over a dead worker's job after ``REDELIVER`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid

import httpx
import pytest
from starlette import status

from course.children import serve_in_child, start_child
from course.grading import check
from course.queue import queue_state, send_again
from course.waiting import wait_until

REDELIVER = 1.0  # seconds without a heartbeat before a live worker takes over a job
REDELIVERY_SLACK = 2.0  # on top of REDELIVER: the reclaim poll, a worker's start, a busy 2-core machine
WAIT = 20.0  # upper bound for things that take a second (a worker process starting on a busy machine)
AT_ONCE = 1.0  # a POST that enqueues answers in milliseconds; a job that runs in it takes seconds
FINAL = ("done", "failed")


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "jobs.db"


@pytest.fixture
def web(lesson, live_server, redis_url, db_path):
    """An httpx.Client on a web process (uvicorn in a thread) running the lesson's app."""
    server = live_server(lesson.create_app(redis_url, db_path))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.server = server
        yield client


@pytest.fixture
def workers(lesson, redis_url, db_path):
    """start(count) starts ``count`` worker processes; every one is killed (its process group) at the end."""
    started = []

    def start(count: int = 1):
        for _ in range(count):
            argv = lesson.worker_command(redis_url, db_path, REDELIVER)
            started.append(start_child(argv, name=f"l05-worker-{os.getpid()}-{len(started)}"))
        return started[-count:]

    try:
        yield start
    finally:
        for child in started:
            child.kill()


def post(client, seconds, fail_times=0):
    answer = client.post("/jobs", json={"seconds": seconds, "fail_times": fail_times})
    assert answer.status_code == status.HTTP_202_ACCEPTED, f"POST /jobs answered {answer.status_code}: {answer.text[:200]}"
    job_id = answer.json().get("id")
    assert isinstance(job_id, str) and job_id, f"POST /jobs answered {answer.json()}, without an id"
    return job_id


def get(client, job_id):
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code == status.HTTP_200_OK, f"GET /jobs/{job_id} answered {answer.status_code}: {answer.text[:200]}"
    return answer.json()


def wait_job(client, job_id, predicate, timeout=WAIT, seen=None):
    """Poll the job until ``predicate(job)``; the last job seen (``seen`` collects every state)."""
    last = {}

    def poll():
        last.update(get(client, job_id))
        if seen is not None:
            seen.append((time.monotonic(), dict(last)))
        return predicate(last)

    wait_until(poll, timeout, interval=0.02)
    return dict(last)


def worker_trouble(children):
    """A line about workers that exited on their own, with the end of their log."""
    dead = [c for c in children if not c.alive]
    return "".join(f"\n  worker pid {c.pid} exited ({c.returncode}): ...{c.log_text(400)}" for c in dead)


def completions(db_path, job_id):
    """Rows in any table of the SQLite file that hold ``job_id`` in some column."""
    if not db_path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db_path, timeout=10)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return sum(job_id in row for table in tables for row in db.execute(f'SELECT * FROM "{table}"'))


@check(task=1, points=2,
       hint="POST /jobs records the job and puts a message on the queue, nothing more: it answers 202 with "
            "the job's id in milliseconds, and GET right after shows the job queued with 0 attempts "
            "(the workers do the work, not the web process).",
       nudge="TODO 1a: the record first (a worker may start the job at once), then the message; the job's sleep belongs to the worker.")
def test_post_answers_202_at_once(web):
    ids = []
    for _ in range(3):
        started = time.perf_counter()
        ids.append(post(web, seconds=3))
        took = time.perf_counter() - started
        assert took < AT_ONCE, f"POST /jobs took {took:.2f} s for a 3 s job: the request waited for the work"
    assert len(set(ids)) == 3, f"three jobs got the ids {ids}"
    for job_id in ids:
        job = get(web, job_id)
        assert job == {"id": job_id, "status": "queued", "attempts": 0, "error": None}, \
            f"right after POST (no worker running) the job reads {job}"


@check(task=1, points=1, hint="GET /jobs/{id} of an id nobody posted must answer 404, not 200 or 500.",
       nudge="TODO 1b: JobStore.get gives None for a job it does not know; turn that into an HTTP error.")
def test_unknown_job_is_404(web):
    answer = web.get(f"/jobs/{uuid.uuid4().hex}")
    assert answer.status_code == status.HTTP_404_NOT_FOUND, f"an unknown job answered {answer.status_code}"


@check(task=1, points=2,
       hint="Every posted job must end 'done' with 1 attempt and no error once workers run. A job that stays "
            "'queued' never reached the queue, or a worker could not find its record.",
       nudge="TODO 1a: a worker looks the job up in Redis by its id: the record must be written under the id you send.")
def test_every_job_done(web, workers):
    children = workers(2)
    ids = [post(web, seconds=0.3) for _ in range(6)]
    for job_id in ids:
        job = wait_job(web, job_id, lambda j: j["status"] in FINAL)
        assert job == {"id": job_id, "status": "done", "attempts": 1, "error": None}, \
            f"a 0.3 s job reads {job} after {WAIT:.0f} s{worker_trouble(children)}"


@check(task=1, points=2,
       hint="Jobs posted while no worker runs must wait in the queue and run once a worker starts: "
            "the message is in Redis, not in the web process.",
       nudge="TODO 1a: sending the message is all the web process does; the queue keeps it until a worker asks.")
def test_jobs_posted_before_any_worker_run_later(web, workers):
    ids = [post(web, seconds=0.1) for _ in range(3)]
    time.sleep(0.3)
    assert all(get(web, job_id)["status"] == "queued" for job_id in ids), "with no worker, jobs must stay queued"
    children = workers(1)
    for job_id in ids:
        job = wait_job(web, job_id, lambda j: j["status"] in FINAL)
        assert job["status"] == "done", f"a job posted before the worker started reads {job}{worker_trouble(children)}"


@check(task=1, points=2,
       hint="A new web process on the same Redis must answer for every job, including the ones another web "
            "process accepted: keep nothing about jobs in the web process's memory.",
       nudge="TODO 1b: answer from Redis on every request, not from anything the process remembers.")
def test_restarted_web_process_answers(lesson, web, workers, redis_url, db_path):
    children = workers(1)
    ids = [post(web, seconds=0.5) for _ in range(3)]
    web.server.stop()  # the first web process is gone; the jobs go on
    factory = f"{lesson.__name__}:create_app"
    kwargs = {"redis_url": redis_url, "db_path": str(db_path)}
    with serve_in_child(factory, name=f"l05-web-{os.getpid()}", factory_kwargs=kwargs) as second, \
            httpx.Client(base_url=second.url, timeout=10) as client:
        for job_id in ids:
            job = wait_job(client, job_id, lambda j: j["status"] in FINAL)
            assert job["status"] == "done" and job["attempts"] == 1, \
                f"the new web process reads {job} for a job the old one accepted{worker_trouble(children)}"
        late = post(client, seconds=0.1)
        assert wait_job(client, late, lambda j: j["status"] in FINAL)["status"] == "done"
        unknown = client.get(f"/jobs/{uuid.uuid4().hex}")
        assert unknown.status_code == status.HTTP_404_NOT_FOUND, f"an unknown job answered {unknown.status_code}"


@check(task=2, points=3,
       hint="When a worker is SIGKILLed mid-job, the queue hands the job to a live worker and it must "
            "end 'done' with attempts 2: count every start of a job in Redis (not a fixed number), "
            "and say 'running' when it starts.",
       nudge="TODO 2: Redis can add to a number stored in a hash field in one step; do it in the same transaction as the status.")
def test_killed_worker_loses_nothing(web, workers):
    (first,) = workers(1)
    long_job = post(web, seconds=6)
    job = wait_job(web, long_job, lambda j: j["status"] == "running")
    assert job["status"] == "running" and job["attempts"] == 1, \
        f"the job should be running its first attempt; it reads {job}{worker_trouble([first])}"
    short = [post(web, seconds=0.2) for _ in range(2)]  # the first worker is busy: these wait for the second
    (second,) = workers(1)
    for job_id in short:
        done = wait_job(web, job_id, lambda j: j["status"] in FINAL)
        assert done["status"] == "done", f"a short job reads {done} while the first worker is busy{worker_trouble([second])}"
    job = get(web, long_job)
    assert job["status"] == "running" and job["attempts"] == 1, f"before the kill the long job reads {job}"

    first.kill()  # SIGKILL to its process group: no shutdown code runs
    killed = time.monotonic()
    seen = []
    job = wait_job(web, long_job, lambda j: j["attempts"] >= 2, timeout=REDELIVER + WAIT, seen=seen)
    assert job["attempts"] >= 2, f"{REDELIVER + WAIT:.0f} s after the kill the job reads {job}: it was lost"
    restarted = next(t for t, j in seen if j["attempts"] >= 2) - killed
    assert restarted <= REDELIVER + REDELIVERY_SLACK, \
        f"the job started again {restarted:.1f} s after the kill (redeliver_after is {REDELIVER} s)"
    job = wait_job(web, long_job, lambda j: j["status"] in FINAL)
    assert job == {"id": long_job, "status": "done", "attempts": 2, "error": None}, \
        f"after the second worker took over, the job reads {job}{worker_trouble([second])}"


@check(task=2, points=2,
       hint="A job that runs longer than redeliver_after on a live worker must run once: 'running' while "
            "it runs, then 'done' with attempts 1.",
       nudge="TODO 2: the status a client polls must change to running as the attempt starts, in the same transaction as the count.")
def test_long_job_is_not_started_twice(web, workers):
    children = workers(2)  # one runs the job, the other is idle and watches for abandoned jobs
    job_id = post(web, seconds=3 * REDELIVER)
    seen = []
    job = wait_job(web, job_id, lambda j: j["status"] in FINAL, timeout=WAIT + 3 * REDELIVER, seen=seen)
    states = {j["status"] for _, j in seen}
    assert "running" in states, f"the job was never seen 'running' (states seen: {sorted(states)}){worker_trouble(children)}"
    assert job == {"id": job_id, "status": "done", "attempts": 1, "error": None}, \
        f"a {3 * REDELIVER:.0f} s job on a live worker ended as {job}"


@check(task=3, points=3,
       hint="At-least-once delivery: the same job can run twice. Its completion must still be recorded "
            "once, and the second run must end 'done' too: give the SQLite table a unique key per job "
            "and make a second write for the same job change nothing.",
       nudge="TODO 3: a PRIMARY KEY (or UNIQUE) on the job id, and SQLite's way of skipping an insert that would break it.")
def test_completion_recorded_once(web, workers, redis_url, db_path):
    children = workers(1)
    job_id = post(web, seconds=0.1)
    job = wait_job(web, job_id, lambda j: j["status"] in FINAL)
    assert job["status"] == "done", f"the job reads {job}{worker_trouble(children)}"
    assert completions(db_path, job_id) == 1, \
        f"after one run, {completions(db_path, job_id)} rows in {db_path.name} hold the job's id (expected 1)"
    assert send_again(redis_url, job_id) >= 1, "the job's message is not in the queue"
    job = wait_job(web, job_id, lambda j: j["attempts"] >= 2 and j["status"] in FINAL)
    assert job["attempts"] >= 2, f"the job was not run a second time: {job}"
    assert job["status"] == "done", f"after running twice the job reads {job}"
    rows = completions(db_path, job_id)
    assert rows == 1, f"after running twice, {rows} rows in {db_path.name} hold the job's id (expected 1)"


@check(task=4, points=2,
       hint="A job that fails once must be tried again (after a short wait) and end 'done' with attempts 2 "
            "and no error.",
       nudge="TODO 4: only the last allowed attempt ends the job; before that, set it back to queued, wait, and loop.")
def test_failing_job_is_retried(web, workers):
    children = workers(1)
    job_id = post(web, seconds=0.1, fail_times=1)
    job = wait_job(web, job_id, lambda j: j["status"] in FINAL)
    assert job == {"id": job_id, "status": "done", "attempts": 2, "error": None}, \
        f"a job that fails only its first attempt ended as {job}{worker_trouble(children)}"


@check(task=4, points=3,
       hint="A job that always fails must end 'failed' -- never silently gone, never retried forever -- with "
            "at least 3 attempts, its error text in 'error', within 30 s; and each retry must wait longer "
            "than the one before (back off).",
       nudge="TODO 4: compare the attempt number with MAX_ATTEMPTS, keep the error text, and wait backoff(attempt) between tries.")
def test_always_failing_job_ends_failed(web, workers):
    children = workers(1)
    job_id = post(web, seconds=0.1, fail_times=10)
    seen = []
    job = wait_job(web, job_id, lambda j: j["attempts"] >= 1 or j["status"] in FINAL, seen=seen)
    assert job["attempts"] >= 1, f"no worker started the job: it reads {job}{worker_trouble(children)}"
    first = next(t for t, j in seen if j["attempts"] >= 1)
    job = wait_job(web, job_id, lambda j: j["status"] in FINAL, timeout=first + 30 - time.monotonic(), seen=seen)
    assert job["status"] == "failed", \
        f"30 s after its first attempt, a job that always fails reads {job}{worker_trouble(children)}"
    assert job["attempts"] >= 3, f"it ended 'failed' after {job['attempts']} attempts (at least 3)"
    assert isinstance(job["error"], str) and job["error"].strip() and len(job["error"]) <= 500, \
        f"the failed job's error should be a short text saying what went wrong; it is {job['error']!r}"
    starts = [next(t for t, j in seen if j["attempts"] >= n) for n in (1, 2, 3)]
    waits = [later - earlier for earlier, later in zip(starts, starts[1:])]
    # The waits are seen by polling a busy machine, so each may come out a few tenths of a second
    # long or short: a retry at once (~0.1 s) fails; the lesson's 0.5 s then 1 s passes.
    assert waits[0] >= 0.3 and waits[1] >= max(0.7, waits[0] - 0.1), \
        f"the retries started {', '.join(f'{w:.2f}' for w in waits)} s after the attempt before: back off"
