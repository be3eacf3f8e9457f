"""Graded checks for lessons/l01_request_cycle.py, run against a real uvicorn server."""

import time

import httpx
import pytest

from course.grading import check
from course.server import captured_log
from course.waiting import wait_until

WORK_SECONDS = 1.0
WAIT = 2.0  # the jobs here take at most 0.4 s; a stub run waits this out, so keep it short


@pytest.fixture
def app(lesson):
    return lesson.create_app()


@pytest.fixture
def client(app, live_server):
    with httpx.Client(base_url=live_server(app).url, timeout=WAIT) as client:
        yield client


def wait_job(app, job_id, condition=None, timeout=WAIT):
    """The job once ``condition(job)`` holds (default: done or failed), or as it is after ``timeout``."""
    jobs = app.state.jobs
    condition = condition or (lambda job: job.get("status") in ("done", "failed"))
    wait_until(lambda: condition(jobs.get(job_id) or {}), timeout)
    return jobs.get(job_id)


def accepted_job_id(response):
    assert response.status_code == 202, f"status {response.status_code}: {response.text}"
    job_id = response.json().get("job_id")
    assert job_id, f"no job_id in {response.json()}"
    return job_id


@check(task=1, points=2, hint="TODO 1: the response must go out before build_report runs. Calling the work in "
       "the endpoint (or calling it while handing it over) makes the client wait for all of it: hand the "
       "function and its arguments to the background tasks and let them call it later.")
def test_task1_report_answers_202_before_the_work_is_done(client, app):
    started = time.perf_counter()
    response = client.post("/reports", params={"seconds": WORK_SECONDS})
    elapsed = time.perf_counter() - started
    job_id = accepted_job_id(response)
    assert elapsed < WORK_SECONDS / 2, f"the response took {elapsed:.2f} s for {WORK_SECONDS} s of work"
    job = app.state.jobs.get(job_id)
    assert job is not None and job.get("kind") == "report", f"job_id should name the 'report' job you created: {job}"
    assert job["status"] != "done", "the work was finished before the response"
    assert response.json().get("status") == "pending", f"the body should say the job is pending: {response.json()}"


@check(task=1, points=1, hint="TODO 1: the report must actually get built after the response: schedule the "
       "work as a background task of this response (the job then goes pending -> running -> done).")
def test_task1_report_is_built_after_the_response(client, app):
    job_id = accepted_job_id(client.post("/reports", params={"seconds": 0.2}))
    job = wait_job(app, job_id)
    assert job["status"] == "done", f"job after {WAIT} s: {job}"
    assert client.get(f"/jobs/{job_id}").json()["status"] == "done"


@check(task=2, points=2, hint="TODO 2: an exception in a background task reaches nobody: catch it in "
       "run_recorded and record it in the job (status 'failed', an error that starts with the exception's "
       "class name). Do not raise it again: the next task of the same response would never run.")
def test_task2_a_failing_task_records_its_failure(client, app):
    job_id = accepted_job_id(client.post("/imports", json={"rows": ["1", "two", "3"]}))
    job = wait_job(app, job_id)
    assert job["status"] == "failed", f"the job should say 'failed', it says {job}"
    assert str(job.get("error", "")).startswith("ValueError: "), f"the error should read 'ValueError: <message>': {job}"
    assert "two" in job["error"], f"the error should keep the exception's message: {job}"
    job = wait_job(app, job_id, lambda job: job.get("followed_up"))
    assert job.get("followed_up"), "the next task of the same response never ran: record the failure, don't re-raise"
    # A fresh connection: after a task raises, uvicorn closes the one the response used.
    with httpx.Client(base_url=str(client.base_url), timeout=WAIT) as fresh:
        assert fresh.get(f"/jobs/{job_id}").json()["status"] == "failed"
        assert fresh.get("/ping").status_code == 200, "the server should keep serving after a failed task"


@check(task=2, points=1, hint="TODO 2: a recorded failure must also reach the server log, with its traceback: "
       "log it through the lesson's logger `log`, from inside the except branch, with the method that "
       "attaches the exception being handled.")
def test_task2_the_failure_is_logged_with_its_traceback(client, app, lesson):
    with captured_log(lesson.log.name) as logged:
        job_id = accepted_job_id(client.post("/imports", json={"rows": ["1", "x", "3"]}))
        wait_job(app, job_id)
        logged.wait(1, timeout=WAIT)
    with_traceback = [record for record in logged if record.exc_info and isinstance(record.exc_info[1], ValueError)]
    assert with_traceback, (f"the lesson's logger {lesson.log.name!r} logged no ValueError with its traceback "
                            f"(got {[record.getMessage() for record in logged]})")


@check(task=2, points=1, hint="TODO 2: the job says 'running' while the work runs, then 'done' with "
       "result set to what the work returned.")
def test_task2_a_successful_task_records_running_then_its_result(client, app, lesson):
    job_id = accepted_job_id(client.post("/imports", json={"rows": ["1", "2", "3"]}))
    job = wait_job(app, job_id)
    assert job["status"] == "done", f"the job should say 'done', it says {job}"
    assert job.get("result") == 6, f"result should be the sum 6: {job}"
    jobs = lesson.JobStore()
    watched = jobs.create("watched")
    lesson.run_recorded(jobs, watched, lambda: jobs.get(watched)["status"])  # the work reports what it sees
    assert jobs.get(watched).get("result") == "running", \
        f"while the work ran, the job said {jobs.get(watched).get('result')!r}, not 'running'"


@check(task=3, points=3, hint="TODO 3: while the thumbnail is made, other requests wait for it: the blocking "
       "call runs on the event loop, and an await before it does not help. The job must still say 'done' only "
       "after the resize has finished.",
       nudge="TODO 3: how a task is declared decides where Starlette runs it: on the event loop, or in its "
       "threadpool.")
def test_task3_blocking_task_does_not_stall_other_requests(client, app):
    started = time.perf_counter()
    job_id = accepted_job_id(client.post("/thumbnails", params={"seconds": WORK_SECONDS}))
    slowest = 0.0
    for _ in range(3):
        sent = time.perf_counter()
        assert client.get("/ping").status_code == 200
        slowest = max(slowest, time.perf_counter() - sent)
    assert slowest < 0.25, f"GET /ping took {slowest:.2f} s while the thumbnail was being made"
    job = wait_job(app, job_id, timeout=WORK_SECONDS + WAIT)
    finished = time.perf_counter() - started
    assert job["status"] == "done", f"the thumbnail job never finished: {job}"
    assert finished >= WORK_SECONDS * 0.9, \
        f"the job said 'done' after {finished:.2f} s, before the {WORK_SECONDS} s resize could have finished"
