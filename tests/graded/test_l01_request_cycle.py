"""Graded checks for lessons/l01_request_cycle.py, run against a real uvicorn server."""

import time

import httpx
import pytest

from course.grading import check

WORK_SECONDS = 1.0
WAIT = 2.0  # the jobs here take at most 0.2 s; a stub run waits this out, so keep it short


@pytest.fixture
def app(lesson):
    return lesson.create_app()


@pytest.fixture
def client(app, live_server):
    with httpx.Client(base_url=live_server(app).url, timeout=WAIT) as client:
        yield client


@check(points=2, hint="TODO 1: in request_report, create a job with jobs.create('report'), "
       "schedule it with background_tasks.add_task(build_report, jobs, job_id, seconds) and return "
       "{'job_id': job_id, 'status': 'pending'} straight away. Do not call build_report yourself: "
       "the client would wait for it.")
def test_task1_report_answers_202_before_the_work_is_done(client, app):
    started = time.perf_counter()
    response = client.post("/reports", params={"seconds": WORK_SECONDS})
    elapsed = time.perf_counter() - started
    assert response.status_code == 202, f"status {response.status_code}: {response.text}"
    job_id = response.json().get("job_id")
    assert job_id, f"no job_id in {response.json()}"
    assert elapsed < WORK_SECONDS / 2, f"the response took {elapsed:.2f} s for {WORK_SECONDS} s of work"
    assert app.state.jobs.get(job_id)["status"] != "done", "the work was finished before the response"


@check(points=1, hint="TODO 1: the job must actually run after the response. Check that you pass "
       "the function itself to add_task (build_report, not build_report(...)) and then its arguments.")
def test_task1_report_is_built_after_the_response(client, app):
    response = client.post("/reports", params={"seconds": 0.2})
    assert response.status_code == 202, f"status {response.status_code}: {response.text}"
    job = app.state.jobs.wait_finished(response.json()["job_id"], timeout=WAIT)
    assert job["status"] == "done", f"job after {WAIT} s: {job}"
    assert client.get(f"/jobs/{job['id']}").json()["status"] == "done"


@check(points=2, hint="TODO 2: wrap the call in try/except Exception; in the except branch call "
       "jobs.update(job_id, status='failed', error=f'{type(exc).__name__}: {exc}') and log.exception(...). "
       "Don't re-raise: the client is long gone, nobody would see it.")
def test_task2_a_failing_task_records_its_failure(client, app):
    response = client.post("/imports", json={"rows": ["1", "two", "3"]})
    assert response.status_code == 202, f"status {response.status_code}: {response.text}"
    job = app.state.jobs.wait_finished(response.json()["job_id"], timeout=WAIT)
    assert job["status"] == "failed", f"the job should say 'failed', it says {job}"
    assert "ValueError" in job.get("error", ""), f"the error should name the exception: {job}"
    job = app.state.jobs.wait_until(job["id"], lambda job: job.get("followed_up"), timeout=WAIT)
    assert job.get("followed_up"), "the next task of the same response never ran: record the failure, don't re-raise"
    # A fresh connection: after a task raises, uvicorn closes the one the response used.
    with httpx.Client(base_url=str(client.base_url), timeout=WAIT) as fresh:
        assert fresh.get(f"/jobs/{job['id']}").json()["status"] == "failed"
        assert fresh.get("/ping").status_code == 200, "the server should keep serving after a failed task"


@check(points=1, hint="TODO 2: on success, mark the job 'running' first, then 'done' with "
       "result=<what work(*args) returned>.")
def test_task2_a_successful_task_records_its_result(client, app):
    response = client.post("/imports", json={"rows": ["1", "2", "3"]})
    assert response.status_code == 202, f"status {response.status_code}: {response.text}"
    job = app.state.jobs.wait_finished(response.json()["job_id"], timeout=WAIT)
    assert job["status"] == "done", f"the job should say 'done', it says {job}"
    assert job.get("result") == 6, f"result should be the sum 6: {job}"


@check(points=3, hint="TODO 3: an `async def` background task runs on the event loop, so its "
       "time.sleep blocks every other request. Declare make_thumbnail with plain `def` and "
       "Starlette runs it in a worker thread.")
def test_task3_blocking_task_does_not_stall_other_requests(client, app):
    response = client.post("/thumbnails", params={"seconds": WORK_SECONDS})
    assert response.status_code == 202, f"status {response.status_code}: {response.text}"
    job_id = response.json()["job_id"]
    slowest = 0.0
    for _ in range(3):
        started = time.perf_counter()
        assert client.get("/ping").status_code == 200
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.25, f"GET /ping took {slowest:.2f} s while the thumbnail was being made"
    job = app.state.jobs.wait_finished(job_id, timeout=WAIT)
    assert job["status"] == "done", f"the thumbnail job never finished: {job}"
