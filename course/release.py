"""The student release: a copy of the course without answers, ready to push as a classroom template.

    python -m course.release [DEST]          # `make release [DIST=path]`; default dist/student/

It writes, into DEST:

* ``lessons/``: stubs generated afresh from ``solutions/`` (never the maintainer's edited copies),
  the page's ``lessons/*.js`` too (``// ### SOLUTION`` regions);
* ``notebooks/*.ipynb`` with outputs cleared;
* ``tests/graded/`` and ``tests/conftest.py``: the graded checks (not ``tests/course/``, not
  ``tests/mutants/``, whose wrong answers are fragments of the right ones);
* ``course/``: the plumbing, without the teacher's tools (:data:`TEACHER_ONLY`), and the capstone's
  page assets ``course/capstone_static/``;
* ``requirements.txt``, ``pyproject.toml``, ``.gitignore`` as they are;
* a student ``README.md`` and ``Makefile`` (``make lab``, ``make check``, ``make watch``) from
  ``course/templates/student/``, and ``.github/workflows/classroom.yml`` (:mod:`course.classroom`).

No ``solutions/``, and then a last look: every file of the copy is searched for every non-trivial
line of every ``### SOLUTION`` region (:func:`solution_lines`); the release fails if one is found.

DEST may be a checkout of the classroom template repository: its ``.git`` is kept and everything
else replaced. A DEST that exists, is not empty and was not written by this command is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from course import classroom, stubs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / "dist" / "student"
TEMPLATES = Path(__file__).resolve().parent / "templates" / "student"
MARKER = ".course-release"
# Teacher-side modules: no use to a student (and mutants lists wrong answers' targets).
TEACHER_ONLY = {"release.py", "gradebook.py", "labdriver.py", "mutants.py", "stubs.py"}
STUB_HEADER = "# This is your file: complete the TODOs. `make check` grades it; `make watch` re-grades it on save.\n"
JS_STUB_HEADER = "// This is your file: complete the TODOs. `make check` grades it (the capstone's browser checks).\n"
MIN_LINE = 16  # shorter solution lines (`break`, `return job`, `try:`) say nothing on their own
EXCEPT_CLAUSE = re.compile(r"^except\b[^:]*:$")


class ReleaseError(RuntimeError):
    pass


# ---------------------------------------------------------------- what must never ship

def solution_lines(solutions: Path = ROOT / "solutions") -> dict[str, str]:
    """Every non-trivial line inside a ``### SOLUTION`` region (``// ### SOLUTION`` in the page's
    ``.js``), stripped -> ``file:line``.

    Trivial, so not searched for: lines shorter than :data:`MIN_LINE` characters; ``except ...:``
    clauses; and lines the course ships anyway: the lessons' given code and stubs (what
    ``course.stubs`` makes of the solutions) and the wrong-way specimens in ``course/specimens/``
    (a line the anti-pattern shares with the answer is not what fixes it)."""
    inside: dict[str, str] = {}
    given: set[str] = set()
    for path in sorted([*solutions.glob("l[0-9][0-9]_*.py"), *solutions.glob("l[0-9][0-9]_*.js")]):
        source = path.read_text(encoding="utf-8")
        given.update(line.strip() for line in stubs.make_stub(source, path.name).splitlines())
        marker = stubs._style(path.name)[0]
        state = "code"
        for number, line in enumerate(source.splitlines(), start=1):
            match = marker.match(line)
            if match:
                state = {"SOLUTION": "solution", "STUB": "stub", "END": "code"}[match["kind"]]
            elif state == "solution":
                inside.setdefault(line.strip(), f"{path.name}:{number}")
    for specimen in sorted((ROOT / "course" / "specimens").rglob("*.py")):
        given.update(line.strip() for line in specimen.read_text(encoding="utf-8").splitlines())
    return {text: where for text, where in inside.items()
            if len(text) >= MIN_LINE and text not in given and not EXCEPT_CLAUSE.match(text)}


def text_files(root: Path):
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(root).parts and "__pycache__" not in path.parts:
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def leaks(root: Path, lines: dict[str, str] | None = None) -> list[str]:
    """``copy-path:line: text (from solutions/file:line)`` for each solution line found under ``root``.

    Notebooks are searched line by line inside each cell's source as well as raw JSON."""
    lines = solution_lines() if lines is None else lines
    found = []
    for path, text in text_files(root):
        candidates = text.splitlines()
        if path.suffix == ".ipynb":
            try:
                cells = json.loads(text)["cells"]
                candidates = [ln for cell in cells for ln in "".join(cell["source"]).splitlines()]
            except (ValueError, KeyError):
                pass
        for number, line in enumerate(candidates, start=1):
            if line.strip() in lines:
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()} (from {lines[line.strip()]})")
    return found


# ---------------------------------------------------------------- the copy

def _clear_outputs(source: Path, dest: Path) -> None:
    notebook = json.loads(source.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    dest.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _contents_section() -> str:
    """The course README's ``## Contents`` section (notebooks and exercises), if it has one."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Contents\n.*?(?=^## )", readme, flags=re.S | re.M)
    return match.group(0).strip() if match else ""


def _prepare(dest: Path) -> None:
    if dest.exists():
        if not dest.is_dir():
            raise ReleaseError(f"{dest} exists and is not a folder")
        entries = [p for p in dest.iterdir() if p.name != ".git"]
        if entries and not (dest / MARKER).exists():
            raise ReleaseError(f"{dest} is not empty and was not written by `make release`: "
                               "choose another DIST or empty it")
        for entry in entries:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    dest.mkdir(parents=True, exist_ok=True)


def _copy(rel: str, dest: Path) -> None:
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / rel, target)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def release(dest: Path = DEFAULT_DEST, check_leaks: bool = True) -> Path:
    """Write the student copy to ``dest``; raise :class:`ReleaseError` if it would hold answer lines.

    ``check_leaks=False`` is for copies that never reach a student (the gradebook's pristine tree)."""
    dest = Path(dest).resolve()
    if dest == ROOT or ROOT in dest.parents and dest.parent == ROOT:
        raise ReleaseError(f"refusing to release into {dest}: pick a folder of its own (default dist/student)")
    _prepare(dest)

    # Lessons: stubs made now from the solutions, with a header that does not point at solutions/.
    (dest / "lessons").mkdir()
    _copy("lessons/__init__.py", dest)
    for solution in stubs.solution_files() + stubs.page_files():
        stub = stubs.make_stub(solution.read_text(encoding="utf-8"), solution.name)
        first, rest = stub.split("\n", 1)
        header = JS_STUB_HEADER if solution.suffix == ".js" else STUB_HEADER
        (dest / "lessons" / solution.name).write_text(header + rest, encoding="utf-8")

    (dest / "notebooks").mkdir()
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        _clear_outputs(notebook, dest / "notebooks" / notebook.name)

    for path in sorted((ROOT / "tests" / "graded").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix == ".py":
            _copy(str(path.relative_to(ROOT)), dest)
    _copy("tests/conftest.py", dest)

    for path in sorted((ROOT / "course").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "__pycache__" in rel.parts or "templates" in rel.parts:
            continue
        if len(rel.parts) == 2 and rel.name in TEACHER_ONLY:
            continue
        _copy(str(rel), dest)
    # The capstone's page (HTML, CSS, the given JavaScript) that course code serves next to lessons/*.js.
    for path in sorted((ROOT / "course" / "capstone_static").rglob("*")):
        if path.is_file():
            _copy(str(path.relative_to(ROOT)), dest)

    for rel in ("requirements.txt", "pyproject.toml", ".gitignore"):
        _copy(rel, dest)
    shutil.copy2(TEMPLATES / "Makefile", dest / "Makefile")
    readme = (TEMPLATES / "README.md").read_text(encoding="utf-8").replace("{contents}", _contents_section())
    (dest / "README.md").write_text(readme, encoding="utf-8")
    workflow = dest / ".github" / "workflows" / "classroom.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(classroom.workflow(), encoding="utf-8")
    (dest / MARKER).write_text(f"Student release of the course at commit {_commit()} (`make release`).\n",
                               encoding="utf-8")

    found = leaks(dest) if check_leaks else []
    if found:
        raise ReleaseError("the release would contain lines of the answers:\n  " + "\n  ".join(found))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DEST,
                        help="where to write the copy (default: dist/student)")
    args = parser.parse_args(argv)
    try:
        dest = release(args.dest)
    except ReleaseError as exc:
        print(f"make release: {exc}", file=sys.stderr)
        return 1
    files = sum(1 for p in dest.rglob("*") if p.is_file() and ".git" not in p.relative_to(dest).parts)
    print(f"Student release written to {dest} ({files} files, no solutions).")
    print("Push it as the classroom's template repository; see the course README, section For teachers.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
