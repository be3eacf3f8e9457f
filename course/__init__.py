"""Course plumbing shared by notebooks, tests and benchmarks.

* :mod:`course.server`         run an app on a real uvicorn server inside a kernel
* :mod:`course.grading`        graded checks (pytest plugin) and ``grade()`` for notebooks
* :mod:`course.stubs`          derive ``lessons/`` from ``solutions/``
* :mod:`course.plots`          plots of measurements
* :mod:`course.kernels`        a throwaway kernel for demos that would kill the notebook's own
* :mod:`course.wsclients`      WebSocket test clients: a listener that records arrivals, a stuck client
* :mod:`course.upload_tools`   a server in a child process with exact peak memory, streamed upload bodies
* :mod:`course.classic_upload` the classic upload endpoint, kept as is to show what goes wrong
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
