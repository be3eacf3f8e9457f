"""GitHub Classroom: per-check points (partial credit) through the autograding grading reporter.

GitHub Classroom's ready-made graders score a command all-or-nothing, or split a runner's points
equally across its tests. The reporter itself (``classroom-resources/autograding-grading-reporter``)
does better: it reads each runner's ``result`` output, base64 of::

    {"version": 1, "status": "pass" | "fail" | "error", "max_score": 18,
     "tests": [{"name": ..., "status": "pass" | "fail", "score": 2, "message": ..., "test_code": ...,
                "filename": ..., "line_no": 0, "duration": 0}, ...]}

from the environment variable ``<RUNNER ID IN CAPITALS>_RESULTS``, sums ``tests[].score`` against
the runners' ``max_score`` and sends that to Classroom (its ``src/main.js`` and
``src/notify-classroom.js``; the format is the io-grader's ``src/main.js``). So one runner per
lesson, one test per graded check, each with its own points::

    python -m course.classroom grade l02_uploads        # a workflow step: grade, then write `result`
    python -m course.classroom result --lesson l02_uploads --report grade.json   # encode a report
    python -m course.classroom workflow                 # print .github/workflows/classroom.yml

``grade`` and ``result`` append ``result=<base64>`` to ``$GITHUB_OUTPUT`` (or print it when that
is unset). A lesson whose grading crashes or times out reports ``status: error`` with every check
at 0 of its points, so the maximum still counts.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from pathlib import Path

from course import grading, progress

VERSION = 1
REPORTER = "classroom-resources/autograding-grading-reporter@v1"
LESSON_TIMEOUT = 600  # seconds for one lesson's grading in the workflow


def runner_id(lesson: str) -> str:
    """The workflow step id of a lesson's runner: ``l02_uploads`` -> ``l02`` (letters and digits only,
    which is what the reporter's runner list accepts; its env variable is ``L02_RESULTS``)."""
    return lesson.split("_", 1)[0]


def env_name(lesson: str) -> str:
    return f"{runner_id(lesson).upper()}_RESULTS"


def runner_result(report: dict | None, lesson: str, error: str = "") -> dict:
    """The reporter's result object for one lesson of a grade report (None: the grading broke)."""
    entry = (report or {}).get("lessons", {}).get(lesson)
    if entry is None:  # no report: every declared check at 0, so the maximum still counts
        specs = grading.graded_checks(lesson).values()
        checks = [{"name": s.name, "task_id": s.task, "passed": False, "points": 0, "max_points": s.points,
                   "hint": s.hint} for s in specs]
        status = "error"
    else:
        checks = entry["checks"]
        status = "pass" if entry["score"] == entry["max_score"] else "fail"
    tests = []
    for c in checks:
        todo = f"TODO {c['task_id']}: " if c.get("task_id") is not None else ""
        tests.append({
            "name": f"{lesson} {todo}{c['name']}",
            "status": "pass" if c["passed"] else "fail",
            "score": c["points"],
            "max_score": c["max_points"],
            "task_id": c.get("task_id"),
            "message": None if c["passed"] else (error or c.get("hint") or ""),
            "test_code": f"pytest tests/graded/test_{lesson}.py::{c['name']}",
            "filename": f"lessons/{lesson}.py",
            "line_no": 0,
            "duration": 0,
        })
    return {"version": VERSION, "status": status, "max_score": sum(c["max_points"] for c in checks),
            "tests": tests}


def encode(result: dict) -> str:
    return base64.b64encode(json.dumps(result, separators=(",", ":")).encode("utf-8")).decode("ascii")


def decode(value: str) -> dict:
    """What the reporter does with a runner's ``result``: base64, then JSON."""
    return json.loads(base64.b64decode(value).decode("utf-8"))


def write_output(value: str, github_output: str | None) -> None:
    line = f"result={value}\n"
    if github_output:
        with open(github_output, "a", encoding="utf-8") as out:
            out.write(line)
    else:
        sys.stdout.write(line)


def grade(lesson: str, timeout: float = LESSON_TIMEOUT) -> dict:
    """Grade one lesson in a fresh process (time limit, capped output) and return its result object."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "grade.json"
        run = progress.run_capped(progress.grading_command([lesson], report_path), progress.ROOT, timeout)
        sys.stdout.write(run.output[-20_000:])
        report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else None
        if report is not None:
            progress.record(report_path)
    error = "" if report else ("grading timed out" if run.timed_out else "grading did not finish: see the log")
    return runner_result(report, lesson, error)


WORKFLOW_HEAD = """\
# GitHub Classroom autograding: every push is graded, one runner per lesson, partial credit per check.
# Generated by `make release` (course/classroom.py); GitHub Classroom reads the reporter's points.
name: Autograding Tests
'on':
  - push
  - workflow_dispatch
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    timeout-minutes: 60
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - name: Set up Python
        uses: actions/setup-python@v5
        with:
          python-version: '3.11'
      - name: Install redis-server (the queue lessons start private instances of it)
        run: sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
      - name: Chromium at /usr/bin/chromium (the capstone's browser checks; they fail in CI without it)
        # GitHub's Ubuntu runners ship a Chromium build linked at /usr/bin/chromium. Ubuntu's own
        # `chromium`/`chromium-browser` packages are only wrappers around the snap, so apt-get is the
        # fallback for Debian-based runners, where `chromium` is the real browser.
        run: >-
          test -x /usr/bin/chromium
          || (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium);
          /usr/bin/chromium --version
      - name: Install the course
        run: make install
"""


def workflow(lessons: list[str] | None = None) -> str:
    """The text of ``.github/workflows/classroom.yml`` for these lessons (default: all)."""
    lessons = lessons if lessons is not None else progress.lesson_names()
    parts = [WORKFLOW_HEAD]
    for lesson in lessons:
        parts.append(f"""\
      - name: Grade {lesson}
        id: {runner_id(lesson)}
        timeout-minutes: {LESSON_TIMEOUT // 60 + 2}
        run: .venv/bin/python -m course.classroom grade {lesson}
""")
    parts.append(f"""\
      - name: Autograding Reporter
        uses: {REPORTER}
        env:
""")
    for lesson in lessons:
        parts.append(f'          {env_name(lesson)}: "${{{{ steps.{runner_id(lesson)}.outputs.result }}}}"\n')
    parts.append(f"""\
        with:
          runners: {','.join(runner_id(lesson) for lesson in lessons)}
""")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.classroom", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade one lesson and write its `result` output")
    g.add_argument("lesson")
    g.add_argument("--timeout", type=float, default=LESSON_TIMEOUT)
    g.add_argument("--github-output", default=os.environ.get("GITHUB_OUTPUT"))
    r = sub.add_parser("result", help="encode one lesson of an existing JSON grade report")
    r.add_argument("--lesson", required=True)
    r.add_argument("--report", required=True, type=Path)
    r.add_argument("--github-output", default=os.environ.get("GITHUB_OUTPUT"))
    sub.add_parser("workflow", help="print the classroom workflow")
    args = parser.parse_args(argv)
    if args.command == "workflow":
        sys.stdout.write(workflow())
        return 0
    if args.command == "grade":
        result = grade(args.lesson, args.timeout)
    else:
        report = json.loads(args.report.read_text(encoding="utf-8")) if args.report.exists() else None
        result = runner_result(report, args.lesson, "" if report else f"no report at {args.report}")
    score = sum(t["score"] for t in result["tests"])
    print(f"{args.lesson}: {score}/{result['max_score']} points ({result['status']})", file=sys.stderr)
    write_output(encode(result), args.github_output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
