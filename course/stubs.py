"""Derive the learner's files in ``lessons/`` from the reference files in ``solutions/``.

In a solution file, each exercise is a marked region::

    def answer():
        # TODO 1: say what to do.
        ### SOLUTION
        return 42
        ### STUB
        # raise HTTPException(501, "TODO 1: ...")
        ### END

The lesson keeps everything outside the regions, drops the solution lines,
and keeps the stub lines with their leading ``# `` removed. A region without
a ``### STUB`` part becomes ``raise NotImplementedError(...)``.

    python -m course.stubs           # rewrite lessons/ (maintainers only: it overwrites edits)
    python -m course.stubs --check   # exit 1 and show a diff if lessons/ drifted
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, LESSONS = ROOT / "solutions", ROOT / "lessons"
MARKER = re.compile(r"^(?P<indent>\s*)### (?P<kind>SOLUTION|STUB|END)\s*$")
HEADER = "# This is your file: complete the TODOs. (Generated from solutions/{name} by `make stubs`.)\n"
# The page code a learner edits (lesson 7) is JavaScript: ``// ### SOLUTION`` ... ``// ### END``,
# stub lines commented out with ``// ``. A file's style follows its name (``*.js``).
JS_MARKER = re.compile(r"^(?P<indent>\s*)// ### (?P<kind>SOLUTION|STUB|END)\s*$")
JS_HEADER = "// This is your file: complete the TODOs. (Generated from solutions/{name} by `make stubs`.)\n"


def _style(name: str) -> tuple[re.Pattern, str, str]:
    """(marker, header, comment) for a solution file of this name."""
    return (JS_MARKER, JS_HEADER, "//") if str(name).endswith(".js") else (MARKER, HEADER, "#")


class StubError(ValueError):
    pass


def make_stub(source: str, name: str = "<solution>") -> str:
    marker, header, comment = _style(name)
    out, state = [header.format(name=name)], "code"
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        match = marker.match(line)
        kind = match["kind"] if match else None
        if kind == "SOLUTION" and state == "code":
            state, indent, stub = "solution", match["indent"], []
        elif kind == "STUB" and state == "solution":
            state = "stub"
        elif kind == "END" and state in ("solution", "stub"):
            if state == "solution":
                stub = [f'{indent}raise NotImplementedError("TODO: see the comment above")\n']
            out.extend(stub)
            state = "code"
        elif kind is not None:
            raise StubError(f"{name}:{number}: unexpected ### {kind}")
        elif state == "code":
            out.append(line)
        elif state == "stub":
            body = line.strip()
            if body and not body.startswith(comment):
                raise StubError(f"{name}:{number}: stub lines must be commented out with '{comment} '")
            out.append(line.replace(f"{comment} ", "", 1) if body.startswith(f"{comment} ")
                       else line.replace(comment, "", 1))
    if state != "code":
        raise StubError(f"{name}: a ### SOLUTION region is never closed with ### END")
    return "".join(out)


def solution_lines(source: str, name: str = "<solution>") -> list[tuple[int, str]]:
    """The ``(line number, line)`` pairs of every ``### SOLUTION`` part (not the ``### STUB`` part):
    the answer's code, which hints must not give away and mutants must change."""
    marker = _style(name)[0]
    found, state = [], "code"
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        match = marker.match(line)
        kind = match["kind"] if match else None
        if kind == "SOLUTION" and state == "code":
            state = "solution"
        elif kind == "STUB" and state == "solution":
            state = "stub"
        elif kind == "END" and state in ("solution", "stub"):
            state = "code"
        elif kind is not None:
            raise StubError(f"{name}:{number}: unexpected ### {kind}")
        elif state == "solution":
            found.append((number, line))
    if state != "code":
        raise StubError(f"{name}: a ### SOLUTION region is never closed with ### END")
    return found


def solution_files() -> list[Path]:
    return sorted(SOLUTIONS.glob("l[0-9][0-9]_*.py"))


def page_files() -> list[Path]:
    """The JavaScript a learner edits next to a lesson (``solutions/l07_capstone.js``)."""
    return sorted(SOLUTIONS.glob("l[0-9][0-9]_*.js"))


def drift() -> list[str]:
    """A unified diff for every lesson file that differs from its generated stub."""
    diffs = []
    for solution in solution_files() + page_files():
        lesson = LESSONS / solution.name
        expected = make_stub(solution.read_text(encoding="utf-8"), solution.name)
        actual = lesson.read_text(encoding="utf-8") if lesson.exists() else ""
        if actual != expected:
            diffs.append("".join(difflib.unified_diff(
                actual.splitlines(True), expected.splitlines(True),
                f"lessons/{solution.name}", f"stub of solutions/{solution.name}")))
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report drift; change nothing")
    args = parser.parse_args(argv)
    if args.check:
        diffs = drift()
        sys.stdout.write("".join(diffs) or "lessons/ matches solutions/\n")
        return 1 if diffs else 0
    for solution in solution_files() + page_files():
        (LESSONS / solution.name).write_text(make_stub(solution.read_text(encoding="utf-8"), solution.name), encoding="utf-8")
        print(f"wrote lessons/{solution.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
