"""Progress over the whole course and the next thing to do, shared by ``make check`` and ``make watch``.

Every grading run (``make check``, ``make watch``, ``course.classroom grade``) merges its JSON
report into ``build/progress.json``: per lesson, the latest result of each check. From that
state this module prints

* progress over all lessons: points, and TODOs done (a TODO is done when all its checks pass);
* the next thing to do: the first lesson (in course order) not yet complete, its lowest failing
  TODO, and the hint of that TODO's first failing check. Its ``nudge`` (a more concrete hint)
  is shown only on request (``make check NUDGE=1``, or ``h`` + Enter in ``make watch``).

    python -m course.progress [--nudge] [pytest args]   # what `make check` runs

It runs the graded checks (``pytest tests/graded``, output straight to the terminal), then
prints progress and the next step. It exits 0 whenever the grading ran, whatever the score
(a failing check is progress, not an error), and pytest's code if the grading itself broke.

:func:`run_capped` runs one grading command in a process group of its own, with a time limit
and a cap on the output it keeps: the watcher and the teacher's gradebook use it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from course import grading

ROOT = grading.ROOT
STATE = ROOT / "build" / "progress.json"


# ---------------------------------------------------------------- state

def lesson_names() -> list[str]:
    """The course's lessons in order, one per graded file."""
    return [grading.lesson_of(path) for path in grading.graded_files()]


def max_points(lesson: str) -> int:
    """A lesson's maximum score, read from its graded checks without running them."""
    try:
        return sum(spec.points for spec in grading.graded_checks(lesson).values())
    except Exception:  # a broken graded file must not break the progress display
        return 0


def load_state(path: Path = STATE) -> dict:
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        return state if isinstance(state.get("lessons"), dict) else {"lessons": {}}
    except (OSError, ValueError, AttributeError):
        return {"lessons": {}}


def merge(state: dict, report: dict) -> dict:
    """Put each lesson of ``report`` (the grading plugin's JSON) into ``state``, with the time."""
    now = time.time()
    for lesson, entry in report.get("lessons", {}).items():
        state["lessons"][lesson] = {**entry, "graded_at": now}
    return state


def save_state(state: dict, path: Path = STATE) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def record(report_path: Path, state_path: Path = STATE) -> dict:
    """Merge the JSON report at ``report_path`` into the saved state; return the new state."""
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    state = merge(load_state(state_path), report)
    save_state(state, state_path)
    return state


# ---------------------------------------------------------------- what to show

def tasks_of(entry: dict) -> dict:
    """{TODO: (score, max_score)} of one lesson entry; checks without a task number count one by one."""
    tasks = {}
    for check in entry.get("checks", []):
        key = check.get("task_id") if check.get("task_id") is not None else ("check", check["name"])
        score, most = tasks.get(key, (0, 0))
        tasks[key] = (score + check["points"], most + check["max_points"])
    return tasks


@dataclass(frozen=True)
class NextStep:
    lesson: str
    task: int | None
    check: str
    hint: str
    nudge: str | None

    def describe(self, nudge: bool = False) -> str:
        todo = f"TODO {self.task}" if self.task is not None else "a check"
        lines = [f"Next: lessons/{self.lesson}.py, {todo}", f"  Hint: {self.hint}"]
        if self.nudge and nudge:
            lines.append(f"  Nudge: {self.nudge}")
        elif self.nudge:
            lines.append("  (a more concrete nudge on request: `make check NUDGE=1`, or `h` + Enter in `make watch`)")
        return "\n".join(lines)


def next_in_lesson(lesson: str, entry: dict) -> NextStep | None:
    """The lowest-numbered TODO of ``lesson`` with a failing check, and that check's hint."""
    failing = [c for c in entry.get("checks", []) if not c.get("passed")]
    if not failing:
        return None
    first = min(failing, key=lambda c: (c.get("task_id") is None, c.get("task_id") or 0))
    return NextStep(lesson, first.get("task_id"), first["name"], first.get("hint", ""), first.get("nudge"))


def next_step(state: dict, lessons: list[str] | None = None) -> NextStep | str | None:
    """What to do next: a :class:`NextStep`, a sentence (a lesson never graded), or None (all done)."""
    for lesson in lessons if lessons is not None else lesson_names():
        entry = state["lessons"].get(lesson)
        if entry is None:
            return f"Next: grade lessons/{lesson}.py (`make check`): it has not been graded yet."
        step = next_in_lesson(lesson, entry)
        if step is not None:
            return step
    return None


def progress_table(state: dict, lessons: list[str] | None = None) -> str:
    """Points and TODOs done per lesson and in total, over the whole course."""
    lessons = lessons if lessons is not None else lesson_names()
    width = max([len(name) for name in lessons] + [6])
    rows, score, top, done, todos = [], 0, 0, 0, 0
    for lesson in lessons:
        entry = state["lessons"].get(lesson)
        if entry is None:
            most = max_points(lesson)
            top += most
            rows.append(f"  {lesson:<{width}}  {'?':>3}/{most:<3}  not graded yet")
            continue
        tasks = tasks_of(entry)
        finished = sum(1 for s, m in tasks.values() if s == m)
        score, top = score + entry["score"], top + entry["max_score"]
        done, todos = done + finished, todos + len(tasks)
        status = "complete" if entry["score"] == entry["max_score"] else f"{finished} of {len(tasks)} TODOs done"
        rows.append(f"  {lesson:<{width}}  {entry['score']:>3}/{entry['max_score']:<3}  {status}")
    head = f"Progress over the course: {score}/{top} points, {done} of {todos} graded TODOs done"
    return "\n".join([head, *rows])


def summary(state: dict, lessons: list[str] | None = None, nudge: bool = False) -> str:
    step = next_step(state, lessons)
    if step is None:
        last = "Every lesson is complete. Well done!"
    elif isinstance(step, str):
        last = step
    else:
        last = step.describe(nudge)
    return f"{progress_table(state, lessons)}\n\n{last}"


# ---------------------------------------------------------------- running a grading

def grading_command(lessons: list[str] | None, report: Path, target: str | None = None,
                    nudge: bool = False, python: str | None = None) -> list[str]:
    """``python -m pytest`` over the graded files of ``lessons`` (all if None), writing ``report``."""
    paths = [f"tests/graded/test_{name}.py" for name in lessons] if lessons else ["tests/graded"]
    return [python or sys.executable, "-m", "pytest", *paths, "-q", "--no-header", "-p", "no:cacheprovider",
            f"--grade-json={report}", *([f"--target={target}"] if target else []), *(["--nudge"] if nudge else [])]


@dataclass
class CappedRun:
    returncode: int | None  # None: killed on timeout
    output: str
    timed_out: bool
    dropped: int  # bytes of output not kept
    seconds: float


def run_capped(cmd: list[str], cwd: Path, timeout: float, cap: int = 64_000,
               env: dict | None = None) -> CappedRun:
    """Run ``cmd`` in a new process group; keep at most ``cap`` bytes of its output (stdout and
    stderr together, the rest read and dropped, so a flood never blocks it); after ``timeout``
    seconds kill the whole group. Ctrl-C (KeyboardInterrupt) kills the group too, then re-raises."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    kept, dropped = bytearray(), 0

    def drain() -> None:
        nonlocal dropped
        while chunk := proc.stdout.read1(65536):
            room = cap - len(kept)
            kept.extend(chunk[:max(room, 0)])
            dropped += max(len(chunk) - max(room, 0), 0)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        _kill_group(proc)  # whatever it left behind (servers, children) goes with it
    reader.join(5)
    proc.stdout.close()
    return CappedRun(None if timed_out else proc.returncode, kept.decode("utf-8", "replace"), timed_out, dropped,
                     time.monotonic() - started)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


# ---------------------------------------------------------------- make check

def check(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.progress",
                                     description="Grade the lessons, then show progress and the next thing to do.")
    parser.add_argument("--nudge", action="store_true", help="also show the next step's nudge (more concrete hint)")
    args, pytest_args = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "grade.json"
        cmd = grading_command(None, report, nudge=args.nudge)
        cmd.remove("-q")
        proc = subprocess.run([*cmd, *pytest_args], cwd=ROOT)
        if not report.exists():
            print("\nThe grading did not finish: see the messages above.")
            return proc.returncode or 1
        state = record(report)
    print()
    print(summary(state, nudge=args.nudge))
    # pytest: 0 all passed, 1 some checks failed (progress, not an error); anything else broke.
    return 0 if proc.returncode in (0, 1) else proc.returncode


if __name__ == "__main__":
    sys.exit(check())
