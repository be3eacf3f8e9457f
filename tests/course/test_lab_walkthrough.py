"""The walkthrough as a learner runs it: JupyterLab (`make lab`) in Debian's chromium, Run All.

For notebooks 01 and 04: open it, run every cell through JupyterLab's own menu (Run > Run All
Cells), wait until every code cell has run and the kernel is idle, then require no traceback in
any cell's output (except cells tagged `raises-exception`, which raise on purpose) and an image
for every cell that draws a plot. The lab runs against the solutions (COURSE_TARGET=solutions), and
each notebook's self-check cell only says it was skipped (COURSE_SELF_CHECK=skip): the graded suite
grades the solutions.
"""

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from course.grading import ROOT
from course.labdriver import CHROMIUM, chromium, running_lab

NOTEBOOKS = [path for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
             if path.name.startswith(("01_", "04_"))]
# A call that draws: course.plots' helpers, or matplotlib's pyplot (imports do not count).
PLOTS = re.compile(r"^(?!\s*(from|import)\s).*\b(plots\.\w+|bars|timeline|plt\.(subplots|figure|plot|bar|hist))\s*\(",
                   re.M)
RUN_TIMEOUT = 300  # seconds for one notebook's Run All (each runs in well under 30 s unloaded)


ERROR_OUTPUTS = (".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                 ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")


def is_error(text: str) -> bool:
    """An error as JupyterLab shows it: a traceback, or (a SyntaxError) a last line `SomethingError: ...`."""
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and ("Traceback" in text or re.match(r"^\w*(Error|Exception)\b", lines[-1].strip()) is not None)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def plotting_cells(path: Path) -> list[int]:
    return [i for i, cell in enumerate(cells(path)) if cell["cell_type"] == "code" and PLOTS.search(source(cell))]


def kernel_state(lab, notebook: str) -> str | None:
    sessions = httpx.get(f"{lab.url}/api/sessions", headers=lab.headers, timeout=10).json()
    for session in sessions:
        if session.get("path", "") == notebook and session.get("kernel"):
            return session["kernel"].get("execution_state")
    return None


def wait_until(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`make lab` on a copy of notebooks/ (what the cells write stays there), against the solutions."""
    before = {path.name: path.read_bytes() for path in NOTEBOOKS}
    with running_lab(tmp_path_factory.mktemp("lab"), env={"COURSE_TARGET": "solutions", "COURSE_SELF_CHECK": "skip"},
                     copy_notebooks=True) as running:
        listing = httpx.get(f"{running.url}/api/contents/", headers=running.headers, timeout=10).json()
        assert {item["name"] for item in listing["content"]} >= {path.name for path in NOTEBOOKS}
        yield running
    for path in NOTEBOOKS:
        assert path.read_bytes() == before[path.name], f"the walkthrough changed {path}"


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                    reason="needs Debian's chromium (apt-get install chromium); CI always has it")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_run_all_in_jupyterlab_shows_no_error_and_draws_every_plot(lab, path):
    notebook = cells(path)
    code = [i for i, cell in enumerate(notebook) if cell["cell_type"] == "code" and source(cell).strip()]
    expected_plots = plotting_cells(path)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(lab.page_url(path.name, workspace=f"walkthrough-{path.stem}"))
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        wait_until(lambda: kernel_state(lab, path.name) == "idle", 60, "the kernel to start")
        dom_cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        wait_until(lambda: dom_cells.count() == len(notebook), 30, "every cell to be attached to the page")
        dom_cells.first.click()  # the notebook has the focus: the menu's commands apply to it

        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']", has_text="Run All Cells").click()

        def all_ran():
            prompts = [dom_cells.nth(i).locator(".jp-InputPrompt").first.text_content().strip() for i in code]
            return all(re.fullmatch(r"\[\d+\]:", p) for p in prompts) and kernel_state(lab, path.name) == "idle"

        wait_until(all_ran, RUN_TIMEOUT, f"{path.name} to run to the end", interval=1)

        problems = []
        for i in code:
            if "raises-exception" in notebook[i].get("metadata", {}).get("tags", []):
                continue
            outputs = dom_cells.nth(i).locator(ERROR_OUTPUTS)
            problems += [f"cell {i}: {text[-800:]}" for k in range(outputs.count())
                         if is_error(text := outputs.nth(k).text_content())]
        assert not problems, f"{path.name}: error output:\n" + "\n".join(problems)

        assert expected_plots, f"{path.name} draws no plot: is the PLOTS pattern out of date?"
        for i in expected_plots:
            images = dom_cells.nth(i).locator(".jp-RenderedImage img")
            assert images.count() >= 1, f"{path.name} cell {i} drew no image:\n{source(notebook[i])[:300]}"
            loaded = images.first.evaluate("img => img.complete && img.naturalWidth > 0")
            assert loaded, f"{path.name} cell {i}: the image did not load"


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                    reason="needs Debian's chromium (apt-get install chromium); CI always has it")
def test_the_error_check_sees_errors_as_jupyterlab_shows_them(lab):
    """The check above is not blind: errors run in a console of the same lab are caught by it."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{lab.url}/lab/workspaces/errors?token={lab.token}")
        page.locator(".jp-LauncherCard[data-category='Console']").first.click(timeout=60_000)  # Python 3 console
        prompt = page.locator(".jp-CodeConsole-promptCell .cm-content")
        prompt.wait_for(timeout=60_000)

        def console_idle():
            sessions = httpx.get(f"{lab.url}/api/sessions", headers=lab.headers, timeout=10).json()
            return any(s.get("type") == "console" and (s.get("kernel") or {}).get("execution_state") == "idle"
                       for s in sessions)

        wait_until(console_idle, 60, "the console's kernel to start")
        errors = page.locator(f".jp-CodeConsole {ERROR_OUTPUTS.split(', ')[0]}")
        for n, code in enumerate(["1 / 0", "def broken(:"], start=1):
            prompt.click()
            page.keyboard.type(code)
            wait_until(lambda: prompt.text_content().strip() == code, 10, f"{code!r} in the console's prompt", 0.1)
            page.keyboard.press("Shift+Enter")
            errors.nth(n - 1).wait_for(state="attached", timeout=120_000)
            assert is_error(errors.nth(n - 1).text_content()), errors.nth(n - 1).text_content()
