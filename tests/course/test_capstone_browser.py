"""The capstone's browser checks: without chromium a learner is told what to install and earns no
points for them; in CI they never skip."""

import pytest

from course import browser


def test_missing_chromium_is_a_clear_skip(monkeypatch):
    monkeypatch.setattr(browser, "CHROMIUM", browser.CHROMIUM.with_name("no-such-chromium"))
    monkeypatch.delenv("CI", raising=False)
    assert "apt-get install chromium" in browser.missing()
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        browser.require()


def test_ci_never_skips_the_browser_checks(monkeypatch):
    monkeypatch.setattr(browser, "CHROMIUM", browser.CHROMIUM.with_name("no-such-chromium"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser checks"):
        browser.require()


def test_a_skipped_check_earns_no_points():
    from course.grading import Scorer

    class Report:
        nodeid, when, outcome = "tests/graded/test_l07_capstone.py::x", "setup", "skipped"
        passed, failed, skipped = False, False, True
        user_properties = [("course_check", {"lesson": "l07_capstone", "name": "x", "line": 1, "points": 3,
                                             "hint": "h", "task": None, "nudge": None})]

    scorer = Scorer()
    scorer.pytest_runtest_logreport(Report())
    assert scorer.report()["score"] == 0 and scorer.report()["max_score"] == 3


def _page_mutants():
    import importlib.util

    from course.mutants import MUTANTS_DIR

    spec = importlib.util.spec_from_file_location("course_mutants_l07_page", MUTANTS_DIR / "l07_capstone.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PAGE_MUTANTS


PAGE_MUTANTS = _page_mutants()


@pytest.mark.parametrize("mutant", PAGE_MUTANTS, ids=[f"task{m.task}-{'-'.join(m.why.split()[:4])}" for m in PAGE_MUTANTS])
def test_a_wrong_page_answer_loses_points(mutant, tmp_path):
    """The JavaScript exercises' mutants: solutions/l07_capstone.js with the change, graded in Chromium."""
    from course import mutants as mut
    from course.grading import graded_checks
    from course.stubs import solution_lines

    browser.require()
    source = (mut.SOLUTIONS / "l07_capstone.js").read_text(encoding="utf-8")
    assert source.count(mutant.find) == 1, f"`find` must occur once in solutions/l07_capstone.js: {mutant.find!r}"
    inside = "".join(line for _, line in solution_lines(source, "l07_capstone.js"))
    assert mutant.find.strip() in inside, "a mutant changes a ### SOLUTION part only"
    assert mutant.check in graded_checks("l07_capstone"), f"{mutant.check} is not a check of l07_capstone"
    package = mut.write_package(tmp_path / "mutant_l07_page")
    (package / "l07_capstone.js").write_text(source.replace(mutant.find, mutant.replace, 1), encoding="utf-8")
    graded = mut.grade_check("l07_capstone", mutant.check, package, tmp_path)
    assert graded.loses_points, (f"TODO {mutant.task}: a learner who {mutant.why!r} keeps full marks on "
                                 f"{mutant.check}\n{graded.output[-2000:]}")


def test_every_page_todo_has_two_mutants():
    from collections import Counter

    per_task = Counter(m.task for m in PAGE_MUTANTS)
    assert per_task[4] >= 2 and per_task[5] >= 2, per_task
