"""How long does a client wait for a response whose endpoint schedules a background task?

For background tasks of 0, 0.5, 1 and 2 s (a plain ``def`` task that calls ``time.sleep``),
this sends ``POST /work?seconds=S`` a few times

* through a real uvicorn server (``course.serve_in_thread``, 127.0.0.1, one keep-alive
  ``httpx.Client``): the response leaves before the task starts, so the time stays flat;
* through Starlette's ``TestClient``: it returns only once the whole ASGI call, background
  task included, has returned, so the time grows with the task.

It prints the p50 and p95 of the client-side time per row. Run it from the repository root:

    .venv/bin/python bench/response_vs_task.py                 # 7 requests per row, about 30 s
    .venv/bin/python bench/response_vs_task.py --requests 5 --seconds 0 0.5

Notebook 01 makes the same measurement at a smaller scale. The script stops its server itself;
every wait has a timeout.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import warnings

import httpx
from fastapi import BackgroundTasks, FastAPI

import course

MAX_REQUESTS = 50  # keeps any run bounded; the default run takes about 30 s


def create_app(finished: threading.Semaphore) -> FastAPI:
    """``POST /work?seconds=S`` answers 202 and then runs a ``def`` task that sleeps S seconds."""
    app = FastAPI()

    def slow_task(seconds: float) -> None:
        time.sleep(seconds)  # blocking work, so Starlette runs it in its threadpool
        finished.release()

    @app.post("/work", status_code=202)
    async def work(background_tasks: BackgroundTasks, seconds: float = 0.0):
        background_tasks.add_task(slow_task, seconds)
        return {"accepted": True}

    return app


def wait_for_tasks(finished: threading.Semaphore, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(count):
        if not finished.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise TimeoutError(f"{count} background tasks did not finish within {timeout} s")


def time_posts(client: httpx.Client, seconds: float, requests: int) -> list[float]:
    """Client-side duration of each of ``requests`` calls to ``POST /work?seconds=...``."""
    durations = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.post("/work", params={"seconds": seconds})
        durations.append(time.perf_counter() - started)
        response.raise_for_status()
    return durations


def percentiles(durations: list[float]) -> tuple[float, float]:
    """p50 and p95 (interpolated between samples; with few samples p95 sits near the maximum)."""
    cuts = statistics.quantiles(durations, n=20, method="inclusive")
    return statistics.median(durations), cuts[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=7, help="requests per row (default %(default)s, 2 to 50)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0],
                        help="background task durations to measure (each at most 5 s)")
    args = parser.parse_args()
    if not 2 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be between 2 and {MAX_REQUESTS}")
    if any(not 0 <= s <= 5 for s in args.seconds):
        parser.error("--seconds values must be between 0 and 5")

    # Starlette 1.10 prefers the httpx2 package and warns on import; the course pins httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

    finished = threading.Semaphore(0)  # released once by each background task
    app = create_app(finished)
    server = course.serve_in_thread(app, name="bench-response-vs-task")
    rows = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http, TestClient(app) as test_client:
            for client in (http, test_client):  # warm-up, not timed
                client.post("/work", params={"seconds": 0}).raise_for_status()
            wait_for_tasks(finished, 2, timeout=10)
            for seconds in args.seconds:
                row = {"task (s)": seconds}
                for name, client in (("uvicorn", http), ("TestClient", test_client)):
                    row[name] = percentiles(time_posts(client, seconds, args.requests))
                # The uvicorn tasks run on after their responses: let them finish before the next row.
                wait_for_tasks(finished, 2 * args.requests, timeout=seconds * args.requests + 10)
                rows.append(row)
                print(f"measured {seconds} s tasks", flush=True)
    finally:
        server.stop()

    print(f"\nclient-side time of POST /work, {args.requests} requests per row, milliseconds\n")
    print(f"{'task (s)':>8} | {'uvicorn p50':>11} {'uvicorn p95':>11} | {'TestClient p50':>14} {'TestClient p95':>14}")
    print("-" * 66)
    for row in rows:
        (u50, u95), (t50, t95) = row["uvicorn"], row["TestClient"]
        print(f"{row['task (s)']:>8.1f} | {u50 * 1000:>11.1f} {u95 * 1000:>11.1f} | "
              f"{t50 * 1000:>14.1f} {t95 * 1000:>14.1f}")


if __name__ == "__main__":
    main()
