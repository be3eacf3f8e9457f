"""Hints teach; they do not hand out the answer.

Every graded check has a hint. No hint or nudge contains a line of code from a ``### SOLUTION``
part of its lesson's solution (``.py``, and the ``.js`` page where a lesson has one) (compared without whitespace, either quote style, trailing ``:``
or ``,`` and inline comments). Short lines (under 12 characters: ``else:``, ``return x``) and
lines the learner's file already shows outside the exercises do not count.
"""

import re

import pytest

from course.grading import graded_checks, graded_files, lesson_of
from course.stubs import SOLUTIONS, make_stub, solution_lines

MIN_CHARS = 12  # shorter code lines (`try:`, `return job`) say nothing a hint may not say


def squeeze(text: str) -> str:
    """Text without whitespace, with one quote style."""
    return re.sub(r"\s+", "", text).replace("'", '"')


def strip_comment(line: str, comment: str = "#") -> str:
    """``code  # comment`` -> ``code`` (a comment marker inside quotes stays)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif line.startswith(comment, i):
            return line[:i]
    return line


def code_lines(lesson: str) -> dict[str, str]:
    """{squeezed line: line} of the lesson's solution parts (its .py and, if any, its .js page),
    minus trivial lines and lines the learner's file already shows."""
    found = {}
    for path in (SOLUTIONS / f"{lesson}.py", SOLUTIONS / f"{lesson}.js"):
        if not path.exists():
            continue
        source, comment = path.read_text(encoding="utf-8"), "//" if path.suffix == ".js" else "#"

        def code_of(line: str) -> str:
            return squeeze(strip_comment(line, comment)).rstrip(":,;{")

        visible = {code_of(line) for line in make_stub(source, path.name).splitlines()}
        for _, line in solution_lines(source, path.name):
            code = code_of(line)
            if len(code) >= MIN_CHARS and code not in visible and re.search(r"\w", code):
                found[code] = line.strip()
    return found


def leaks(text: str, lines: dict[str, str]) -> list[str]:
    squeezed = squeeze(text)
    return [line for code, line in lines.items() if code in squeezed]


LESSONS = [lesson_of(path) for path in graded_files()]


@pytest.mark.parametrize("lesson", LESSONS)
def test_hints_name_the_idea_not_the_answer(lesson):
    lines = code_lines(lesson)
    found = []
    for spec in graded_checks(lesson).values():
        for kind, text in (("hint", spec.hint), ("nudge", spec.nudge)):
            found.extend(f"{spec.name} {kind} contains: {line}" for line in leaks(text or "", lines))
    assert not found, f"{lesson}: hints give the answer's code away\n  " + "\n  ".join(found)


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_check_has_a_hint(lesson):
    empty = [spec.name for spec in graded_checks(lesson).values()
             if not spec.hint.strip() or (spec.nudge is not None and not spec.nudge.strip())]
    assert not empty, f"{lesson}: checks with an empty hint or nudge: {empty}"


def test_the_leak_detector_sees_through_spacing_and_quotes():
    lines = {squeeze('jobs.update(job_id, status="failed")'): "jobs.update(...)"}
    assert leaks("call jobs.update( job_id,  status='failed' ) in the except branch", lines)
    assert not leaks("record the failure in the job store", lines)
    assert strip_comment('x = "#1"  # why') == 'x = "#1"  '
    assert strip_comment("const u = `ws://${host}`;  // why", "//") == "const u = `ws://${host}`;  "
