"""lessons/ is generated from solutions/ and must not drift from it."""

import pytest

from course.stubs import LESSONS, StubError, drift, make_stub, solution_files, solution_lines


def test_every_solution_has_a_lesson_that_matches_its_stub():
    assert solution_files(), "no solutions found"
    diffs = drift()
    assert not diffs, "lessons/ drifted from solutions/; run `make stubs`:\n" + "".join(diffs)


def test_lessons_have_todos_and_no_solution_markers():
    for solution in solution_files():
        text = (LESSONS / solution.name).read_text(encoding="utf-8")
        assert "TODO" in text, f"{solution.name} has no TODO"
        assert "### " not in text, f"{solution.name} leaks a marker"


def test_stub_lines_replace_the_solution():
    source = "def f():\n    ### SOLUTION\n    return 42\n    ### STUB\n    # return None\n    ### END\n"
    assert make_stub(source).endswith("def f():\n    return None\n")


def test_a_region_without_stub_raises_not_implemented():
    stub = make_stub("def f():\n    ### SOLUTION\n    return 42\n    ### END\n")
    assert "raise NotImplementedError" in stub and "42" not in stub


@pytest.mark.parametrize("broken", ["### SOLUTION\nx = 1\n", "### END\n", "### SOLUTION\n### STUB\nx = 1\n### END\n"])
def test_malformed_regions_are_errors(broken):
    with pytest.raises(StubError):
        make_stub(broken)


def test_solution_lines_are_the_answer_not_the_stub():
    source = "a = 1\n### SOLUTION\nb = 2\nc = 3\n### STUB\n# d = 4\n### END\ne = 5\n### SOLUTION\nf = 6\n### END\n"
    assert solution_lines(source) == [(3, "b = 2\n"), (4, "c = 3\n"), (10, "f = 6\n")]


def test_javascript_regions_use_line_comments():
    source = ("export function f() {\n  // ### SOLUTION\n  return 42;\n  // ### STUB\n  // return 0;\n  // ### END\n}\n")
    stub = make_stub(source, "l99_page.js")
    assert stub.startswith("// This is your file")
    assert stub.endswith("export function f() {\n  return 0;\n}\n") and "42" not in stub
    assert solution_lines(source, "l99_page.js") == [(3, "  return 42;\n")]
    with pytest.raises(StubError):
        make_stub("// ### SOLUTION\nx = 1;\n// ### STUB\ny = 2;\n// ### END\n", "l99_page.js")
