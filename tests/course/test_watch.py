"""`make watch`: a saved lesson is re-graded at once; a nudge only on request; Ctrl-C stops it cleanly.

It runs on a student copy holding only the first lesson's checks, so each grading takes seconds.
"""

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from course import progress, release
from course.grading import ROOT

LESSON = progress.lesson_names()[0]


class Lines:
    """The watcher's output, read in a thread; wait_for() waits for a line containing a text."""

    def __init__(self, stream):
        self.seen: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.reader.start()

    def _read(self, stream):
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return line
        pytest.fail(f"no line with {text!r} within {timeout} s; output so far:\n" + "\n".join(self.seen[-60:]))

    def text(self) -> str:
        return "\n".join(self.seen)


@pytest.fixture
def student(tmp_path):
    copy = release.release(tmp_path / "student", check_leaks=False)
    for graded in (copy / "tests" / "graded").glob("test_l*.py"):
        if graded.stem != f"test_{LESSON}":
            graded.unlink()
    shutil.copy(ROOT / "solutions" / f"{LESSON}.py", copy / "lessons" / f"{LESSON}.py")
    return copy


def test_watch_regrades_a_saved_lesson_gives_a_nudge_on_request_and_stops_on_ctrl_c(student):
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_TARGET", "PYTEST_ADDOPTS")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "course.watch"], cwd=student, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = Lines(proc.stdout)
    try:
        out.wait_for(f"Grading {LESSON} first", 30)  # never graded: graded at start
        out.wait_for(f"{LESSON} is complete", 120)
        out.wait_for("Watching lessons/", 10)

        (student / "lessons" / f"{LESSON}.py").write_text("def create_app(:\n", encoding="utf-8")  # saved, broken
        out.wait_for(f"{LESSON}.py changed: grading", 20)
        out.wait_for("FAIL", 120)
        out.wait_for("does not import", 10)
        out.wait_for("Next in this lesson: TODO 1", 10)
        out.wait_for("Hint:", 5)
        out.wait_for("Progress over the course: 0/", 10)
        out.wait_for("Watching lessons/", 10)
        assert "Nudge" not in out.text(), "a nudge is shown only on request"

        proc.stdin.write("h\n")
        proc.stdin.flush()
        line = out.wait_for("nudge", 10)
        assert "TODO 1" in line or "test_task1" in line, line

        time.sleep(0.3)  # idle in the watcher: what a learner's Ctrl-C interrupts
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 5, "Ctrl-C took too long"
        out.wait_for("Stopped watching", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdin.close()
        out.reader.join(5)
        proc.stdout.close()


def test_a_save_before_the_watcher_is_armed_is_graded_and_watching_is_said_only_once_armed(tmp_path, monkeypatch):
    """The race behind a once-missed save under load: watchfiles creates its watcher only at the
    generator's first next(). Here the file is saved exactly then, before the watcher exists (the
    worst moment, made deterministic): it is still graded, and "Watching" comes only after."""
    from io import StringIO

    import watchfiles

    from course import watch

    folder = tmp_path / "mine"
    folder.mkdir()
    lesson_file = folder / f"{LESSON}.py"
    lesson_file.write_text("# v1\n", encoding="utf-8")
    real_watch = watchfiles.watch

    def watch_saving_first(*args, **kwargs):
        time.sleep(0.05)  # a coarse filesystem clock must see a new mtime
        lesson_file.write_text("# v2, saved before the watcher was armed\n", encoding="utf-8")
        yield from real_watch(*args, **kwargs)

    monkeypatch.setattr(watch.watchfiles, "watch", watch_saving_first)
    out = StringIO()
    watcher = watch.Watcher(str(folder), out=out)
    graded = []

    def fake_grade(lessons):
        graded.extend(lessons)
        watcher.stop.set()
        return None

    monkeypatch.setattr(watcher, "grade", fake_grade)
    monkeypatch.setattr(watcher, "show", lambda lesson, report: None)
    timer = threading.Timer(30, watcher.stop.set)  # a bound on the test, never reached when it works
    timer.start()
    try:
        assert watcher.run(initial=False, keys=None) == 0
    finally:
        timer.cancel()
    assert graded == [LESSON], out.getvalue()
    text = out.getvalue()
    assert f"{LESSON}.py changed: grading" in text
    assert text.index(f"{LESSON}.py changed: grading") < text.index("Watching"), text
