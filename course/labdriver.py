"""JupyterLab as a learner opens it (the README's ``make lab``), driven by a real browser in tests.

    with running_lab(tmp_path, env={"COURSE_TARGET": "solutions"}) as lab:
        httpx.get(f"{lab.url}/api/status", headers=lab.headers)
        with chromium() as browser:
            page = browser.new_page()
            page.goto(lab.page_url("01_request_cycle.ipynb", workspace="w1"))

:func:`running_lab` starts ``make lab`` on a free 127.0.0.1 port with a known token, in a
session of its own (make, jupyter and the kernels it starts are one process group, stopped
together by that group's id), waits until the server answers, and stops it at the end. The
test's JupyterLab workspaces and settings stay in ``tmp_path``, not in ``~/.jupyter``.

:func:`chromium` is :func:`course.browser.chromium` (re-exported here): Debian's chromium
(``/usr/bin/chromium``) through Playwright, headless, with no sandbox and no background network;
course/browser.py is the one home of its launch arguments.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from course.browser import CHROMIUM, CHROMIUM_ARGS, chromium
from course.children import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "course-test-token"
__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "Lab", "LabStartError", "chromium", "free_port", "running_lab"]


class LabStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class Lab:
    url: str
    token: str = TOKEN

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    def page_url(self, notebook: str, workspace: str) -> str:
        """The notebook in a workspace of its own, so JupyterLab restores no other tab into the page."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?token={self.token}"


def _settings(folder: Path) -> Path:
    """User settings for the test's lab: no autosave, so running cells never writes outputs into a notebook."""
    plugin = folder / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.write_text('{"autosave": false}\n', encoding="utf-8")
    return folder


@contextlib.contextmanager
def running_lab(tmp_path: Path, env: dict | None = None, timeout: float = 60,
                copy_notebooks: bool = False) -> Iterator[Lab]:
    """``make lab`` on a free port; ``env`` is added to the lab's (and so its kernels') environment.

    ``copy_notebooks=True`` serves a copy of ``notebooks/`` made in ``tmp_path`` (for a test that
    runs cells: what the kernels write stays there): the same ``make lab``, run from the copy's
    parent folder with the course's Makefile and venv. Autosave is off either way."""
    port = free_port()
    tmp_path = Path(tmp_path)
    log_path = tmp_path / "lab.log"
    args = (f"LAB_ARGS=--no-browser --ServerApp.port={port} --ServerApp.token={TOKEN} --ServerApp.port_retries=0"
            f" --LabApp.workspaces_dir={tmp_path} --LabApp.user_settings_dir={_settings(tmp_path / 'settings')}")
    # -o: never (re)install the venv from inside a test; `make test` installed it before any test ran.
    cmd = ["make", "--no-print-directory", "-o", ".venv/.installed", "lab", args]
    cwd = ROOT
    if copy_notebooks:
        cwd = tmp_path / "course"
        shutil.copytree(ROOT / "notebooks", cwd / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        venv = ROOT / ".venv"
        cmd = ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-o", str(venv / ".installed"), "lab",
               f"VENV={venv}", args]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        lab = Lab(f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    httpx.get(f"{lab.url}/api/status", params={"token": TOKEN}, timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.3)
            else:
                raise LabStartError(f"JupyterLab did not come up:\n{log_path.read_text()}")
            yield lab
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # make and jupyter share the session; jupyter stops its kernels
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

