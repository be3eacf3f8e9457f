"""The graded checks catch plausible mistakes.

Each mutant in ``tests/mutants/lNN_topic.py`` (see course/mutants.py) is a wrong answer a
learner could write after reading a TODO. Applied to a copy of solutions/, it must lose points
on the check it names. Every TODO of a lesson has at least two, and every lesson has a file.
"""

import subprocess
import sys
from collections import Counter

import pytest

from course import mutants as mut
from course.grading import graded_checks
from course.stubs import solution_files


def _collect():
    """(mutants, broken files): a file that does not load fails its own test, not the collection."""
    found, broken = [], {}
    for path in mut.mutant_files():
        try:
            found.extend(mut.load_file(path))
        except Exception as exc:  # noqa: BLE001 - reported by test_every_mutants_file_loads
            broken[path.stem] = f"{type(exc).__name__}: {exc}"
    return found, broken


MUTANTS, BROKEN = _collect()
IDS = [m.id for m in MUTANTS]
IDS = [f"{i}-{n}" if IDS.count(i) > 1 else i for n, i in enumerate(IDS)]
LESSONS_WITH_MUTANTS = sorted({p.stem for p in mut.mutant_files()})


@pytest.mark.parametrize("item", MUTANTS, ids=IDS)
def test_mutant_loses_points_on_its_check(item, tmp_path):
    if problems := mut.problems(item):
        pytest.fail(f"invalid mutant {item.id}: " + "; ".join(problems), pytrace=False)
    graded = mut.grade_mutant(item, tmp_path)
    assert "does not import" not in graded.output, (
        f"{item.id}: the mutated lesson does not even import; a mutant must be a wrong answer that runs\n"
        + graded.output[-2000:])
    if graded.skipped and not graded.failed:
        pytest.skip(f"{item.mutant.check} skipped here, so it proves nothing: " + graded.output[-500:])
    assert graded.loses_points, (
        f"{item.lesson}, TODO {item.mutant.task}: a learner who {item.mutant.why!r} keeps full marks on "
        f"{item.mutant.check} ({graded.earned}/{graded.max_points}). Make the check catch it.")


@pytest.mark.parametrize("lesson", LESSONS_WITH_MUTANTS)
def test_every_mutants_file_loads(lesson):
    assert lesson not in BROKEN, f"tests/mutants/{lesson}.py: {BROKEN.get(lesson)}"
    assert (mut.SOLUTIONS / f"{lesson}.py").exists(), f"tests/mutants/{lesson}.py names no lesson in solutions/"


@pytest.mark.parametrize("lesson", LESSONS_WITH_MUTANTS)
def test_every_todo_has_two_mutants(lesson):
    tasks = mut.todo_numbers(lesson) | {c.task for c in graded_checks(lesson).values() if c.task is not None}
    per_task = Counter(m.mutant.task for m in MUTANTS if m.lesson == lesson)
    short = {task: per_task[task] for task in sorted(tasks) if per_task[task] < 2}
    assert not short, f"tests/mutants/{lesson}.py: TODOs with fewer than two mutants (TODO: count): {short}"


def test_every_lesson_has_a_mutants_file():
    missing = [s.stem for s in solution_files() if not (mut.MUTANTS_DIR / s.name).exists()]
    assert not missing, f"no tests/mutants/<lesson>.py for: {', '.join(missing)}"


@pytest.mark.parametrize("lesson", LESSONS_WITH_MUTANTS)
def test_an_unchanged_copy_keeps_full_marks(lesson, tmp_path):
    """The machinery itself: a copy of solutions/ as a directory target scores what solutions/ does."""
    ours = [m for m in MUTANTS if m.lesson == lesson and m.mutant.check.split("[")[0] in graded_checks(lesson)]
    if not ours:
        pytest.skip(f"no mutant of {lesson} names an existing check yet")
    graded = mut.grade_check(lesson, ours[0].mutant.check, mut.write_package(tmp_path / "pristine"), tmp_path)
    assert not graded.loses_points and graded.earned == graded.max_points > 0, graded.output[-3000:]


def test_a_mutant_outside_a_solution_region_is_invalid():
    lesson = solution_files()[0].stem
    first_line = (mut.SOLUTIONS / f"{lesson}.py").read_text().splitlines()[0]
    item = mut.LessonMutant(lesson, 0, mut.Mutant(task=1, check="test_nothing", why="edits the docstring",
                                                   find=first_line, replace=first_line + " # changed"))
    found = " ".join(mut.problems(item))
    assert "not inside a ### SOLUTION region" in found or "occurs" in found
    assert "not a graded check" in found


SOURCE = "given = 1\n### SOLUTION\nanswer = 2\nmore = 3\n### STUB\n# answer = None\n### END\ntail = 4\n"


@pytest.mark.parametrize(("find", "replace", "outside"), [
    ("answer = 2", "answer = 3", []),
    ("more = 3\n### STUB", "more = 4\n### STUB", []),       # a marker only makes `find` unique
    ("### SOLUTION\n", "### SOLUTION\nextra = 0\n", []),    # an insertion at the top of the region
    ("more = 3\n", "more = 3\nextra = 0\n", []),            # ... and at its end
    ("given = 1", "given = 2", [1]),
    ("# answer = None", "# answer = 0", [6]),                # the stub part is not the solution
    ("### END\n", "### END\nextra = 0\n", [8]),
])
def test_a_mutant_must_change_solution_lines_only(find, replace, outside):
    assert mut.changed_outside(SOURCE, SOURCE.replace(find, replace, 1)) == outside


def test_a_page_s_javascript_regions_count_too():
    source = "const a = 1;\n// ### SOLUTION\nconst b = 2;\n// ### STUB\n// const b = 0;\n// ### END\n"
    assert mut.changed_outside(source, source.replace("b = 2", "b = 3"), "page.js") == []
    assert mut.changed_outside(source, source.replace("a = 1", "a = 3"), "page.js") == [1]


def test_the_command_line_loads_the_mutants_files():
    lesson = LESSONS_WITH_MUTANTS[0] if LESSONS_WITH_MUTANTS else solution_files()[0].stem
    proc = subprocess.run([sys.executable, "-m", "course.mutants", lesson, "-k", "no-mutant-has-this-id"],
                          cwd=mut.ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
