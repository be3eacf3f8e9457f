"""Jobs seen from the client: send them, watch their status, draw what happened.

Notebook 05 and ``bench/durable_work.py`` only talk to a job app through its HTTP API
(``POST /jobs`` -> 202 ``{"id"}``, ``GET /jobs/{id}`` -> ``{"status", "attempts", ...}``), so the
same helpers serve the BackgroundTasks specimen and lesson 5's queue:

* :func:`post_jobs` sends jobs one after another and keeps the ones that got a 202;
* :func:`watch_jobs` polls every job's status and records each change (status or attempts) with
  the time it was seen, until every job has finished or the time is up;
* :func:`job_timeline` draws those records, one row per job, with moments (a kill) marked;
* :func:`loss_bars` draws accepted / finished / lost per scenario.

Times are ``time.time()`` (wall clock), so they line up with what worker processes record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

__all__ = ["FINISHED", "JobHistory", "acknowledged", "drain_rate", "job_timeline", "loss_bars", "percentile",
           "post_jobs", "post_latencies", "start_delays", "text_table", "watch_jobs"]

FINISHED = frozenset({"done", "failed"})
COLORS = {"queued": "0.75", "running": "C1", "done": "C2", "failed": "C3", "unknown": "C7"}


@dataclass
class JobHistory:
    """What the client saw of one job: ``changes`` is ``[(time, status, attempts)]``, one per change."""

    id: str
    accepted: float
    changes: list[tuple[float, str, int | None]] = field(default_factory=list)

    @property
    def last(self) -> dict:
        if not self.changes:
            return {"status": "unknown", "attempts": None}
        _, status, attempts = self.changes[-1]
        return {"status": status, "attempts": attempts}

    @property
    def finished(self) -> bool:
        return self.last["status"] in FINISHED

    def first_seen(self, status: str) -> float | None:
        return next((t for t, s, _ in self.changes if s == status), None)


async def post_jobs(url: str, bodies: Sequence[dict], *, spacing: float = 0.0,
                    timeout: float = 5.0) -> list[JobHistory]:
    """``POST /jobs`` each body in turn (``spacing`` s apart); the jobs that were answered 202.

    A refused connection or an error status ends nothing: that job simply was not accepted."""
    accepted = []
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        for body in bodies:
            try:
                response = await client.post("/jobs", json=body)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 202:
                accepted.append(JobHistory(response.json()["id"], time.time()))
            if spacing:
                await asyncio.sleep(spacing)
    return accepted


async def watch_jobs(url: str, jobs: Iterable[JobHistory], *, timeout: float, interval: float = 0.05,
                     stop_when_finished: bool = True) -> list[JobHistory]:
    """Poll ``GET /jobs/{id}`` for each job every ``interval`` s, recording each change, until all
    have finished (``done`` or ``failed``) or ``timeout`` s passed. A failed request (the web
    process is down) is skipped: polling goes on, as a client would."""
    jobs = list(jobs)
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:

        async def poll(job: JobHistory) -> None:
            try:
                response = await client.get(f"/jobs/{job.id}")
            except httpx.TransportError:
                return
            if response.status_code != 200:
                seen = ("unknown", None)
            else:
                body = response.json()
                seen = (body.get("status", "unknown"), body.get("attempts"))
            if not job.changes or job.changes[-1][1:] != seen:
                job.changes.append((time.time(), *seen))

        while True:
            await asyncio.gather(*(poll(job) for job in jobs if not job.finished))
            if (stop_when_finished and all(job.finished for job in jobs)) or time.monotonic() >= deadline:
                return jobs
            await asyncio.sleep(interval)


def job_timeline(jobs: Sequence[JobHistory], events: Iterable[tuple[str, float]] = (), *, origin: float | None = None,
                 title: str = "", until: float | None = None):
    """One row per job: grey while queued, orange while running, green once done, red once failed,
    with the attempt number written where it changed. ``events`` are ``(label, time.time())``
    moments drawn as dashed lines. Returns the matplotlib ``Figure``."""
    origin = origin if origin is not None else min(job.accepted for job in jobs)
    end = (until if until is not None else max((t for job in jobs for t, *_ in job.changes), default=origin)) - origin
    end = max(end, 0.1)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(jobs) + 1.6))
    for row, job in enumerate(jobs):
        points = [(job.accepted, "queued", None), *job.changes]
        for index, (moment, status, attempts) in enumerate(points):
            start = moment - origin
            stop = (points[index + 1][0] - origin) if index + 1 < len(points) else end
            if status in FINISHED:
                stop = start + end * 0.015  # a finished job is a mark, not a bar
            ax.barh(row, max(stop - start, 0.002), left=start, height=0.55, color=COLORS.get(status, "C7"))
            previous = points[index - 1][2] if index else None
            if status == "running" and attempts and attempts != previous:
                ax.text(start, row, f" {attempts}", va="center", fontsize=7)
                if index > 1:  # a new attempt: mark where it began
                    ax.plot([start, start], [row - 0.3, row + 0.3], color="black", linewidth=1)
    for index, (label, moment) in enumerate(events):
        ax.axvline(moment - origin, color=f"C{index + 4}", linestyle="--", label=f"{label} ({moment - origin:.1f} s)")
    ax.set_yticks(range(len(jobs)), [f"job {i + 1}" for i in range(len(jobs))], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, end * 1.05)
    ax.set_xlabel("seconds since the first job was accepted (numbers: attempt)")
    handles = [Patch(color=color, label=status) for status, color in COLORS.items() if status != "unknown"]
    statuses = ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=7, ncols=4,
                         frameon=False)
    if events:
        ax.add_artist(statuses)
        ax.legend(loc="lower right", bbox_to_anchor=(1, 1.0), fontsize=7, frameon=False)
    if title:
        ax.set_title(title, pad=22)
    fig.tight_layout()
    return fig


def loss_bars(rows: Mapping[str, Mapping[str, int]], title: str = ""):
    """``{scenario: {"finished": n, "lost": m}}`` as stacked bars (accepted = finished + lost)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    names = list(rows)
    finished = [rows[name]["finished"] for name in names]
    lost = [rows[name]["lost"] for name in names]
    done_bars = ax.bar(names, finished, color="C2", label="finished")
    lost_bars = ax.bar(names, lost, bottom=finished, color="C3", label="lost")
    ax.bar_label(done_bars, label_type="center", fontsize=8)
    ax.bar_label(lost_bars, labels=[str(n) if n else "" for n in lost], label_type="center", fontsize=8)
    ax.set_ylabel("accepted jobs (202)")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# --- the cost of a queue, measured from outside ------------------------------------------------

def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` (0..1) percentile of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


async def post_latencies(url: str, count: int, body: dict | None = None) -> list[float]:
    """``POST /jobs`` ``count`` times, one after another on one connection; each call's seconds."""
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = await client.post("/jobs", json=body or {"seconds": 0})
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
    return latencies


async def start_delays(url: str, count: int, interval: float = 0.002, timeout: float = 10.0) -> list[float]:
    """For ``count`` jobs of 0 s, one at a time: seconds from sending ``POST /jobs`` until ``GET /jobs/{id}``
    first says it is no longer ``queued`` (polled every ``interval`` s, so that much is resolution)."""
    delays = []
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = await client.post("/jobs", json={"seconds": 0})
            response.raise_for_status()
            job_id = response.json()["id"]
            while (await client.get(f"/jobs/{job_id}")).json()["status"] == "queued":
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"job {job_id} still queued after {timeout} s")
                await asyncio.sleep(interval)
            delays.append(time.perf_counter() - started)
    return delays


def acknowledged(redis_url: str) -> tuple[int, int]:
    """``(jobs acknowledged, consumers)`` of the course's queue group: what its workers finished."""
    import redis

    from course.queue import GROUP, QUEUE

    with redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5) as client:
        if not client.exists(QUEUE):
            return 0, 0
        group = next((g for g in client.xinfo_groups(QUEUE) if g["name"] == GROUP), None)
        if group is None:
            return 0, 0
        return (group["entries-read"] or 0) - group["pending"], group["consumers"]


async def drain_rate(redis_url: str, web_url: str, jobs: int, start_workers, timeout: float = 60.0) -> dict:
    """Jobs per second of ``jobs`` 0-second jobs drained by fresh workers that ``start_workers()`` starts.

    The workers start first, and the clock starts only once every one of them has logged that it is
    about to listen (start-up is not counted, and no worker can empty the queue before the others
    are there). It runs from the first ``POST /jobs`` until the last job is acknowledged, so the
    web process's enqueueing is part of it, as in real use."""
    from course.queue import READY_LOG

    workers = start_workers()
    deadline = time.monotonic() + timeout
    while not all(READY_LOG in worker.log_text() for worker in workers):
        if time.monotonic() > deadline or not all(worker.alive for worker in workers):
            raise TimeoutError(f"the workers did not start: {[w.log_text(500) for w in workers]}")
        await asyncio.sleep(0.01)
    done_before, _ = acknowledged(redis_url)
    started = time.perf_counter()
    await post_jobs(web_url, [{"seconds": 0}] * jobs)
    while (done := acknowledged(redis_url)[0] - done_before) < jobs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {jobs} jobs acknowledged after {timeout} s")
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    return {"workers": workers, "jobs": jobs, "seconds": elapsed, "jobs_per_s": jobs / elapsed}


def text_table(rows: Sequence[Mapping[str, object]]) -> str:
    """Rows of dicts (same keys) as an aligned text table; floats with 3 significant digits."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(line[i]) for line in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)
