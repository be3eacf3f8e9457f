"""The README's lab command starts JupyterLab on 127.0.0.1, serves the course's notebooks, and a
browser (Debian's chromium, driven by Playwright) opens each one with its Mermaid diagrams drawn."""

import contextlib
import json
import os
from pathlib import Path

import httpx
import pytest

from course.grading import ROOT
from course.labdriver import CHROMIUM, chromium, running_lab


@pytest.fixture
def lab(tmp_path):
    with running_lab(tmp_path) as running:
        yield running


def test_make_lab_serves_the_notebooks(lab):
    listing = httpx.get(f"{lab.url}/api/contents/", headers=lab.headers, timeout=10).json()
    names = {item["name"] for item in listing["content"]}
    assert {"00_server_in_the_kernel.ipynb", "01_request_cycle.ipynb"} <= names, names
    page = httpx.get(f"{lab.url}/lab/tree/01_request_cycle.ipynb", headers=lab.headers, timeout=10)
    assert page.status_code == 200 and "JupyterLab" in page.text


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def mermaid_fences(path: Path) -> int:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return sum("".join(cell["source"]).count("```mermaid") for cell in notebook["cells"] if cell["cell_type"] == "markdown")


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                    reason="needs Debian's chromium (apt-get install chromium); CI always has it")
def test_make_lab_opens_every_notebook_and_renders_its_diagrams(lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        for path in NOTEBOOKS:
            # A new workspace per notebook, so JupyterLab restores no other tab into the page.
            page.goto(lab.page_url(path.name, workspace=f"test-{path.stem}"))
            page.locator(".jp-Notebook .jp-Cell .jp-RenderedMarkdown h1").first.wait_for(timeout=60_000)
            assert page.locator(".jp-NotebookPanel").count() == 1
            expected = mermaid_fences(path)
            rendered = page.locator(".jp-RenderedMermaid img")  # an invalid diagram renders no image
            with contextlib.suppress(PlaywrightTimeout):
                rendered.nth(max(expected - 1, 0)).wait_for(state="attached", timeout=20_000 if expected else 1)
            assert rendered.count() == expected, (
                f"{path.name}: {rendered.count()} of {expected} Mermaid diagrams rendered (is one invalid?)")
