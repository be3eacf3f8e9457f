"""GitHub Classroom: the workflow the release carries, and the per-check points each runner reports.

The reporter (classroom-resources/autograding-grading-reporter@v1) base64-decodes each runner's
`result`, sums `tests[].score` and sends that against the runners' `max_score` to Classroom. So
what `python -m course.classroom` writes must decode to exactly the grade report's points.
"""

import json
import os
import shutil
import subprocess
import sys

import yaml

from course import classroom, grading, progress, release, stubs


def fake_report(lessons):
    """A grade report as the plugin writes it, every other check passing."""
    report = {"lessons": {}}
    flip = True
    for lesson in lessons:
        checks = []
        for spec in grading.graded_checks(lesson).values():
            flip = not flip
            checks.append({"name": spec.name, "task_id": spec.task, "passed": flip, "points": spec.points if flip else 0,
                           "max_points": spec.points, "hint": spec.hint, "nudge": spec.nudge})
        report["lessons"][lesson] = {"score": sum(c["points"] for c in checks),
                                     "max_score": sum(c["max_points"] for c in checks), "checks": checks}
    report["score"] = sum(e["score"] for e in report["lessons"].values())
    report["max_score"] = sum(e["max_score"] for e in report["lessons"].values())
    return report


def outputs(path):
    """The `result` values appended to a $GITHUB_OUTPUT file, in order."""
    return [line.split("=", 1)[1] for line in path.read_text().splitlines() if line.startswith("result=")]


def test_each_runner_reports_the_points_of_the_grade_report_per_check(tmp_path):
    lessons = progress.lesson_names()
    report = fake_report(lessons)
    report_path = tmp_path / "grade.json"
    report_path.write_text(json.dumps(report))
    github_output = tmp_path / "github_output"
    for lesson in lessons:
        assert classroom.main(["result", "--lesson", lesson, "--report", str(report_path),
                               "--github-output", str(github_output)]) == 0
    decoded = [classroom.decode(value) for value in outputs(github_output)]
    assert len(decoded) == len(lessons)
    for lesson, result in zip(lessons, decoded):
        entry = report["lessons"][lesson]
        assert result["version"] == 1 and result["status"] in ("pass", "fail")
        assert result["max_score"] == entry["max_score"]
        assert sum(t["score"] for t in result["tests"]) == entry["score"]  # what the reporter sends
        assert [t["score"] for t in result["tests"]] == [c["points"] for c in entry["checks"]]
        assert [t["task_id"] for t in result["tests"]] == [c["task_id"] for c in entry["checks"]]
        for test, check in zip(result["tests"], entry["checks"]):
            assert test["status"] == ("pass" if check["passed"] else "fail")
            assert test["message"] == (None if check["passed"] else check["hint"])
    assert sum(t["score"] for r in decoded for t in r["tests"]) == report["score"]
    assert sum(r["max_score"] for r in decoded) == report["max_score"]


def test_a_lesson_missing_from_the_report_counts_its_maximum_at_zero(tmp_path):
    lesson = progress.lesson_names()[0]
    result = classroom.runner_result(None, lesson, "grading timed out")
    assert result["status"] == "error"
    assert result["max_score"] == progress.max_points(lesson) > 0
    assert all(t["score"] == 0 and t["message"] == "grading timed out" for t in result["tests"])


def all_but_first_todo(solution: str) -> str:
    """The solution with only its first ### SOLUTION region left as the stub: partial credit."""
    out, region = [], 0
    lines = solution.splitlines(keepends=True)
    state = "code"
    for line in lines:
        match = stubs.MARKER.match(line)
        kind = match["kind"] if match else None
        if kind == "SOLUTION":
            region += 1
            state = "solution"
            if region == 1:
                out.append(line)
            continue
        if kind == "STUB":
            state = "stub"
        elif kind == "END":
            state = "code"
        if region == 1 or (kind is None and state != "stub"):
            out.append(line)
    return stubs.make_stub("".join(out))


def test_the_classroom_grade_command_reports_partial_credit_from_a_real_run(tmp_path):
    copy = release.release(tmp_path / "student", check_leaks=False)
    lesson = progress.lesson_names()[0]
    solution = (stubs.SOLUTIONS / f"{lesson}.py").read_text(encoding="utf-8")
    (copy / "lessons" / f"{lesson}.py").write_text(all_but_first_todo(solution), encoding="utf-8")
    github_output = tmp_path / "github_output"
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_TARGET", "PYTEST_ADDOPTS")}
    env["GITHUB_OUTPUT"] = str(github_output)
    proc = subprocess.run([sys.executable, "-m", "course.classroom", "grade", lesson], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    [value] = outputs(github_output)
    result = classroom.decode(value)
    entry = json.loads((copy / "build" / "progress.json").read_text())["lessons"][lesson]  # the same run's report
    score = sum(t["score"] for t in result["tests"])
    assert score == entry["score"] and result["max_score"] == entry["max_score"]
    assert 0 < score < result["max_score"], "all TODOs but the first are solved: partial credit"
    assert result["status"] == "fail"
    failing = {t["task_id"] for t in result["tests"] if t["status"] == "fail"}
    assert failing == {min(t["task_id"] for t in result["tests"])}, "only the first TODO's checks fail"


def test_the_workflow_is_what_github_classroom_runs_and_reads():
    lessons = progress.lesson_names()
    workflow = yaml.safe_load(classroom.workflow())
    assert workflow["name"] == "Autograding Tests"  # the reporter's check run is looked up by these names
    triggers = workflow["on"]
    assert "push" in triggers and "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"checks": "write", "actions": "read", "contents": "read"}
    [(job_name, job)] = workflow["jobs"].items()
    assert job_name == "run-autograding-tests"
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    assert any(step.get("run") == "make install" for step in steps)
    assert any("apt-get install" in step.get("run", "") and "redis-server" in step["run"] for step in steps)
    browser = [step for step in steps if "/usr/bin/chromium" in step.get("run", "")]
    assert browser and "apt-get install" in browser[0]["run"] and "chromium" in browser[0]["run"].split("install")[-1]
    assert steps.index(browser[0]) < min(steps.index(step) for step in steps if "course.classroom grade" in
                                         step.get("run", "")), "the browser checks run in CI: chromium first"
    runners = [step for step in steps if "course.classroom grade" in step.get("run", "")]
    assert [step["run"].split()[-1] for step in runners] == lessons
    ids = [step["id"] for step in runners]
    assert len(set(ids)) == len(ids) and all(i.isalnum() for i in ids)
    reporter = steps[-1]
    assert reporter["uses"] == "classroom-resources/autograding-grading-reporter@v1"
    assert reporter["with"]["runners"].split(",") == ids
    assert reporter["env"] == {f"{i.upper()}_RESULTS": f"${{{{ steps.{i}.outputs.result }}}}" for i in ids}
    assert steps.index(reporter) > max(steps.index(step) for step in runners)
