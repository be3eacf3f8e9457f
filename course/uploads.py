"""Upload clients and measurements, shared by notebook 02, lesson 2's graded checks and
``bench/upload_memory.py``.

Request bodies:

* :func:`raw_multipart` a one-file ``multipart/form-data`` body written by hand, so the filename
  reaches the server exactly as given (httpx leaves out ``filename=""``, and normalizes nothing
  else, but a hand-written body says what is sent);
* :func:`multipart_body` the same for a LARGE file, streamed from a generator with an exact
  ``Content-Length``: the client holds one block, never the file;
* :func:`chunked` any body as a generator: httpx then sends it without ``Content-Length``.

Measurements: :func:`measure_upload_peaks` against a server in a child process
(:func:`course.children.serve_in_child`, so its memory is its own: peak resident memory, bytes
written, time), :func:`upload_concurrently`, :func:`paced_upload` (a slow client: when was the last
byte sent, when did the answer come). :func:`browser_form_body` what a real browser (headless
chromium) sends for a form. :func:`describe_error` sums up a logged exception chain in one line.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from course.children import ChildServer

__all__ = ["BrowserUnavailable", "MiB", "browser_form_body", "chunked", "describe_error", "measure_upload_peaks", "multipart_body", "paced_upload", "post_raw",
           "raw_multipart", "upload_concurrently"]

MiB = 1024 * 1024
BOUNDARY = "course-upload-boundary"


def _part_head(filename: str, field: str, boundary: str) -> bytes:
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def raw_multipart(filename: str, content: bytes, field: str = "file",
                  boundary: str = BOUNDARY) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of a one-file multipart body, the filename exactly as given."""
    body = _part_head(filename, field, boundary) + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def post_raw(url: str, filename: str, content: bytes, field: str = "file", timeout: float = 10.0) -> httpx.Response:
    """POST :func:`raw_multipart` to ``url``."""
    body, headers = raw_multipart(filename, content, field)
    return httpx.post(url, content=body, headers=headers, timeout=timeout)


def chunked(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """``body`` as a generator of ``size``-byte pieces: httpx sends it chunked, with no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def multipart_body(size: int, filename: str = "big.bin", field: str = "file",
                   chunk_size: int = MiB) -> tuple[dict[str, str], Iterator[bytes]]:
    """Headers (with an exact Content-Length) and a generator for a one-file multipart body of
    ``size`` bytes. The same block is sent again and again: the client holds ``chunk_size``, not ``size``."""
    head = _part_head(filename, field, BOUNDARY)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = bytes(range(256)) * max(1, chunk_size // 256)

    def body() -> Iterator[bytes]:
        yield head
        remaining = size
        while remaining > 0:
            piece = block if remaining >= len(block) else block[:remaining]
            remaining -= len(piece)
            yield piece
        yield tail

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}",
               "content-length": str(len(head) + size + len(tail))}
    return headers, body()


def upload_concurrently(url: str, size: int, count: int, timeout: float = 60.0) -> list[int]:
    """POST ``count`` uploads of ``size`` bytes at once (one thread and connection each); return the status codes."""
    def one(index: int) -> int:
        headers, body = multipart_body(size, filename=f"big-{index}.bin")
        return httpx.post(url, content=body, headers=headers, timeout=timeout).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def _written_bytes(pid: int) -> int:
    """Bytes the process passed to write()-like system calls so far (``wchar`` in /proc/<pid>/io)."""
    with open(f"/proc/{pid}/io", encoding="ascii") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError(f"wchar not in /proc/{pid}/io")


def measure_upload_peaks(child: ChildServer, path: str, size: int, counts: Iterable[int]) -> list[dict]:
    """Upload to ``child`` (a :func:`course.children.serve_in_child` server): for each ``count``,
    ``count`` files of ``size`` bytes at once to ``path``; wait until the background work is over,
    and report per round:

    ``idle`` (RSS just before), ``peak`` (the kernel's exact peak, ``VmHWM``, reset before the round),
    ``over_idle``, ``written`` (bytes the server process passed to ``write()``: temp files, the
    upload, the log), ``codes`` (status codes) and ``seconds`` (until the last response).
    """
    results = []
    warm_headers, warm_body = multipart_body(64 * 1024, filename="warm-up.bin")
    httpx.post(child.url + path, content=warm_body, headers=warm_headers, timeout=10)
    for count in counts:
        child.wait_idle(quiet=0.2, timeout=10)
        idle, written = child.rss(), _written_bytes(child.pid)
        exact = child.reset_peak()
        started = time.perf_counter()
        codes = upload_concurrently(child.url + path, size, count)
        seconds = time.perf_counter() - started
        child.wait_idle(quiet=0.3, timeout=60)
        peak = child.peak_rss()
        results.append({"uploads": count, "idle": idle, "peak": peak, "over_idle": peak - idle,
                        "written": _written_bytes(child.pid) - written, "codes": codes,
                        "seconds": seconds, "peak_was_reset": exact})
    return results


def paced_upload(url: str, size: int, seconds: float, filename: str | None = None,
                 pieces: int = 50, timeout: float = 30.0) -> dict[str, Any]:
    """Upload ``size`` bytes spread over about ``seconds`` (a slow client); report the ``status``,
    when the ``last byte`` was handed to the socket and when the ``response`` came, in seconds from the
    first byte, and that first byte's ``time.perf_counter()`` (``first byte at``)."""
    filename = filename or f"paced-{uuid.uuid4().hex[:8]}.bin"
    headers, _ = multipart_body(size, filename=filename)
    head, tail = _part_head(filename, "file", BOUNDARY), f"\r\n--{BOUNDARY}--\r\n".encode()
    piece = bytes(range(256)) * max(1, size // pieces // 256)
    marks: dict[str, float] = {}

    def body() -> Iterator[bytes]:
        marks["first byte"] = time.perf_counter()
        yield head
        remaining = size
        while remaining > 0:
            part = piece[:remaining]
            remaining -= len(part)
            yield part
            time.sleep(seconds / pieces)
        yield tail
        marks["last byte"] = time.perf_counter()

    try:
        status: int | str = httpx.post(url, content=body(), headers=headers, timeout=timeout).status_code
    except httpx.TransportError as exc:  # the server answered (a 4xx/5xx) and closed while we were sending
        status = type(exc).__name__
    answered = time.perf_counter()
    start = marks["first byte"]
    return {"status": status, "last byte": marks.get("last byte", answered) - start,
            "response": answered - start, "first byte at": start}


class BrowserUnavailable(RuntimeError):
    """Playwright or chromium is not there (the course only needs it for a few demos)."""


async def browser_form_body(html: str | None = None, timeout: float = 20.0) -> tuple[bytes, str]:
    """Submit a form in headless chromium and return ``(body, content_type)`` exactly as the browser
    sent them. The default form has one ``<input type=file name=file>`` and no file picked. Nothing
    goes over the network: Playwright intercepts the submission (the action is ``http://upload.test/``).
    Raises :class:`BrowserUnavailable` when there is no Playwright or no chromium."""
    try:
        from playwright.async_api import async_playwright

        from course.browser import launch_async
    except ImportError as exc:
        raise BrowserUnavailable(f"playwright is not installed: {exc}") from None
    html = html or ('<form method="post" action="http://upload.test/upload-file/" enctype="multipart/form-data">'
                    '<input type="file" name="file"><button>Send</button></form>')
    sent: dict[str, Any] = {}

    async def capture(route, request) -> None:
        sent["body"], sent["type"] = request.post_data_buffer, request.headers.get("content-type", "")
        await route.fulfill(status=200, body="captured")

    async with async_playwright() as playwright:
        try:
            browser = await launch_async(playwright)  # Debian's chromium (course.browser)
        except Exception as exc:  # no chromium at that path, or it cannot start here
            raise BrowserUnavailable(f"chromium does not start: {str(exc).splitlines()[0]}") from None
        try:
            page = await browser.new_page()
            await page.route("http://upload.test/**", capture)
            await page.set_content(html)
            await page.click("button", timeout=timeout * 1000)
            await page.wait_for_load_state(timeout=timeout * 1000)
        finally:
            await browser.close()
    return sent["body"], sent["type"]


def describe_error(record: logging.LogRecord) -> str:
    """``"in where(): ExceptionName: message"`` for a logged exception (where = the innermost
    function), followed by ``" <- while handling: ..."`` for each exception it interrupted."""
    if not record.exc_info or record.exc_info[1] is None:
        return record.getMessage().strip()
    parts, exc = [], record.exc_info[1]
    while exc is not None and len(parts) < 5:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = tb.tb_frame.f_code.co_name if tb is not None else "?"
        parts.append(f"in {where}(): {type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " <- while handling: ".join(parts)
