"""Which lesson files the course runs: the one place that decides.

A *target* is one of

* ``lessons``   the learner's files (the default),
* ``solutions`` the reference solutions,
* a PATH to a directory that holds a copy of the lessons package (``__init__.py`` and the
  ``lNN_topic.py`` files). The course's mutation tests grade such copies (``course.mutants``).

:func:`target` decides, first match wins:

1. pytest's ``--target`` option: the grading plugin calls :func:`activate` when pytest
   starts, which puts the value in ``$COURSE_TARGET`` for this process and every process it
   starts (xdist workers, notebook kernels, child-process servers), so they all agree;
2. ``$COURSE_TARGET``;
3. ``lessons``.

``course.target()``, ``course.load_lesson``, the graded checks' ``lesson`` fixture,
``course.grade()`` and the notebooks (through ``course.load_lesson``) all call this module.

A directory target is imported as a package under a name of its own, ``course_target_<hash>``
(:func:`package`): a symlink with that name in a folder under the system's temp dir points at the
directory, and that folder goes on ``sys.path`` and on ``$PYTHONPATH`` (for child processes).
So lessons that import each other relatively (``from .l03_websockets import ...``) work, the
copy never clashes with the real ``lessons`` package, and edits to the copy are seen.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ENV = "COURSE_TARGET"
DEFAULT = "lessons"
PACKAGES = ("lessons", "solutions")
_LINKS = Path(tempfile.gettempdir()) / "course-targets"


class TargetError(ValueError):
    pass


def normalize(value: str) -> str:
    """``lessons`` / ``solutions`` as given; anything else must be a directory: its absolute path."""
    if value in PACKAGES:
        return value
    path = Path(value).expanduser()
    if not path.is_dir():
        raise TargetError(f"target {value!r} is neither 'lessons', 'solutions' nor a directory")
    if not any(path.glob("l[0-9][0-9]_*.py")):
        raise TargetError(f"target directory {value!r} holds no lesson files (lNN_topic.py)")
    return str(path.resolve())


def target() -> str:
    """The current target: ``lessons``, ``solutions`` or a directory's absolute path."""
    return normalize(os.environ.get(ENV) or DEFAULT)


def activate(value: str | None) -> str:
    """Make ``value`` (or, if None, the current target) the target of this process and its children."""
    value = normalize(value or os.environ.get(ENV) or DEFAULT)
    os.environ[ENV] = value
    return value


def _package_name(directory: str) -> str:
    return "course_target_" + hashlib.sha1(directory.encode()).hexdigest()[:12]


def _prune() -> None:
    """Drop links whose directory is gone (mutants' temp copies)."""
    for link in _LINKS.glob("course_target_*"):
        if link.is_symlink() and not link.exists():
            link.unlink(missing_ok=True)


def forget(directory: str | os.PathLike) -> None:
    """Remove the symlink that :func:`package` made for ``directory`` (when it is about to go away)."""
    link = _LINKS / _package_name(str(Path(directory).resolve()))
    if link.is_symlink():
        link.unlink(missing_ok=True)


def package(value: str | None = None) -> str:
    """The importable package name of a target (default: the current one)."""
    value = normalize(value) if value else target()
    if value in PACKAGES:
        return value
    name = _package_name(value)
    _LINKS.mkdir(exist_ok=True)
    link = _LINKS / name
    if not (link.is_symlink() and os.readlink(link) == value):
        _prune()
        tmp = _LINKS / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(value, tmp)
        os.replace(tmp, link)  # atomic: parallel workers may do the same at once
    folder = str(_LINKS)
    if folder not in sys.path:
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if folder not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, *paths]))
    return name


def load_lesson(name: str, value: str | None = None, *, reload: bool = False) -> ModuleType:
    """Import lesson ``name`` (``l01_request_cycle``) from a target (default: the current one).

    ``reload=True`` re-reads the file, so a learner's latest edits count in a running kernel.
    """
    module = importlib.import_module(f"{package(value)}.{name}")
    return importlib.reload(module) if reload else module

