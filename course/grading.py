"""Graded checks: a pytest plugin that scores lessons and teaches on failure.

A graded check is a test in ``tests/graded/test_<lesson>.py`` decorated with
:func:`check`. It receives the learner's module through the ``lesson``
fixture, imported from ``lessons/`` or ``solutions/`` (``--target``).

A failed check prints what went wrong in one line and its hint, not a
traceback (run pytest with ``-v`` to see the traceback as well). The run ends
with a score table; ``--grade-json PATH`` writes the same as JSON.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRADED_DIR = ROOT / "tests" / "graded"
TARGETS = ("lessons", "solutions")


def check(points: int, hint: str):
    """Mark a test as a graded check worth ``points``, with a ``hint`` for a learner who fails it."""
    return pytest.mark.check(points=points, hint=hint)


@dataclass
class CheckResult:
    name: str
    passed: bool
    points: int
    max_points: int
    hint: str


def lesson_of(path: Path) -> str:
    """``tests/graded/test_l01_request_cycle.py`` grades the lesson ``l01_request_cycle``."""
    return path.stem.removeprefix("test_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("course", "course grading")
    group.addoption("--target", choices=TARGETS, default=os.environ.get("COURSE_TARGET", "lessons"),
                    help="which modules the graded checks import (default: lessons, or $COURSE_TARGET)")
    group.addoption("--grade-json", metavar="PATH", default=None,
                    help="also write the score report as JSON to PATH")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(points, hint): a graded check worth `points`")
    config.stash[_results_key] = {}


_results_key = pytest.StashKey[dict]()


@pytest.fixture(scope="module")
def lesson(request: pytest.FixtureRequest):
    """The module under grading: ``lessons.<name>`` or ``solutions.<name>``."""
    target = request.config.getoption("--target")
    name = lesson_of(Path(request.module.__file__))
    try:
        return importlib.import_module(f"{target}.{name}")
    except Exception as exc:  # a learner's syntax error must read as a hint, not a crash
        pytest.fail(f"{target}/{name}.py does not import: {type(exc).__name__}: {exc}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    marker = item.get_closest_marker("check")
    if marker is None:
        return report
    results = item.config.stash[_results_key]
    key = (lesson_of(item.path), item.name)
    points, hint = marker.kwargs["points"], marker.kwargs["hint"]
    # Only a call that ran and passed earns points: a skipped or erroring check earns none.
    if report.when == "setup":
        passed = False
    elif report.when == "call":
        passed = report.passed
    else:
        passed = results[key].passed and report.passed
    results[key] = CheckResult(item.name, passed, points if passed else 0, points, hint)
    if report.failed and item.config.get_verbosity() < 1:
        what = call.excinfo.exconly().strip() if call.excinfo else str(report.longrepr).strip().splitlines()[-1]
        what = "\n    ".join(what.splitlines()[:6])
        report.longrepr = f"What happened: {what}\nHint: {hint}\n(run with -v to see the traceback)"
        report.sections = []  # captured server logs too: -v shows them
    return report


def score_report(results: dict) -> dict:
    """The JSON report: top-level score and max_score, then per lesson and per check."""
    lessons: dict[str, dict] = {}
    for (lesson_name, _), result in sorted(results.items(), key=lambda kv: kv[0][0]):
        entry = lessons.setdefault(lesson_name, {"score": 0, "max_score": 0, "checks": []})
        entry["score"] += result.points
        entry["max_score"] += result.max_points
        entry["checks"].append(asdict(result))
    return {
        "score": sum(e["score"] for e in lessons.values()),
        "max_score": sum(e["max_score"] for e in lessons.values()),
        "lessons": lessons,
    }


def format_table(report: dict) -> str:
    rows = []
    width = max([len(c["name"]) for e in report["lessons"].values() for c in e["checks"]] + [20])
    for lesson_name, entry in report["lessons"].items():
        rows.append(f"{lesson_name}")
        for c in entry["checks"]:
            mark = "PASS" if c["passed"] else "FAIL"
            rows.append(f"  {mark}  {c['name']:<{width}}  {c['points']:>2}/{c['max_points']}")
        rows.append(f"        {'lesson total':<{width}}  {entry['score']:>2}/{entry['max_score']}")
    rows.append(f"TOTAL {report['score']}/{report['max_score']} points")
    return "\n".join(rows)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    results = config.stash[_results_key]
    if not results:
        return
    report = score_report(results)
    terminalreporter.section(f"score ({config.getoption('--target')})")
    terminalreporter.write_line(format_table(report))
    if path := config.getoption("--grade-json"):
        report["target"] = config.getoption("--target")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        terminalreporter.write_line(f"report written to {path}")


def grade(lesson_name: str | None = None, target: str | None = None) -> int:
    """Run the graded checks in a fresh process (so your latest edits count) and print the table.

    Call it from a notebook cell: ``grade("l01_request_cycle")``. Returns pytest's exit code.
    """
    target = target or os.environ.get("COURSE_TARGET", "lessons")
    path = GRADED_DIR / f"test_{lesson_name}.py" if lesson_name else GRADED_DIR
    cmd = [sys.executable, "-m", "pytest", str(path), f"--target={target}", "-q", "--no-header", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(proc.stdout + proc.stderr)
    return proc.returncode


_servers_key = pytest.StashKey[list]()


@pytest.fixture
def live_server(request: pytest.FixtureRequest):
    """Start apps on real uvicorn servers (thread mode, 127.0.0.1); all stop when the test ends.

    ``server = live_server(app)`` returns a :class:`course.server.RunningServer`.
    """
    from course.server import serve_in_thread

    started = request.node.stash.setdefault(_servers_key, [])

    def start(app, **config):
        server = serve_in_thread(app, name=f"test-{request.node.nodeid}-{len(started)}", **config)
        started.append(server)
        return server

    yield start
    _stop_servers(request.node)


def _stop_servers(item: pytest.Item) -> None:
    for server in item.stash.get(_servers_key, []):
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        return (yield)
    finally:
        # Stop the test's servers before pytest formats a failure. On Python 3.11, pytest and a
        # server thread logging a traceback can run ast.parse at the same moment, and that can
        # crash pytest with "SystemError: AST constructor recursion depth mismatch".
        _stop_servers(item)
