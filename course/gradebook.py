"""The teacher's gradebook: grade every student's checkout into one CSV and one table.

    python -m course.gradebook SUBMISSIONS [--csv gradebook.csv] [--timeout 180] [--lessons l01_x,l02_y]
    make gradebook SUBMISSIONS=dir [GRADEBOOK=path] [LESSON_TIMEOUT=s]

``SUBMISSIONS`` holds one folder per student (a clone of their classroom repository, say). Only
each student's ``lessons/`` files are taken (``lNN_*.py`` and the page code ``lNN_*.js``; lessons
build on the student's own earlier ones): they are graded against the course's OWN pristine
tree (the student release: :mod:`course.release`, so ``course/``, ``tests/graded`` and
``tests/conftest.py`` as the teacher has them, no solutions), never against the student's tests
or plumbing.

Each lesson of each student is graded in a fresh process (``python -m pytest``) on a fresh temp
copy of that tree, in a process group of its own, with a time limit (``--timeout``, default
:data:`LESSON_TIMEOUT`) after which the whole group is killed, and with its output capped
(:func:`course.progress.run_capped`). A lesson file that hangs, exits the interpreter, floods
its output, deletes files around it or does not import costs that lesson's points only: the
student's other lessons and the other students are graded as usual. A missing lesson file, or
one still identical to the stub, scores 0 without being run (stubs score 0: the course's tests
prove it).

This limits accidents and mischief; it is not a sandbox. Grade untrusted code in a throwaway
machine or container (it runs with your user's rights).

The CSV has one row per student (and a first row ``(max)``): the score of each lesson, the total,
the score of each lesson's TODOs (``l02_uploads TODO 3``), and notes (time-outs, crashes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from course import grading, progress, release

LESSON_TIMEOUT = 180.0  # seconds for one lesson of one student: the stub runs take under 30
OUTPUT_CAP = 64_000  # bytes of a lesson run's output kept for the notes
MAX_FILE = 2_000_000  # a lesson file larger than this is not graded


@dataclass
class LessonGrade:
    score: int
    max_score: int
    tasks: dict = field(default_factory=dict)  # {task_id: score}
    note: str = ""


def task_ids(lesson: str) -> list:
    return sorted({spec.task for spec in grading.graded_checks(lesson).values() if spec.task is not None})


def _pristine(dest: Path) -> Path:
    """The course's own tree for grading: the student release (no solutions, untouched stubs)."""
    return release.release(dest, check_leaks=False)  # never handed out: only the student's file is added


def _student_lesson_files(student_dir: Path) -> list[Path]:
    """The student's lesson files (``lNN_*.py`` and page code ``lNN_*.js``): regular files of sane size."""
    folder = student_dir / "lessons"
    return [path for pattern in ("l[0-9][0-9]_*.py", "l[0-9][0-9]_*.js") for path in sorted(folder.glob(pattern))
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_FILE]


def grade_lesson(student_dir: Path, lesson: str, pristine: Path, work_root: Path, timeout: float,
                 python: str = sys.executable) -> LessonGrade:
    most = progress.max_points(lesson)
    source = student_dir / "lessons" / f"{lesson}.py"
    if source.is_symlink():
        return LessonGrade(0, most, note="lesson file is a symlink: not graded")
    if not source.is_file():
        return LessonGrade(0, most, note="no lesson file")
    if source.stat().st_size > MAX_FILE:
        return LessonGrade(0, most, note="lesson file too large: not graded")
    code = source.read_bytes()
    stub = pristine / "lessons" / f"{lesson}.py"
    page = student_dir / "lessons" / f"{lesson}.js"
    page_stub = pristine / "lessons" / f"{lesson}.js"
    page_untouched = not page_stub.exists() or not page.is_file() or _body(page.read_bytes()) == _body(page_stub.read_bytes())
    if _body(code) == _body(stub.read_bytes()) and page_untouched:  # the header line differs between releases
        return LessonGrade(0, most, note="untouched stub")
    work = Path(tempfile.mkdtemp(prefix=f"{lesson}-", dir=work_root))
    try:
        tree = work / "course"
        shutil.copytree(pristine, tree, ignore=shutil.ignore_patterns(".github", "notebooks", "__pycache__"))
        # Lessons build on each other (lesson 7 imports 2, 5 and 6; lesson 4 imports 3), and lesson 7
        # has page code: the student's other lesson files come along, so a lesson is graded on top of
        # the student's own earlier work. Only what the graded lesson imports runs.
        for own in _student_lesson_files(student_dir):
            (tree / "lessons" / own.name).write_bytes(own.read_bytes())
        (tree / "lessons" / f"{lesson}.py").write_bytes(code)
        report_path = work / f"report-{os.urandom(6).hex()}.json"
        env = {k: v for k, v in os.environ.items() if k not in ("COURSE_TARGET", "PYTHONPATH", "PYTEST_ADDOPTS")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        cmd = progress.grading_command([lesson], report_path, target="lessons", python=python)
        run = progress.run_capped(cmd, tree, timeout, cap=OUTPUT_CAP, env=env)
        report = None
        if report_path.exists():
            try:
                report = json.loads(report_path.read_text(encoding="utf-8"))
            except ValueError:
                report = None
        entry = (report or {}).get("lessons", {}).get(lesson)
        if run.timed_out:
            note = f"timed out after {timeout:g} s"
        elif entry is None:
            note = f"grading ended without a report (exit {run.returncode})"
        else:
            note = ""
        if run.dropped:
            note = "; ".join(filter(None, [note, f"output capped ({run.dropped} bytes dropped)"]))
        if entry is None or run.timed_out:
            return LessonGrade(0, most, note=note)
        tasks = {task: score for task, (score, _) in grading.per_task(entry).items() if task is not None}
        return LessonGrade(entry["score"], most, tasks, note)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _body(code: bytes) -> bytes:
    return code.replace(b"\r\n", b"\n").split(b"\n", 1)[-1]


def students(submissions: Path) -> list[Path]:
    return sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))


def gradebook(submissions: Path, lessons: list[str] | None = None, timeout: float = LESSON_TIMEOUT,
              jobs: int = 1, echo=print) -> tuple[list[str], dict[str, dict[str, LessonGrade]]]:
    lessons = lessons or progress.lesson_names()
    grades: dict[str, dict[str, LessonGrade]] = {}
    with tempfile.TemporaryDirectory(prefix="gradebook-") as tmp:
        pristine = _pristine(Path(tmp) / "pristine")
        work_root = Path(tmp) / "work"
        work_root.mkdir()
        pairs = [(student, lesson) for student in students(submissions) for lesson in lessons]

        def one(pair):
            student, lesson = pair
            result = grade_lesson(student, lesson, pristine, work_root, timeout)
            echo(f"  {student.name:<20} {lesson:<24} {result.score:>3}/{result.max_score:<3} {result.note}")
            return pair, result

        echo(f"Grading {len(pairs) // max(len(lessons), 1)} submissions x {len(lessons)} lessons "
             f"(time limit {timeout:g} s per lesson)")
        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            for (student, lesson), result in pool.map(one, pairs):
                grades.setdefault(student.name, {})[lesson] = result
    return lessons, grades


def write_csv(path: Path, lessons: list[str], grades: dict[str, dict[str, LessonGrade]]) -> None:
    tasks = {lesson: task_ids(lesson) for lesson in lessons}
    header = ["student", *lessons, "total",
              *[f"{lesson} TODO {t}" for lesson in lessons for t in tasks[lesson]], "notes"]
    task_max = {lesson: {t: s[1] for t, s in _task_maxima(lesson).items()} for lesson in lessons}
    most = {lesson: progress.max_points(lesson) for lesson in lessons}
    rows = [["(max)", *[most[lesson] for lesson in lessons], sum(most.values()),
             *[task_max[lesson].get(t, 0) for lesson in lessons for t in tasks[lesson]], ""]]
    for student, by_lesson in grades.items():
        notes = "; ".join(f"{lesson}: {g.note}" for lesson, g in by_lesson.items() if g.note)
        rows.append([student, *[by_lesson[lesson].score for lesson in lessons],
                     sum(by_lesson[lesson].score for lesson in lessons),
                     *[by_lesson[lesson].tasks.get(t, 0) for lesson in lessons for t in tasks[lesson]], notes])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)


def _task_maxima(lesson: str) -> dict:
    maxima: dict = {}
    for spec in grading.graded_checks(lesson).values():
        if spec.task is not None:
            maxima.setdefault(spec.task, [0, 0])[1] += spec.points
    return maxima


def table(lessons: list[str], grades: dict[str, dict[str, LessonGrade]]) -> str:
    ids = [lesson.split("_", 1)[0] for lesson in lessons]
    most = [progress.max_points(lesson) for lesson in lessons]
    width = max([len(s) for s in grades] + [7])
    head = f"{'student':<{width}}  " + "  ".join(f"{i:>7}" for i in ids) + f"  {'total':>7}"
    lines = [head, "-" * len(head)]
    for student, by_lesson in grades.items():
        cells = [f"{by_lesson[lesson].score:>3}/{m:<3}" for lesson, m in zip(lessons, most)]
        total = sum(by_lesson[lesson].score for lesson in lessons)
        lines.append(f"{student:<{width}}  " + "  ".join(cells) + f"  {total:>3}/{sum(most):<3}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.gradebook", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="a folder with one checkout per student")
    parser.add_argument("--csv", type=Path, default=Path("gradebook.csv"), help="where to write the CSV")
    parser.add_argument("--timeout", type=float, default=LESSON_TIMEOUT, help="seconds per lesson per student")
    parser.add_argument("--lessons", default="", help="comma-separated lessons to grade (default: all)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="lessons graded at once (default 1: timing checks are fairest on a quiet machine)")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        print(f"no folder {args.submissions}", file=sys.stderr)
        return 2
    known = progress.lesson_names()
    lessons = [name.strip() for name in args.lessons.split(",") if name.strip()] or known
    unknown = [name for name in lessons if name not in known]
    if unknown:
        print(f"unknown lessons: {', '.join(unknown)} (the course has {', '.join(known)})", file=sys.stderr)
        return 2
    lessons, grades = gradebook(args.submissions, lessons, args.timeout, args.jobs)
    if not grades:
        print(f"no student folders in {args.submissions}", file=sys.stderr)
        return 2
    write_csv(args.csv, lessons, grades)
    print()
    print(table(lessons, grades))
    print(f"\nGradebook written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
