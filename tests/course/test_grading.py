"""The graded checks prove themselves, and the grading plugin does what it says.

* Untouched stubs score zero, in a separate run per lesson. (Full marks against solutions/ is the graded
  part of this same `make test` run.)
* The plugin, on a small self-made lesson in a temp dir: task numbers reach the table and the
  JSON report, the nudge shows only with --nudge, a check that errors or skips earns nothing,
  a directory target imports as a package (relative imports work), and the report is the same
  under pytest-xdist as without it.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from course import targets
from course.grading import GRADED_DIR, ROOT, format_table, graded_checks, graded_files, lesson_of


@pytest.mark.parametrize("lesson", [lesson_of(p) for p in graded_files()])
def test_untouched_stubs_score_zero_points(lesson, tmp_path):
    """One process per lesson, so pytest-xdist spreads them (most of the time is spent waiting)."""
    report_path = tmp_path / "stubs.json"
    env = {k: v for k, v in os.environ.items() if k != targets.ENV and not k.startswith("PYTEST_XDIST")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(GRADED_DIR / f"test_{lesson}.py"), "--target=lessons",
         f"--grade-json={report_path}", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )
    assert report_path.exists(), proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    assert report["target"] == "lessons"
    assert lesson in report["lessons"], f"no check of {lesson} ran\n" + proc.stdout[-3000:]
    entry = report["lessons"][lesson]
    earned = [c["name"] for c in entry["checks"] if c["points"]]
    assert report["score"] == 0, f"checks that pass on an untouched stub grade nothing: {earned}"
    assert entry["max_score"] > 0, f"test_{lesson}.py has no checks"
    for c in entry["checks"]:
        assert c["hint"].strip(), f"{c['name']} has no hint"
        assert "task_id" in c


# A self-made lesson package and its graded checks: the plugin is tested on these, not on the course's.
DEMO_LESSON = '''
from .l91_helper import double  # lessons may import each other relatively


def answer():
    return double(21)


def wrong():
    return 41
'''

DEMO_CHECKS = '''
import pytest

from course.grading import check


@pytest.fixture
def broken():
    raise RuntimeError("a fixture that fails")


@check(task=1, points=2, hint="the answer is a number")
def test_answer(lesson):
    assert lesson.answer() == 42


@check(task=2, points=3, hint="count again", nudge="off by one, upwards")
def test_wrong(lesson):
    assert lesson.wrong() == 42


@check(task=1, points=1, hint="setup fails, so this earns nothing")
def test_setup_error(lesson, broken):
    pass


@check(task=2, points=1, hint="a skipped check earns nothing")
def test_skipped(lesson):
    pytest.skip("not today")


@check(points=1, hint="a check written before task= existed still counts")
def test_untasked(lesson):
    assert lesson.answer()


@check(task=1, points=1, hint="each parameter is a check of its own")
@pytest.mark.parametrize("n", [1, 2])
def test_param(lesson, n):
    assert n == 1


def test_not_a_check(lesson):
    assert True
'''


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    package = root / "copy_of_lessons"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "l90_demo.py").write_text(DEMO_LESSON)
    (package / "l91_helper.py").write_text("def double(x):\n    return 2 * x\n")
    (root / "graded").mkdir()
    (root / "graded" / "test_l90_demo.py").write_text(DEMO_CHECKS)
    (root / "pytest.ini").write_text("[pytest]\n")  # not the course's configuration
    return root


def run_demo(demo: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    report_path = demo / f"report-{len(args)}-{abs(hash(args))}.json"
    env = {k: v for k, v in os.environ.items() if k != targets.ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "course.grading", "-p", "no:cacheprovider", "-c", str(demo / "pytest.ini"),
         "--rootdir", str(demo), str(demo / "graded"), f"--target={demo / 'copy_of_lessons'}",
         f"--grade-json={report_path}", *args],
        cwd=demo, capture_output=True, text=True, timeout=120, env=env,
    )
    assert report_path.exists(), proc.stdout + proc.stderr
    return proc, json.loads(report_path.read_text())


EXPECTED = {  # name: (task_id, passed, points, max_points, outcome)
    "test_answer": (1, True, 2, 2, "passed"),
    "test_param[1]": (1, True, 1, 1, "passed"),
    "test_param[2]": (1, False, 0, 1, "failed"),
    "test_setup_error": (1, False, 0, 1, "error"),
    "test_wrong": (2, False, 0, 3, "failed"),
    "test_skipped": (2, False, 0, 1, "skipped"),
    "test_untasked": (None, True, 1, 1, "passed"),
}


def checks_of(report: dict) -> dict:
    return {c["name"]: (c["task_id"], c["passed"], c["points"], c["max_points"], c["outcome"])
            for c in report["lessons"]["l90_demo"]["checks"]}


def test_task_numbers_reach_the_json_report_and_the_table(demo):
    proc, report = run_demo(demo, "-q")
    assert checks_of(report) == EXPECTED
    names = [c["name"] for c in report["lessons"]["l90_demo"]["checks"]]
    assert names.index("test_answer") < names.index("test_wrong") < names.index("test_untasked"), \
        "rows are grouped by task, in file order within a task, untasked checks last"
    assert (report["score"], report["max_score"]) == (4, 10)
    assert report["target"] == str((demo / "copy_of_lessons").resolve())
    wrong = next(c for c in report["lessons"]["l90_demo"]["checks"] if c["name"] == "test_wrong")
    assert wrong["hint"] == "count again" and wrong["nudge"] == "off by one, upwards"
    out = proc.stdout
    assert format_table(report) in out
    assert "     2  FAIL  test_wrong" in out
    assert "= l90_demo: 4/10 points (TODO 1 3/5, TODO 2 0/4, TODO - 1/1)" in out
    assert "TOTAL 4/10 points" in out


def test_a_nudge_shows_only_on_request(demo):
    proc, _ = run_demo(demo, "-q")
    assert "Hint: count again" in proc.stdout
    assert "off by one" not in proc.stdout
    assert "pytest --nudge" in proc.stdout
    proc, _ = run_demo(demo, "-q", "--nudge")
    assert "Hint: count again\nNudge: off by one, upwards" in proc.stdout


def test_the_report_is_the_same_under_xdist(demo):
    serial_proc, serial = run_demo(demo, "-q")
    proc, parallel = run_demo(demo, "-q", "-n", "2")
    assert "bringing up nodes" in proc.stdout, proc.stdout  # it did run under xdist
    assert parallel == serial
    assert format_table(parallel) in proc.stdout
    assert proc.stdout.count("TOTAL 4/10 points") == 1, "only the controller prints the table"


def test_graded_checks_are_read_without_running_them():
    for path in GRADED_DIR.glob("test_l[0-9][0-9]_*.py"):
        checks = graded_checks(path.stem.removeprefix("test_"))
        assert checks, f"{path.name} has no checks"
        for spec in checks.values():
            assert spec.points > 0 and isinstance(spec.hint, str)


def test_targets_decide_in_one_place(monkeypatch, tmp_path):
    monkeypatch.delenv(targets.ENV, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # package() extends both
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert targets.target() == "lessons"
    monkeypatch.setenv(targets.ENV, "solutions")
    assert targets.target() == "solutions"
    import course

    assert course.target() == "solutions"
    with pytest.raises(targets.TargetError):
        targets.normalize("nowhere")
    with pytest.raises(targets.TargetError):
        targets.normalize(str(tmp_path))  # a directory without lesson files
    copy = tmp_path / "some copy"  # not an identifier: the package gets a name of its own
    copy.mkdir()
    (copy / "l99_x.py").write_text("from .l98_y import VALUE\n")
    (copy / "l98_y.py").write_text("VALUE = 'from the copy'\n")
    monkeypatch.setenv(targets.ENV, str(copy))
    assert targets.target() == str(copy.resolve())
    assert course.load_lesson("l99_x").VALUE == "from the copy"
    assert targets.package().startswith("course_target_")
    # a child process finds the same package through $PYTHONPATH
    code = f"import importlib; print(importlib.import_module('{targets.package()}.l99_x').VALUE)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "from the copy"
    link = targets._LINKS / targets.package()
    assert link.is_symlink()
    targets.forget(copy)
    assert not link.is_symlink()


def test_grade_from_a_notebook_passes_the_target_and_the_nudge(monkeypatch, capsys):
    from course import grading

    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "table\n", "")

    monkeypatch.setattr(grading.subprocess, "run", fake_run)
    monkeypatch.setenv(targets.ENV, "solutions")
    import course

    course.grade("l01_request_cycle", nudge=True)
    course.grade("l01_request_cycle")
    assert "--target=solutions" in seen[0] and "--nudge" in seen[0]
    assert "--nudge" not in seen[1]
    assert seen[0][3].endswith("test_l01_request_cycle.py")
    assert "table" in capsys.readouterr().out


@pytest.mark.parametrize("lesson", [lesson_of(p) for p in graded_files()])
def test_every_todo_is_graded_and_every_task_is_a_todo(lesson):
    from course.mutants import todo_numbers

    todos = todo_numbers(lesson)
    tasks = {spec.task for spec in graded_checks(lesson).values() if spec.task is not None}
    assert todos - tasks == set(), f"{lesson}: TODOs no check grades (no @check(task=N)): {sorted(todos - tasks)}"
    assert tasks - todos == set(), f"{lesson}: checks name tasks the solution has no TODO for: {sorted(tasks - todos)}"
