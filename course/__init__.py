"""Course plumbing shared by notebooks, tests and benchmarks: one module per concern.

Servers and processes
* :mod:`course.server`         run an app on a real uvicorn server inside a kernel (thread or loop mode); log capture
* :mod:`course.children`       child-process servers (one or several uvicorn workers) and workers, stopped by PID
* :mod:`course.redis_server`   a private redis-server per kernel or test session (127.0.0.1, free port, temp dir)
* :mod:`course.kernels`        a throwaway kernel for demos that would kill the notebook's own
* :mod:`course.waiting`        wait_until / wait_for_async: poll a condition with a timeout

Given code the lessons build on
* :mod:`course.multipart`      read one file part of a multipart body as it arrives (lesson 2's endpoint)
* :mod:`course.queue`          the course's task queue: taskiq on a Redis stream that loses no job when a worker dies
* :mod:`course.upload_jobs`    the blog's upload rebuilt: streamed in the request, processed by a queue worker
* :mod:`course.specimens`      the tutorials' code kept as is to show what goes wrong

Clients, probes and plots
* :mod:`course.wsclients`      WebSocket clients: a listener that records arrivals, a stuck client, a raw WebSocket
                               typed by hand, a byte-counting proxy
* :mod:`course.sseclients`     a server-sent events client that keeps keep-alive comments and raw lines
* :mod:`course.uploads`        upload bodies (raw, large streamed, chunked), memory/disk/wait measurements
* :mod:`course.fanout`         lean WebSocket clients over several processes, timing a broadcast to all (benches)
* :mod:`course.relay`          lesson 6's probes: which worker holds a client, time until all clients have a message
* :mod:`course.jobplots`       jobs seen from the client: post, watch, time them, draw their timeline
* :mod:`course.browser`        Debian's chromium through Playwright; skip, or fail in CI, without it
* :mod:`course.plots`          plots of measurements

Grading and the classroom
* :mod:`course.targets`        which lesson files run: lessons/, solutions/ or a copy (the one place that decides)
* :mod:`course.grading`        graded checks (pytest plugin: @check(task, points, hint, nudge)) and ``grade()``
* :mod:`course.stubs`          derive ``lessons/`` from ``solutions/``
* :mod:`course.mutants`        plausible wrong answers, each graded against the check meant to catch it
* :mod:`course.progress`       progress over the course and the next thing to do (`make check`, `make watch`)
* :mod:`course.watch`          re-grade a lesson when it is saved (`make watch`)
* :mod:`course.classroom`      GitHub Classroom: per-check points for the grading reporter, the workflow
* :mod:`course.release`        the student copy without answers (`make release`)
* :mod:`course.gradebook`      grade every student's checkout into a CSV (`make gradebook`)
* :mod:`course.labdriver`      `make lab` driven by Debian's chromium, for the browser tests
"""

from __future__ import annotations

import os
from types import ModuleType

from course.server import PortInUseError, RunningServer, captured_log, serve_in_thread, serve_on_loop, stop_all

SELF_CHECK_ENV = "COURSE_SELF_CHECK"


def target() -> str:
    """Which lesson files run: ``lessons`` (yours, default), ``solutions`` or a directory (course.targets)."""
    from course.targets import target as current_target

    return current_target()


def load_lesson(name: str) -> ModuleType:
    """Import ``lessons.<name>`` (or the current target's), reloaded so your latest edits count."""
    from course.targets import load_lesson as load

    return load(name, reload=True)


def grade(lesson_name: str | None = None, nudge: bool = False) -> None:
    """Grade your lesson in a fresh process and print the score table (see course.grading.grade).

    ``nudge=True`` also shows a more concrete nudge under the hint of each failed check that has one.
    """
    from course.grading import grade as run_grade

    if os.environ.get(SELF_CHECK_ENV) == "skip":  # set by tests/course/test_notebooks.py, see there
        print(f"(self-check skipped: ${SELF_CHECK_ENV}=skip; `make check` grades {lesson_name or 'every lesson'})")
        return
    run_grade(lesson_name, target(), nudge=nudge)  # the table says it all; no exit code echoed into the cell


__all__ = [
    "PortInUseError",
    "RunningServer",
    "captured_log",
    "grade",
    "load_lesson",
    "serve_in_thread",
    "serve_on_loop",
    "stop_all",
    "target",
]
