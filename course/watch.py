"""Watch mode: re-grade a lesson the moment its file is saved (``make watch``).

    python -m course.watch [--target lessons|solutions|DIR] [--no-initial]

It watches the lesson files (``lessons/lNN_*.py``, and the capstone's ``lessons/lNN_*.js``, with watchfiles). When one is saved, it grades
that lesson in a fresh process (so the new code counts, and a crash or a hang in it cannot take
the watcher down: :func:`course.progress.run_capped`, time limit :data:`TIMEOUT`), then shows

* that lesson's score table (per check, with its TODO number),
* the next failing TODO of that lesson and its hint,
* progress over all lessons (``build/progress.json``, shared with ``make check``) and the
  course's next thing to do.

At start it grades the lessons that were never graded or changed since (``--no-initial`` skips
that). Type ``h`` and Enter for the current TODO's nudge, a more concrete hint (shown only on
request); ``q`` and Enter, or Ctrl-C, stops it (exit status 0).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import watchfiles

from course import grading, progress, targets

TIMEOUT = 300.0  # seconds for one lesson's grading
ARM_MS = 200  # watchfiles' quiet timeout: the first one says the watcher is armed (see Watcher.run)
LESSON_FILE = re.compile(r"^l\d\d_\w+\.(py|js)$")  # the capstone's page code (lNN_*.js) is graded with its lesson
PROMPT = "Watching {where}: save a lesson file to re-grade it.  h + Enter: a nudge;  q + Enter or Ctrl-C: stop."


class Watcher:
    def __init__(self, target: str | None = None, out=sys.stdout) -> None:
        self.target = targets.normalize(target) if target else targets.target()
        self.folder = (progress.ROOT / self.target) if self.target in targets.PACKAGES else Path(self.target)
        self.lessons = progress.lesson_names()
        self.out = out
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.current: progress.NextStep | str | None = None

    # -------------------------------------------------------- output
    def say(self, text: str = "") -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def prompt(self) -> None:
        where = self.folder.relative_to(progress.ROOT) if self.folder.is_relative_to(progress.ROOT) else self.folder
        self.say(PROMPT.format(where=f"{where}/"))

    # -------------------------------------------------------- grading
    def grade(self, lessons: list[str]) -> dict | None:
        """Grade ``lessons`` in one fresh process; merge the result into the progress state."""
        with tempfile.TemporaryDirectory() as tmp:
            report_path = Path(tmp) / "grade.json"
            cmd = progress.grading_command(lessons, report_path, target=self.target)
            started = time.monotonic()
            run = progress.run_capped(cmd, progress.ROOT, TIMEOUT)
            if not report_path.exists():
                tail = "\n".join(run.output.rstrip().splitlines()[-30:])
                why = f"timed out after {TIMEOUT:g} s" if run.timed_out else f"ended with exit status {run.returncode}"
                self.say(f"The grading of {', '.join(lessons)} {why} without a score:\n{tail}")
                return None
            report = json.loads(report_path.read_text(encoding="utf-8"))
            progress.record(report_path)
            report["seconds"] = time.monotonic() - started
            report["import_error"] = next((line.strip() for line in run.output.splitlines()
                                           if "does not import:" in line), "")
            return report

    def show(self, lesson: str, report: dict | None) -> None:
        state = progress.load_state()
        lines = []
        if report is not None and lesson in report.get("lessons", {}):
            entry = report["lessons"][lesson]
            one = {"score": entry["score"], "max_score": entry["max_score"], "lessons": {lesson: entry}}
            lines += [f"== {lesson}: graded at {time.strftime('%H:%M:%S')} in {report['seconds']:.1f} s ==",
                      grading.format_table(one), ""]
            if report.get("import_error"):
                lines += [f"Your file {report['import_error'].removeprefix('What happened: ')}", ""]
            step = progress.next_in_lesson(lesson, entry)
            if step is None:
                lines.append(f"{lesson} is complete: every check passes.")
            else:
                todo = f"TODO {step.task}" if step.task is not None else "a check"
                lines += [f"Next in this lesson: {todo} ({step.check})", f"  Hint: {step.hint}"]
                if step.nudge:
                    lines.append("  (h + Enter: a more concrete nudge)")
            lines.append("")
        else:
            step = None
        lines.append(progress.progress_table(state, self.lessons))
        overall = progress.next_step(state, self.lessons)
        self.current = step or overall
        if overall is None:
            lines.append("\nEvery lesson is complete. Well done!")
        elif isinstance(overall, str):
            lines.append("\n" + overall)
        elif step is None or (overall.lesson, overall.task) != (step.lesson, step.task):
            lines.append(f"\nNext in the course: lessons/{overall.lesson}.py, TODO {overall.task}")
        self.say("\n".join(lines))

    def nudge(self) -> None:
        step = self.current
        if not isinstance(step, progress.NextStep):
            self.say("No failing TODO to nudge you on right now.")
        elif step.nudge:
            self.say(f"Nudge for {step.lesson}, TODO {step.task} ({step.check}):\n  {step.nudge}")
        else:
            self.say(f"{step.check} has no nudge beyond its hint:\n  {step.hint}")

    # -------------------------------------------------------- loops
    def read_keys(self, stream) -> None:
        for line in stream:
            key = line.strip().lower()
            if key in ("h", "hint", "n", "nudge"):
                self.nudge()
            elif key in ("q", "quit", "exit"):
                self.stop.set()
                return
            elif key:
                self.say("Keys: h + Enter: a nudge;  q + Enter: stop.")

    def changed_lessons(self, changes) -> list[str]:
        names = []
        for _, path in sorted(changes, key=lambda c: c[1]):
            name = Path(path).name
            if LESSON_FILE.match(name) and Path(path).stem in self.lessons and Path(path).stem not in names:
                names.append(Path(path).stem)
        return names

    def mtimes(self) -> dict[str, int]:
        """Each lesson file's modification time (ns), to see a save the watcher was not armed for."""
        out = {}
        for lesson in self.lessons:
            for suffix in (".py", ".js"):
                try:
                    out[lesson + suffix] = (self.folder / f"{lesson}{suffix}").stat().st_mtime_ns
                except OSError:
                    pass
        return out

    def stale(self) -> list[str]:
        state = progress.load_state()["lessons"]
        out = []
        for lesson in self.lessons:
            path = self.folder / f"{lesson}.py"
            graded = state.get(lesson, {}).get("graded_at", 0)
            if lesson not in state or (path.exists() and path.stat().st_mtime > graded):
                out.append(lesson)
        return out

    def run(self, initial: bool = True, keys=sys.stdin) -> int:
        if keys is not None:
            threading.Thread(target=self.read_keys, args=(keys,), daemon=True).start()
        try:
            saved = self.mtimes()  # before any grading: a save from now on is graded (again) once armed
            todo = self.stale() if initial else []
            if todo:
                self.say(f"Grading {', '.join(todo)} first ...")
                report = self.grade(todo)
                self.show(todo[-1], report)
            else:
                self.show("", None)
            armed = False
            # watchfiles.watch() is a generator: its watcher (RustNotify) is only created at the first
            # next(), so a file saved before that is never reported. yield_on_timeout gives control back
            # once the watcher is armed (an empty set after ARM_MS of quiet): only then say "Watching",
            # and grade what was saved since the watcher started (during the first grading, say).
            for changes in watchfiles.watch(self.folder, stop_event=self.stop, debounce=200, step=50,
                                            rust_timeout=ARM_MS, yield_on_timeout=True,
                                            raise_interrupt=False, recursive=False):
                lessons = self.changed_lessons(changes)
                if not armed:
                    armed = True
                    now = self.mtimes()
                    lessons += [name for name in self.lessons if name not in lessons and any(
                        now.get(name + suffix) != saved.get(name + suffix) for suffix in (".py", ".js"))]
                    if not lessons:
                        self.prompt()
                for lesson in lessons:
                    self.say(f"\n{lesson}.py changed: grading ...")
                    self.show(lesson, self.grade([lesson]))
                    self.prompt()
                if self.stop.is_set():
                    break
        except KeyboardInterrupt:
            pass
        self.say("\nStopped watching.")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=None, help="lessons (default), solutions, or a folder of lesson files")
    parser.add_argument("--no-initial", action="store_true", help="do not grade stale lessons at start")
    args = parser.parse_args(argv)
    return Watcher(args.target).run(initial=not args.no_initial)


if __name__ == "__main__":
    sys.exit(main())
