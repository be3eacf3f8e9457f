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

import importlib
import os
from types import ModuleType

from course.server import PortInUseError, RunningServer, captured_log, serve_in_thread, serve_on_loop, stop_all


def target() -> str:
    """Which modules the notebooks use: ``lessons`` (yours, default) or ``solutions`` ($COURSE_TARGET)."""
    return os.environ.get("COURSE_TARGET", "lessons")


def load_lesson(name: str) -> ModuleType:
    """Import ``lessons.<name>`` (or ``solutions.<name>``), reloaded so your latest edits count."""
    module = importlib.import_module(f"{target()}.{name}")
    return importlib.reload(module)


def grade(lesson_name: str | None = None) -> None:
    """Grade your lesson in a fresh process and print the score table (see course.grading.grade)."""
    from course.grading import grade as run_grade

    run_grade(lesson_name, target())  # the table says it all; no exit code echoed into the cell


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
