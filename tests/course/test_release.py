"""`make release`: a student copy with no answers in it, that installs itself and grades itself.

The copy's `make check` is run for real, with its `.venv/bin/python` a shim to this checkout's venv
(installing a fresh venv takes minutes). That the copy would install itself on a bare machine is
shown more cheaply: its Makefile's recipe (`make -n`) creates `.venv` and installs the copy's
`requirements.txt`, which is byte-identical to the course's, the file `make test` installed here.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course import classroom, progress, release, stubs
from course.grading import ROOT


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    # check_leaks=False: whether answers leak is test_the_release_holds_no_answer's question alone.
    return release.release(tmp_path_factory.mktemp("release") / "student", check_leaks=False)


def test_the_release_holds_no_answer(tmp_path):
    dest = release.release(tmp_path / "student")  # raises ReleaseError listing every answer line found
    assert not (dest / "solutions").exists()
    assert not (dest / "tests" / "mutants").exists(), "mutants are fragments of the answers"
    assert not (dest / "tests" / "course").exists()
    assert not any((dest / "course" / name).exists() for name in release.TEACHER_ONLY)
    lines = release.solution_lines()
    for solution in stubs.solution_files() + stubs.page_files():  # each is searched for: the search means something
        assert any(where.startswith(solution.name + ":") for where in lines.values()), solution.name
    assert release.leaks(dest, lines) == []


def test_the_search_finds_an_answer_wherever_it_hides(copy, tmp_path):
    planted = tmp_path / "planted"
    shutil.copytree(copy, planted)
    solution = stubs.solution_files()[0].read_text(encoding="utf-8")
    notebook = planted / "notebooks" / sorted(p.name for p in (planted / "notebooks").glob("*.ipynb"))[0]
    cells = json.loads(notebook.read_text(encoding="utf-8"))
    cells["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                           "source": solution.splitlines(keepends=True)})
    notebook.write_text(json.dumps(cells), encoding="utf-8")
    (planted / "course" / "helper.py").write_text(solution, encoding="utf-8")
    found = release.leaks(planted)
    assert any(f.startswith(f"notebooks/{notebook.name}") for f in found), found
    assert any(f.startswith("course/helper.py") for f in found), found


def test_the_release_has_what_a_student_needs(copy):
    for rel in ("README.md", "Makefile", "requirements.txt", "pyproject.toml", ".gitignore", "tests/conftest.py",
                "lessons/__init__.py", "course/__init__.py", "course/grading.py", "course/progress.py",
                "course/watch.py", "course/classroom.py", ".github/workflows/classroom.yml"):
        assert (copy / rel).is_file(), rel
    assert (copy / "requirements.txt").read_bytes() == (ROOT / "requirements.txt").read_bytes()
    graded = sorted(p.name for p in (ROOT / "tests" / "graded").glob("test_*.py"))
    assert sorted(p.name for p in (copy / "tests" / "graded").glob("test_*.py")) == graded
    assert sorted(p.name for p in (copy / "notebooks").glob("*.ipynb")) == \
        sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for notebook in (copy / "notebooks").glob("*.ipynb"):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), notebook.name
    pages = stubs.page_files()
    assert pages, "the capstone's page code (solutions/*.js) is part of the course"
    for solution in stubs.solution_files() + pages:  # each lesson is the stub, whatever lessons/ holds now
        lesson = (copy / "lessons" / solution.name).read_text(encoding="utf-8")
        stub = stubs.make_stub(solution.read_text(encoding="utf-8"), solution.name)
        assert lesson.split("\n", 1)[1] == stub.split("\n", 1)[1], solution.name
        assert "solutions/" not in lesson.split("\n", 1)[0]
    static = ROOT / "course" / "capstone_static"
    for asset in (p for p in static.rglob("*") if p.is_file()):
        assert (copy / asset.relative_to(ROOT)).read_bytes() == asset.read_bytes(), asset.name
    makefile = (copy / "Makefile").read_text(encoding="utf-8")
    for target in ("lab:", "check:", "watch:", "install:"):
        assert f"\n{target}" in makefile, target
    readme = (copy / "README.md").read_text(encoding="utf-8")
    assert "make check" in readme and "make watch" in readme and "make lab" in readme
    assert "solutions" not in readme
    assert (copy / ".github" / "workflows" / "classroom.yml").read_text() == classroom.workflow()


def test_the_copy_installs_itself_on_a_bare_machine(copy):
    recipe = subprocess.run(["make", "-n", "check"], cwd=copy, capture_output=True, text=True, timeout=30)
    assert recipe.returncode == 0, recipe.stderr
    steps = recipe.stdout
    order = [steps.index(s) for s in ("sys.version_info < (3, 11)", "-m venv .venv",
                                      "pip install --quiet -r requirements.txt", "fastapi-course.pth",
                                      "touch .venv/.installed", "-m course.progress")]
    assert order == sorted(order), steps


def venv_shim(copy: Path) -> None:
    """The copy's .venv/bin/python runs this checkout's venv; the stamp says it is installed."""
    bin_dir = copy / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    (copy / ".venv" / ".installed").touch()
    stamp = (copy / ".venv" / ".installed").stat().st_mtime
    os.utime(copy / "requirements.txt", (stamp - 10, stamp - 10))


def make_check(copy: Path, *args: str) -> tuple[str, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_TARGET", "PYTEST_ADDOPTS")}
    proc = subprocess.run(["make", "--no-print-directory", "check", *args], cwd=copy, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "python -m venv" not in proc.stdout, "the shimmed venv was rebuilt"
    return proc.stdout, json.loads((copy / "build" / "progress.json").read_text())


def test_make_check_in_the_copy_gives_stubs_zero_and_solutions_full_marks(copy, tmp_path):
    """The copy's `make check` grades what the student wrote and shows progress over the whole course:
    here lessons 1 and 3 solved (the solution copied over the stub) and lesson 2 an untouched stub,
    graded alone (`LESSONS=...`, the quick lessons); the lessons not graded count in the total with
    their maximum. (All stubs score 0 and all solutions full marks in this checkout: test_grading.py
    and the graded part of `make test`; the copy's lessons and graded checks are the same files,
    test_the_release_has_what_a_student_needs.)"""
    student = tmp_path / "student"
    shutil.copytree(copy, student)
    venv_shim(student)
    graded = ["l01_request_cycle", "l02_uploads", "l03_websockets"]
    solved = {"l01_request_cycle", "l03_websockets"}
    for name in solved:
        shutil.copy(ROOT / "solutions" / f"{name}.py", student / "lessons" / f"{name}.py")
    out, state = make_check(student, f"LESSONS={' '.join(graded)}")
    lessons = [p.stem.removeprefix("test_") for p in sorted((student / "tests" / "graded").glob("test_l*.py"))]
    assert set(graded) < set(lessons)
    assert sorted(state["lessons"]) == graded, "LESSONS grades those lessons and only those"
    scores = {name: (e["score"], e["max_score"]) for name, e in state["lessons"].items()}
    for name, (score, most) in scores.items():
        assert most > 0 and score == (most if name in solved else 0), scores
    total = sum(s for s, _ in scores.values())
    top = sum(m for _, m in scores.values()) + sum(progress.max_points(n) for n in lessons if n not in graded)
    assert f"Progress over the course: {total}/{top} points" in out, out[-2000:]
    assert "not graded yet" in out, out[-2000:]
    assert "Next: lessons/l02_uploads.py, TODO" in out and "Hint:" in out, out[-2000:]


def test_every_module_of_the_copys_course_package_imports_in_the_copy(copy):
    """Nothing the copy's course/ needs was left out (the teacher-only modules, for one)."""
    script = ("import importlib, pkgutil, course\n"
              "names = [m.name for m in pkgutil.walk_packages(course.__path__, 'course.')]\n"
              "for name in names:\n    importlib.import_module(name)\n"
              "assert course.__file__.startswith(%r), course.__file__\n"
              "print(len(names))\n") % str(copy)
    proc = subprocess.run([sys.executable, "-c", script], cwd=copy, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) >= 5
