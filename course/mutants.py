"""Plausible wrong answers ("mutants") that the graded checks must catch.

``tests/mutants/lNN_topic.py`` lists a lesson's mutants::

    from course.mutants import Mutant

    MUTANTS = [
        Mutant(task=2, check="test_task2_upload_is_streamed",
               why="reads the whole upload into memory before writing it",
               find="exact text, once in solutions/lNN_topic.py (or .js); what it changes lies in a ### SOLUTION part",
               replace="the learner's plausible wrong version"),
    ]

A mutant is a small change to one solution region, written as a learner would get the TODO
wrong. ``tests/course/test_mutants.py`` applies each one to a copy of ``solutions/`` and grades
ONLY the named check against that copy (one pytest process, ``--target=<copy>``): the mutant
must lose points there. Try one by hand::

    .venv/bin/python -m course.mutants l02_uploads          # grade every mutant of a lesson
    .venv/bin/python -m course.mutants l02_uploads -k whole # only those whose id contains "whole"
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from course import targets

ROOT = Path(__file__).resolve().parent.parent
MUTANTS_DIR = ROOT / "tests" / "mutants"
SOLUTIONS = ROOT / "solutions"
GRADED_DIR = ROOT / "tests" / "graded"
TIMEOUT = 180.0  # one check on a loaded 2-core machine; a check that hangs on a mutant is a defect


@dataclass(frozen=True)
class Mutant:
    task: int   # the TODO the learner got wrong
    check: str  # the graded check (test function name) that must lose points
    why: str    # what the learner got wrong, in words
    find: str   # exact text, once in the lesson's solution files (.py, and .js if the lesson has a page);
    #             it may reach into a marker line to be unique,
    #             but what the mutant changes must lie inside a ### SOLUTION part
    replace: str  # the learner's version of it


@dataclass(frozen=True)
class LessonMutant:
    lesson: str
    index: int
    mutant: Mutant

    @property
    def id(self) -> str:
        """``l02_uploads-task2-reads-the-whole-upload``: lesson, TODO and the first words of ``why``."""
        words = re.findall(r"[a-z0-9]+", self.mutant.why.lower())[:5]
        return f"{self.lesson}-task{self.mutant.task}-{'-'.join(words) or self.index}"


@dataclass(frozen=True)
class Graded:
    """How the named check did on a mutant: points earned out of the points of the checks that ran."""
    earned: int
    max_points: int
    failed: list[str]  # names of the check's items that failed (one, or several parameters)
    output: str
    skipped: tuple[str, ...] = ()  # items that skipped (e.g. no browser here): they prove nothing

    @property
    def loses_points(self) -> bool:
        return bool(self.failed)


def mutant_files() -> list[Path]:
    return sorted(MUTANTS_DIR.glob("l[0-9][0-9]_*.py"))


def load_file(path: Path) -> list[LessonMutant]:
    """The ``MUTANTS`` list of one ``tests/mutants/lNN_topic.py``."""
    spec = importlib.util.spec_from_file_location(f"course_mutants_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mutants = getattr(module, "MUTANTS", None)
    if not isinstance(mutants, list) or not all(isinstance(m, Mutant) for m in mutants):
        raise TypeError(f"{path.name}: MUTANTS must be a list of course.mutants.Mutant")
    return [LessonMutant(path.stem, index, m) for index, m in enumerate(mutants)]


def load_mutants(lesson: str | None = None) -> list[LessonMutant]:
    """Every mutant of every lesson (or of one), in file order."""
    paths = [MUTANTS_DIR / f"{lesson}.py"] if lesson else mutant_files()
    return [m for path in paths if path.exists() for m in load_file(path)]


def lesson_files(lesson: str) -> list[Path]:
    """The solution files of a lesson: ``solutions/<lesson>.py`` and, if it has one, its ``.js`` page."""
    return [path for path in (SOLUTIONS / f"{lesson}.py", SOLUTIONS / f"{lesson}.js") if path.exists()]


def locate(item: LessonMutant) -> list[Path]:
    """The lesson's solution files that hold ``find`` (once each time it occurs)."""
    found = []
    for path in lesson_files(item.lesson):
        found.extend([path] * path.read_text(encoding="utf-8").count(item.mutant.find))
    return found


def mutated_file(item: LessonMutant) -> tuple[Path, str]:
    """(the solution file ``find`` is in, its text with the mutant applied)."""
    path = locate(item)[0]
    return path, path.read_text(encoding="utf-8").replace(item.mutant.find, item.mutant.replace, 1)


def todo_numbers(lesson: str) -> set[int]:
    """The TODO numbers a lesson's solution files mention (``TODO 1``, ``TODO 1a`` -> 1)."""
    return {int(n) for path in lesson_files(lesson)
            for n in re.findall(r"\bTODO (\d+)", path.read_text(encoding="utf-8"))}


def changed_outside(source: str, mutated: str, name: str = "<solution>.py") -> list[int]:
    """Line numbers of ``source`` outside every ``### SOLUTION`` part that ``mutated`` changes.

    ``find`` may reach into a marker line to be unique (``...\\n        ### STUB``); what
    changes must lie in the solution part. An insertion counts as inside when a solution line
    (or the region's ``### SOLUTION`` marker) is right before it or a solution line right after it.
    ``name`` ending in ``.js`` reads ``// ### SOLUTION`` markers.
    """
    from course.stubs import solution_lines

    inside = {number for number, _ in solution_lines(source, name)}
    lines = source.splitlines(keepends=True)
    opener = re.compile(r"^\s*(//\s*)?### SOLUTION\s*$")
    openers = {n for n, line in enumerate(lines, start=1) if opener.match(line)}
    outside = []
    matcher = difflib.SequenceMatcher(None, lines, mutated.splitlines(keepends=True), autojunk=False)
    for op, i1, i2, _, _ in matcher.get_opcodes():
        if op in ("replace", "delete"):
            outside.extend(n for n in range(i1 + 1, i2 + 1) if n not in inside)
        elif op == "insert" and not (i1 in inside or i1 in openers or i1 + 1 in inside):
            outside.append(i1 + 1)
    return outside


def problems(item: LessonMutant) -> list[str]:
    """Why a mutant is not a valid one (empty when it is)."""
    from course.grading import graded_checks

    m, lesson = item.mutant, item.lesson
    if not (SOLUTIONS / f"{lesson}.py").exists():
        return [f"there is no solutions/{lesson}.py"]
    if not m.find:
        return ["`find` is empty"]
    found = []
    places = locate(item)
    names = " and ".join(f"solutions/{p.name}" for p in lesson_files(lesson))
    if len(places) != 1:
        found.append(f"`find` occurs {len(places)} times in {names}; it must occur exactly once")
    else:
        path, mutated = mutated_file(item)
        source = path.read_text(encoding="utf-8")
        if outside := changed_outside(source, mutated, path.name):
            found.append(f"the change is not inside a ### SOLUTION region (line {outside[0]} of solutions/{path.name})")
        if path.suffix == ".py":
            try:
                compile(mutated, str(path), "exec")
            except SyntaxError as exc:
                found.append(f"the mutated solution does not compile: {exc}")
    if m.replace == m.find:
        found.append("`replace` equals `find`: nothing changes")
    try:
        checks = graded_checks(lesson)
    except FileNotFoundError:
        return found + [f"there is no tests/graded/test_{lesson}.py"]
    spec = checks.get(m.check.split("[")[0])
    if spec is None:
        found.append(f"{m.check!r} is not a graded check of {lesson} (checks: {', '.join(checks)})")
    elif spec.task != m.task:
        found.append(f"{m.check} grades task {spec.task}, the mutant is for task {m.task}")
    return found


def write_package(dest: Path, item: LessonMutant | None = None) -> Path:
    """Copy ``solutions/`` to ``dest`` (a new directory), with ``item`` applied if given."""
    shutil.copytree(SOLUTIONS, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if item is not None:
        path, mutated = mutated_file(item)
        (dest / path.name).write_text(mutated, encoding="utf-8")
    return dest


def _clean_env() -> dict[str, str]:
    """Our environment without what would make the child think it is an xdist worker or a test."""
    drop = ("COURSE_TARGET", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_XDIST")}


def grade_check(lesson: str, check: str, package_dir: Path, workdir: Path, timeout: float = TIMEOUT) -> Graded:
    """Run only ``check`` of ``tests/graded/test_<lesson>.py`` against ``package_dir``, in a fresh pytest."""
    report = workdir / "grade.json"
    cmd = [sys.executable, "-m", "pytest", f"{GRADED_DIR / f'test_{lesson}.py'}::{check}",
           f"--target={package_dir}", f"--grade-json={report}",
           "-x", "-q", "--no-header", "-p", "no:cacheprovider", "-p", "no:xdist"]
    # A session of its own: on a timeout the whole group goes, servers the check started included.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_clean_env(), start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise RuntimeError(f"{check} did not finish within {timeout:.0f} s on this mutant: a check must "
                           f"fail in bounded time, not hang\n{output[-3000:]}") from None
    finally:
        targets.forget(package_dir)
    if not report.exists():
        raise RuntimeError(f"no grade report: pytest exited with {proc.returncode}\n{output[-3000:]}")
    data = json.loads(report.read_text(encoding="utf-8"))
    base = check.split("[")[0]
    ran = [c for c in data["lessons"].get(lesson, {}).get("checks", [])
           if c["name"] == check or c["name"].split("[")[0] == base]
    if not ran:
        raise RuntimeError(f"{check} did not run\n{output[-3000:]}")
    return Graded(sum(c["points"] for c in ran), sum(c["max_points"] for c in ran),
                  [c["name"] for c in ran if not c["passed"] and c.get("outcome") != "skipped"], output,
                  tuple(c["name"] for c in ran if c.get("outcome") == "skipped"))


def grade_mutant(item: LessonMutant, workdir: Path | None = None) -> Graded:
    """Grade ``item``'s check against a copy of ``solutions/`` with ``item`` applied."""
    with tempfile.TemporaryDirectory(prefix="course-mutant-") as tmp:
        work = Path(workdir or tmp)
        package_dir = write_package(work / f"mutant_{item.lesson}_{item.index}", item)
        return grade_check(item.lesson, item.mutant.check, package_dir, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grade mutants by hand: each must lose points on its check.")
    parser.add_argument("lesson", nargs="?", help="only this lesson (l02_uploads)")
    parser.add_argument("-k", default="", help="only mutants whose id contains this text")
    args = parser.parse_args(argv)
    bad = 0
    for item in load_mutants(args.lesson):
        if args.k not in item.id:
            continue
        if issues := problems(item):
            print(f"INVALID  {item.id}: " + "; ".join(issues))
            bad += 1
            continue
        try:
            graded = grade_mutant(item)
        except RuntimeError as exc:
            print(f"ERROR    {item.id}: {exc}")
            bad += 1
            continue
        verdict = "caught " if graded.loses_points else "SKIPPED" if graded.skipped else "MISSED "
        bad += not graded.loses_points
        print(f"{verdict}  {item.id}: {item.mutant.check} {graded.earned}/{graded.max_points}")
    return 1 if bad else 0


if __name__ == "__main__":
    # Run as course.mutants, not __main__: the mutants files build course.mutants.Mutant objects.
    from course.mutants import main as course_main

    sys.exit(course_main())
