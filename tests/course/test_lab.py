"""The README's lab command starts JupyterLab on 127.0.0.1, serves the course's notebooks, and a
browser (Debian's chromium, driven by Playwright) opens each one with its Mermaid diagrams drawn."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from course.grading import ROOT

TOKEN = "course-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    port = free_port()
    log = (tmp_path / "lab.log").open("w")
    args = (f"LAB_ARGS=--no-browser --ServerApp.port={port} --ServerApp.token={TOKEN} --ServerApp.port_retries=0"
            f" --LabApp.workspaces_dir={tmp_path}")  # the test's workspaces stay out of ~/.jupyter
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", args], cwd=ROOT, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                httpx.get(f"{base}/api/status", params={"token": TOKEN}, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail(f"JupyterLab did not come up:\n{(tmp_path / 'lab.log').read_text()}")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make, jupyter and its children share the session
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def test_make_lab_serves_the_notebooks(lab):
    headers = {"Authorization": f"token {TOKEN}"}
    listing = httpx.get(f"{lab}/api/contents/", headers=headers, timeout=10).json()
    names = {item["name"] for item in listing["content"]}
    assert {"00_server_in_the_kernel.ipynb", "01_request_cycle.ipynb"} <= names, names
    page = httpx.get(f"{lab}/lab/tree/01_request_cycle.ipynb", headers=headers, timeout=10)
    assert page.status_code == 200 and "JupyterLab" in page.text


CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium; `make test` installs it with apt-get
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def mermaid_fences(path: Path) -> int:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return sum("".join(cell["source"]).count("```mermaid") for cell in notebook["cells"] if cell["cell_type"] == "markdown")


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                    reason="needs Debian's chromium (apt-get install chromium); CI always has it")
def test_make_lab_opens_every_notebook_and_renders_its_diagrams(lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            # The network is closed here: no background fetches, no update checks.
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            for path in NOTEBOOKS:
                # A new workspace per notebook, so JupyterLab restores no other tab into the page.
                page.goto(f"{lab}/lab/workspaces/test-{path.stem}/tree/{path.name}?token={TOKEN}")
                page.locator(".jp-Notebook .jp-Cell .jp-RenderedMarkdown h1").first.wait_for(timeout=60_000)
                assert page.locator(".jp-NotebookPanel").count() == 1
                expected = mermaid_fences(path)
                rendered = page.locator(".jp-RenderedMermaid img")  # an invalid diagram renders no image
                with contextlib.suppress(PlaywrightTimeout):
                    rendered.nth(max(expected - 1, 0)).wait_for(state="attached", timeout=20_000 if expected else 1)
                assert rendered.count() == expected, (
                    f"{path.name}: {rendered.count()} of {expected} Mermaid diagrams rendered (is one invalid?)")
        finally:
            browser.close()
