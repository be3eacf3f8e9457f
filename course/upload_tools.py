"""Plumbing for notebook 02 and ``bench/upload_memory.py``.

* :func:`serve_in_subprocess` runs an app factory on uvicorn in a CHILD process, so its
  memory can be read on its own (an in-kernel server shares the kernel's memory).
* :class:`ChildServer` reads that process's resident memory from ``/proc``: ``VmRSS``
  (now) and ``VmHWM`` (the peak, which the kernel tracks exactly and lets us reset).
* :func:`multipart_body` streams a large upload from a generator, so the client never
  holds the file; :func:`measure_upload_peaks` puts it together.
* :func:`describe_error` sums up a logged exception chain in one line.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

MiB = 1024 * 1024
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


@dataclass
class ChildServer:
    """A uvicorn server running in a child process (see :func:`serve_in_subprocess`)."""

    url: str
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return _status_kib(self.pid, "VmRSS")

    def peak_rss(self) -> int:
        """The highest resident memory since start or the last :meth:`reset_peak`, in bytes."""
        return _status_kib(self.pid, "VmHWM")

    def reset_peak(self) -> bool:
        """Make the kernel restart the peak from the current RSS (``clear_refs`` 5); False if not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def wait_idle(self, quiet: float = 0.3, timeout: float = 30.0) -> bool:
        """Wait until the process has used (almost) no CPU for ``quiet`` seconds: its background work is over."""
        proc = psutil.Process(self.pid)

        def cpu() -> float:
            times = proc.cpu_times()
            return times.user + times.system

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = cpu()
            time.sleep(quiet)
            if cpu() - before < quiet * 0.05:
                return True
        return False

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


@contextlib.contextmanager
def serve_in_subprocess(factory: str, start_timeout: float = 20.0, **kwargs) -> Iterator[ChildServer]:
    """Run ``factory(**kwargs)`` (``"package.module:function"``, JSON-able kwargs) on uvicorn in a
    child process on 127.0.0.1. The child binds port 0 and reports the port it got; the
    process is stopped (by its PID) when the ``with`` block ends."""
    log = tempfile.TemporaryFile()  # the child's log; a pipe nobody reads could fill and block it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "course.upload_tools", factory, json.dumps(kwargs)],
                               stdout=subprocess.PIPE, stderr=log, cwd=ROOT, env=env)
    try:
        ready, _, _ = select.select([process.stdout], [], [], start_timeout)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("port "):
            process.kill()
            process.wait(5)
            log.seek(0)
            raise RuntimeError(f"the child server did not start: {log.read().decode(errors='replace')[-2000:]}")
        child = ChildServer(url=f"http://{HOST}:{int(line.split()[1])}", process=process)
        yield child
    finally:
        if process.poll() is None:
            ChildServer("", process).stop()
        process.stdout.close()
        log.close()


def _child_main(factory: str, kwargs_json: str) -> None:
    import uvicorn

    module_name, _, function_name = factory.partition(":")
    app = getattr(importlib.import_module(module_name), function_name)(**json.loads(kwargs_json))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    print(f"port {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


def multipart_body(size: int, filename: str = "big.bin", field: str = "file",
                   chunk_size: int = MiB) -> tuple[dict[str, str], Iterator[bytes]]:
    """Headers (with an exact Content-Length) and a generator for a one-file multipart body of
    ``size`` bytes. The same 1 MiB block is sent again and again: the client holds 1 MiB, not ``size``."""
    boundary = "course-upload-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = bytes(range(256)) * (chunk_size // 256)

    def body() -> Iterator[bytes]:
        yield head
        remaining = size
        while remaining > 0:
            piece = block if remaining >= len(block) else block[:remaining]
            remaining -= len(piece)
            yield piece
        yield tail

    headers = {"content-type": f"multipart/form-data; boundary={boundary}",
               "content-length": str(len(head) + size + len(tail))}
    return headers, body()


def upload_concurrently(url: str, size: int, count: int, timeout: float = 60.0) -> list[int]:
    """POST ``count`` uploads of ``size`` bytes at once (one thread and connection each); return the status codes."""
    def one(index: int) -> int:
        headers, body = multipart_body(size, filename=f"big-{index}.bin")
        return httpx.post(url, content=body, headers=headers, timeout=timeout).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def measure_upload_peaks(factory: str, path: str, size: int, counts: list[int], **kwargs) -> list[dict]:
    """Start ``factory(**kwargs)`` in a child process; for each ``count``, upload ``count`` files of
    ``size`` bytes at once to ``path``, wait for the background work to end, and report the peak RSS
    over the idle RSS just before (the peak counter is reset before each round)."""
    results = []
    with serve_in_subprocess(factory, **kwargs) as child:
        warm_headers, warm_body = multipart_body(64 * 1024, filename="warm-up.bin")
        httpx.post(child.url + path, content=warm_body, headers=warm_headers, timeout=10)
        for count in counts:
            child.wait_idle(quiet=0.2, timeout=10)
            idle = child.rss()
            exact = child.reset_peak()
            started = time.perf_counter()
            codes = upload_concurrently(child.url + path, size, count)
            seconds = time.perf_counter() - started
            child.wait_idle(quiet=0.3, timeout=60)
            peak = child.peak_rss()
            results.append({"uploads": count, "idle": idle, "peak": peak, "over_idle": peak - idle,
                            "codes": codes, "seconds": seconds, "peak_was_reset": exact})
    return results


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


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
