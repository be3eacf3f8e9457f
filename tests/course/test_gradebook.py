"""The teacher's gradebook survives hostile submissions: each bad lesson costs only its own points.

Small lessons and a short time limit keep it fast: only the first two lessons are graded, and a
student without a lesson file (or with the untouched stub) is scored 0 without running anything.
"""

import csv
import os
import subprocess
import sys
import time

import pytest

from course import gradebook, progress, release
from course.grading import ROOT

FIRST, SECOND = progress.lesson_names()[:2]
HANG = "import time\nwhile True:\n    time.sleep(0.05)\n"
SUBMISSIONS = {
    # student: {lesson: source, or a callable(stub, solution) -> source}
    "ada": {FIRST: "solution"},
    "bob": {FIRST: "solution", SECOND: HANG},  # the hang costs SECOND only
    "cy": {FIRST: "import os\nos._exit(3)\n"},
    "dee": {FIRST: "import sys\nsys.exit(0)\n"},
    "eve": {FIRST: "import os\nfor _ in range(2000):\n    os.write(1, b'x' * 20000 + b'\\n')\n"
                   "    os.write(2, b'y' * 20000 + b'\\n')\nraise RuntimeError('flooded')\n"},
    "fay": {FIRST: "import pathlib, shutil\nfor p in pathlib.Path.cwd().iterdir():\n"
                   "    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()\n"},
    "gus": {FIRST: "def create_app(:\n"},  # does not import
    "hal": {FIRST: "stub"},  # untouched, and tests that would pass anything: never used
}


@pytest.fixture
def submissions(tmp_path):
    root = tmp_path / "submissions"
    stub_tree = release.release(tmp_path / "pristine", check_leaks=False)
    for student, files in SUBMISSIONS.items():
        lessons = root / student / "lessons"
        lessons.mkdir(parents=True)
        for lesson, source in files.items():
            if source == "solution":
                source = (ROOT / "solutions" / f"{lesson}.py").read_text(encoding="utf-8")
            elif source == "stub":
                source = (stub_tree / "lessons" / f"{lesson}.py").read_text(encoding="utf-8")
            (lessons / f"{lesson}.py").write_text(source, encoding="utf-8")
    # hal's own checks pass anything, and his course/grading.py gives full marks: neither is used.
    (root / "hal" / "tests" / "graded").mkdir(parents=True)
    (root / "hal" / "tests" / "graded" / f"test_{FIRST}.py").write_text("def test_free():\n    pass\n")
    (root / "hal" / "course").mkdir()
    (root / "hal" / "course" / "grading.py").write_text("raise SystemExit('never imported')\n")
    return root


def test_hostile_submissions_cost_only_their_own_lessons(submissions, tmp_path):
    out_csv = tmp_path / "out" / "gradebook.csv"
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_TARGET", "PYTEST_ADDOPTS")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "course.gradebook", str(submissions), "--csv", str(out_csv),
                           "--timeout", "12", "--lessons", f"{FIRST},{SECOND}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(proc.stdout) < 20_000, "a flood reached the teacher's terminal"
    with out_csv.open() as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    first_max, second_max = progress.max_points(FIRST), progress.max_points(SECOND)
    assert rows["(max)"][FIRST] == str(first_max) and rows["(max)"]["total"] == str(first_max + second_max)
    assert set(rows) == {"(max)", *SUBMISSIONS}
    for student in ("ada", "bob"):
        assert rows[student][FIRST] == str(first_max), rows[student]
    assert rows["bob"][SECOND] == "0" and "timed out" in rows["bob"]["notes"]
    for student in ("cy", "dee", "eve", "fay", "gus", "hal"):
        assert rows[student][FIRST] == "0", rows[student]
        assert rows[student]["total"] == "0"
    assert "untouched stub" in rows["hal"]["notes"]
    assert "exit 3" in rows["cy"]["notes"]
    todo_columns = [c for c in rows["ada"] if c.startswith(f"{FIRST} TODO ")]
    assert todo_columns and sum(int(rows["ada"][c]) for c in todo_columns) == first_max
    assert sum(int(rows["(max)"][c]) for c in todo_columns) == first_max
    # the printed table: one row per student, with the totals
    assert f"ada" in proc.stdout and f"{first_max}/{first_max + second_max}" in proc.stdout
    assert elapsed < 120, f"the gradebook took {elapsed:.0f} s"
    assert (ROOT / "tests" / "graded" / f"test_{FIRST}.py").exists(), "a submission deleted the course's files"


def test_the_output_of_a_flood_is_capped_and_a_hang_is_killed_with_its_children(tmp_path):
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    run = progress.run_capped([sys.executable, "-c", flood], tmp_path, timeout=1.5, cap=10_000)
    assert run.timed_out and len(run.output) == 10_000 and run.dropped > 0
    # a child that forks a grandchild: killing the group takes both
    pid_file = tmp_path / "grandchild.pid"
    parent = ("import subprocess, sys, time\n"
              f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(pid_file)!r}, 'w').write(str(p.pid))\ntime.sleep(60)\n")
    run = progress.run_capped([sys.executable, "-c", parent], tmp_path, timeout=1.5)
    assert run.timed_out
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild outlived the time limit")


def test_make_gradebook_passes_its_settings_on():
    recipe = subprocess.run(["make", "-n", "gradebook", "SUBMISSIONS=subs", "GRADEBOOK=out.csv", "LESSON_TIMEOUT=7"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "-m course.gradebook subs --csv out.csv --timeout 7" in recipe.stdout, recipe.stdout + recipe.stderr
    default = subprocess.run(["make", "-n", "gradebook", "SUBMISSIONS=subs"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30)
    assert "-m course.gradebook subs --csv gradebook.csv" in default.stdout
    assert gradebook.LESSON_TIMEOUT >= 120


def test_a_lesson_is_graded_on_top_of_the_students_own_earlier_lessons(tmp_path):
    """Lesson 4 imports lesson 3's Origin rule: the student's own lesson 3 is the one that runs."""
    lessons = tmp_path / "subs" / "ida" / "lessons"
    lessons.mkdir(parents=True)
    marker = tmp_path / "ida-l03-imported"
    own_l03 = (ROOT / "solutions" / "l03_websockets.py").read_text(encoding="utf-8")
    (lessons / "l03_websockets.py").write_text(f"{own_l03}\nimport pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    (lessons / "l04_broadcast.py").write_text((ROOT / "solutions" / "l04_broadcast.py").read_text(encoding="utf-8"))
    pristine = release.release(tmp_path / "pristine", check_leaks=False)
    grade = gradebook.grade_lesson(lessons.parent, "l04_broadcast", pristine, tmp_path, timeout=120)
    assert grade.score == grade.max_score == progress.max_points("l04_broadcast"), grade
    assert marker.exists(), "lesson 4 was graded on the stub of lesson 3, not on the student's own"
