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

