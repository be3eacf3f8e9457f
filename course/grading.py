"""Graded checks: a pytest plugin that scores lessons and teaches on failure.

A graded check is a test in ``tests/graded/test_<lesson>.py`` decorated with :func:`check`::

    @check(task=2, points=3, hint="the idea and the symptom, never the answer's code",
           nudge="a more concrete pointer, still no code: shown only with --nudge")
    def test_upload_is_streamed(lesson, live_server): ...

It receives the learner's module through the ``lesson`` fixture, imported from the target
that :mod:`course.targets` decides: ``--target lessons|solutions|DIR``, else
``$COURSE_TARGET``, else ``lessons``.

A failed check prints what went wrong in one line and its hint, not a traceback (run pytest
with ``-v`` to see the traceback as well); ``--nudge`` adds the check's nudge. The run ends
with a score table, per lesson and per TODO (``task``); ``--grade-json PATH`` writes the same
as JSON, each check with its ``task_id``. Results travel from pytest-xdist workers to the
controller in ``report.user_properties``, so the table and the JSON are whole under ``-n``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import pytest

from course import targets

ROOT = Path(__file__).resolve().parent.parent
GRADED_DIR = ROOT / "tests" / "graded"
PROPERTY = "course_check"  # the user_properties entry that carries a check's result


def check(points: int, hint: str, *, task: int | None = None, nudge: str | None = None):
    """Mark a test as a graded check of TODO ``task`` worth ``points``.

    ``hint`` is shown when the check fails: the idea and the symptom, never the answer's code.
    ``nudge`` (optional) is more concrete, still without code, and shown only on request
    (``pytest --nudge``, ``course.grade(name, nudge=True)``).
    """
    return pytest.mark.check(points=points, hint=hint, task=task, nudge=nudge)


@dataclass
class CheckResult:
    name: str
    passed: bool
    points: int
    max_points: int
    hint: str
    task_id: int | None = None
    nudge: str | None = None
    outcome: str = "failed"  # passed, failed, skipped (earns nothing) or error (in setup or teardown)


@dataclass(frozen=True)
class CheckSpec:
    """A graded check as declared, read without running it (see :func:`graded_checks`)."""
    lesson: str
    name: str
    task: int | None
    points: int
    hint: str
    nudge: str | None


def lesson_of(path: Path) -> str:
    """``tests/graded/test_l01_request_cycle.py`` grades the lesson ``l01_request_cycle``."""
    return Path(path).stem.removeprefix("test_")


def graded_files() -> list[Path]:
    return sorted(GRADED_DIR.glob("test_l[0-9][0-9]_*.py"))


def _import_graded(path: Path) -> ModuleType:
    name = f"course_graded_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def graded_checks(lesson: str) -> dict[str, CheckSpec]:
    """The checks of ``tests/graded/test_<lesson>.py`` by test function name, read from their marks."""
    module = _import_graded(GRADED_DIR / f"test_{lesson}.py")
    found: dict[str, CheckSpec] = {}

    def visit(name: str, obj, inherited=()) -> None:
        marks = [*inherited, *getattr(obj, "pytestmark", [])]
        for mark in marks:
            if mark.name == "check":
                kw = mark.kwargs
                found[name] = CheckSpec(lesson, name, kw.get("task"), kw["points"], kw["hint"], kw.get("nudge"))

    for name, obj in vars(module).items():
        if name.startswith("test") and callable(obj) and not isinstance(obj, type):
            visit(name, obj)
        elif name.startswith("Test") and isinstance(obj, type):
            for method_name, method in vars(obj).items():
                if method_name.startswith("test") and callable(method):
                    visit(f"{name}::{method_name}", method, getattr(obj, "pytestmark", []))
    return found


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("course", "course grading")
    group.addoption("--target", default=None, metavar="lessons|solutions|DIR",
                    help="which lesson files the checks (and notebooks) use: lessons (default, or "
                         "$COURSE_TARGET), solutions, or a directory holding a copy of the lessons package")
    group.addoption("--grade-json", metavar="PATH", default=None,
                    help="also write the score report as JSON to PATH")
    group.addoption("--nudge", action="store_true", default=False,
                    help="show each failed check's nudge (a more concrete hint) under its hint")


_scorer_key = pytest.StashKey["Scorer"]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(points, hint, task, nudge): a graded check of TODO `task` "
                                       "worth `points`")
    try:
        value = targets.activate(config.getoption("--target"))
    except targets.TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.option.target = value  # workers and reports see the same, normalized value
    config.stash[_scorer_key] = scorer = Scorer()
    config.pluginmanager.register(scorer, "course-scorer")


@pytest.fixture(scope="module")
def lesson(request: pytest.FixtureRequest):
    """The module under grading: ``<target>.<lesson>``, the target decided by course.targets."""
    name = lesson_of(Path(request.module.__file__))
    try:
        return targets.load_lesson(name)
    except Exception as exc:  # a learner's syntax error must read as a hint, not a crash
        pytest.fail(f"{targets.target()}/{name}.py does not import: {type(exc).__name__}: {exc}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    marker = item.get_closest_marker("check")
    if marker is None:
        return report
    kw = marker.kwargs
    report.user_properties.append((PROPERTY, {
        "lesson": lesson_of(item.path), "name": item.name, "line": item.location[1] or 0,
        "points": kw["points"], "hint": kw["hint"], "task": kw.get("task"), "nudge": kw.get("nudge"),
    }))
    if report.failed and item.config.get_verbosity() < 1:
        what = call.excinfo.exconly().strip() if call.excinfo else str(report.longrepr).strip().splitlines()[-1]
        what = "\n    ".join(what.splitlines()[:6])
        lines = [f"What happened: {what}", f"Hint: {kw['hint']}"]
        if kw.get("nudge") and item.config.getoption("--nudge"):
            lines.append(f"Nudge: {kw['nudge']}")
        elif kw.get("nudge"):
            lines.append("(a more concrete nudge on request: make check NUDGE=1, pytest --nudge, "
                         "or course.grade(..., nudge=True))")
        lines.append("(run with -v to see the traceback)")
        report.longrepr = "\n".join(lines)
        report.sections = []  # captured server logs too: -v shows them
    return report


class Scorer:
    """Folds each check's setup/call/teardown reports into one result, in this process or, under
    pytest-xdist, on the controller (reports arrive there with their ``user_properties``)."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], CheckResult] = {}
        self.order: dict[tuple[str, str], tuple] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        spec = next((value for name, value in report.user_properties if name == PROPERTY), None)
        if spec is None:
            return
        key = (spec["lesson"], report.nodeid)
        # Only a call that ran and passed earns points: a skipped or erroring check earns none.
        if report.when == "setup":
            passed = False
            outcome = "error" if report.failed else "skipped" if report.skipped else "failed"
        elif report.when == "call":
            passed = report.passed
            outcome = report.outcome
        else:
            earlier = self.results.get(key)
            passed = earlier is not None and earlier.passed and report.passed
            outcome = "error" if report.failed else earlier.outcome if earlier else "error"
        points = spec["points"]
        self.results[key] = CheckResult(spec["name"], passed, points if passed else 0, points, spec["hint"],
                                        spec["task"], spec["nudge"], outcome)
        self.order[key] = (spec["task"] if spec["task"] is not None else 1_000_000, spec["line"], spec["name"])

    def report(self) -> dict:
        return score_report(self.results, self.order)


def score_report(results: dict, order: dict | None = None) -> dict:
    """The JSON report: top-level score and max_score, then per lesson and per check (with task_id)."""
    order = order or {}
    lessons: dict[str, dict] = {}
    keys = sorted(results, key=lambda k: (k[0], order.get(k, (0, 0, "")), k[1]))
    for key in keys:
        result = results[key]
        entry = lessons.setdefault(key[0], {"score": 0, "max_score": 0, "checks": []})
        entry["score"] += result.points
        entry["max_score"] += result.max_points
        entry["checks"].append(asdict(result))
    return {
        "score": sum(e["score"] for e in lessons.values()),
        "max_score": sum(e["max_score"] for e in lessons.values()),
        "lessons": lessons,
    }


def per_task(entry: dict) -> dict:
    """{task_id: [score, max_score]} of one lesson of a report, in task order."""
    tasks: dict = {}
    for c in entry["checks"]:
        score = tasks.setdefault(c["task_id"], [0, 0])
        score[0] += c["points"]
        score[1] += c["max_points"]
    return dict(sorted(tasks.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def format_table(report: dict) -> str:
    """Per lesson: one row per check (TODO number, PASS/FAIL, name, points), then the lesson's total."""
    rows = []
    width = max([len(c["name"]) for e in report["lessons"].values() for c in e["checks"]] + [20])
    for lesson_name, entry in report["lessons"].items():
        rows.append(f"{lesson_name}")
        rows.append(f"  {'TODO':>4}        {'check':<{width}}  points")
        for c in entry["checks"]:
            mark = "PASS" if c["passed"] else "FAIL"
            task = "-" if c["task_id"] is None else c["task_id"]
            rows.append(f"  {task:>4}  {mark}  {c['name']:<{width}}  {c['points']:>2}/{c['max_points']}")
        tasks = ", ".join(f"TODO {t if t is not None else '-'} {s}/{m}" for t, (s, m) in per_task(entry).items())
        rows.append(f"  = {lesson_name}: {entry['score']}/{entry['max_score']} points ({tasks})")
    rows.append(f"TOTAL {report['score']}/{report['max_score']} points")
    return "\n".join(rows)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller prints the table
        return
    scorer = config.stash[_scorer_key]
    if not scorer.results:
        return
    report = scorer.report()
    target = config.getoption("--target")
    terminalreporter.section(f"score ({target})")
    terminalreporter.write_line(format_table(report))
    if path := config.getoption("--grade-json"):
        report["target"] = target
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        terminalreporter.write_line(f"report written to {path}")


def grade(lesson_name: str | None = None, target: str | None = None, nudge: bool = False) -> int:
    """Run the graded checks in a fresh process (so your latest edits count) and print the table.

    Call it from a notebook cell: ``grade("l01_request_cycle")``; ``nudge=True`` shows each failed
    check's nudge under its hint. The target is :func:`course.targets.target` unless given.
    Returns pytest's exit code.
    """
    target = targets.normalize(target) if target else targets.target()
    path = GRADED_DIR / f"test_{lesson_name}.py" if lesson_name else GRADED_DIR
    cmd = [sys.executable, "-m", "pytest", str(path), f"--target={target}", "-q", "--no-header",
           "-p", "no:cacheprovider", *(["--nudge"] if nudge else [])]
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
