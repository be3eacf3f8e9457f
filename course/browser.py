"""Debian's chromium, driven by Playwright, for the browser parts of the course (the capstone).

One launch for everyone: :func:`chromium` (sync, for tests) and :func:`async_chromium` /
:func:`launch_async` (for a notebook's running event loop) start ``/usr/bin/chromium`` headless with
``--no-sandbox`` and no background network, as :mod:`course.labdriver` does (the same arguments;
labdriver is teacher-only and not in the student copy, so this module does not import it).
Playwright never downloads a browser.

:func:`missing` says, in one sentence, what is needed when the browser cannot run here;
:func:`require` turns that into a pytest skip (no points for a graded check), or a failure in CI.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium; `make test` installs it with apt-get
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "ConsoleErrors", "async_chromium", "chromium", "launch_async", "missing", "require"]


def missing() -> str | None:
    """None if the browser checks can run here; else what to install."""
    if importlib.util.find_spec("playwright") is None:
        return "the browser checks need Playwright (pip install -r requirements.txt)"
    if not CHROMIUM.exists():
        return (f"the browser checks need Debian's chromium at {CHROMIUM}: `sudo apt-get install chromium` "
                "(`make test` installs it when run as root on Debian); they earn no points without it")
    return None


def require() -> None:
    """In a pytest fixture or test: skip (no points) without chromium; in CI (``$CI`` set), fail instead."""
    import pytest

    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser checks: {reason}", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def chromium():
    """Debian's chromium through Playwright's sync API, headless; yields the Browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


async def launch_async(playwright):
    """Launch the chromium with Playwright's async API (``playwright`` from ``async_playwright().start()``)."""
    return await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


@contextlib.asynccontextmanager
async def async_chromium() -> AsyncIterator:
    """The same chromium through Playwright's async API; yields the Browser, closes it at the end."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await launch_async(playwright)
        try:
            yield browser
        finally:
            await browser.close()


class ConsoleErrors(list):
    """Every console error and uncaught exception of the pages it watches: ``errors.watch(page)``.

    A failed resource load (a missing favicon, a refused request) is logged by Chromium as a
    console error too, so an empty list means the pages ran clean."""

    def watch(self, page) -> None:
        page.on("console", lambda message: message.type == "error" and self.append(f"{page.url}: {message.text}"))
        page.on("pageerror", lambda error: self.append(f"{page.url}: uncaught {error}"))
