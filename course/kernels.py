"""Run code in a separate, throwaway Jupyter kernel: for demos that may break or kill it.

Notebook 00 shows what the common advice does (``nest_asyncio.apply()`` patches asyncio for
the whole process; a re-run ``asyncio.create_task(server.serve())`` ends the kernel). Those
cells run here, in a kernel of their own, so the notebook's kernel is never harmed::

    with ThrowawayKernel() as kernel:
        runs = kernel.run_cells([
            "import asyncio, sys",
            "asyncio.get_running_loop().call_soon(sys.exit, 3)",  # SystemExit on the kernel's loop
            "print('never printed')",
        ])
    [run.status for run in runs]   # ['ok', 'ok', 'kernel died']
    kernel.exit_code               # 3 (a kernel we had to kill shows -9)

A cell is waited for with a timeout while the kernel process is polled, so a dying kernel is
noticed at once, and the kernel is always shut down when the ``with`` block ends. Its
process output goes to ``process_log``, not into the notebook that started it.
"""

from __future__ import annotations

import queue
import subprocess
import tempfile
import time
from dataclasses import dataclass

from jupyter_client.manager import start_new_kernel

__all__ = ["CellRun", "ThrowawayKernel"]

POLL_INTERVAL = 0.1  # how often a waiting run checks that the kernel process still lives


@dataclass(frozen=True)
class CellRun:
    """What one cell did in the throwaway kernel.

    ``status`` is ``"ok"``, ``"error"`` (the cell raised; ``error`` holds ``"Type: message"``),
    ``"kernel died"`` (the kernel process ended while we waited) or ``"timed out"``.
    ``output`` is the text that arrived while the cell ran, in order: what it printed or
    returned, plus late output of earlier cells (a server task logging, for example).
    """

    code: str
    status: str
    output: str
    error: str = ""


class ThrowawayKernel:
    """A fresh ``python3`` kernel in its own process, shut down when the ``with`` block ends."""

    def __init__(self, kernel_name: str = "python3", startup_timeout: float = 30.0) -> None:
        self.kernel_name = kernel_name
        self.startup_timeout = startup_timeout
        self._manager = None
        self._client = None
        # The kernel process's own stdout/stderr (its start-up banner, fatal tracebacks) go here,
        # not into the notebook that started it.
        self._process_log = tempfile.TemporaryFile()
        self._process: subprocess.Popen | None = None
        self._final_log: str | None = None

    def __enter__(self) -> ThrowawayKernel:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def start(self) -> None:
        self._manager, self._client = start_new_kernel(
            kernel_name=self.kernel_name, startup_timeout=self.startup_timeout,
            stdout=self._process_log, stderr=subprocess.STDOUT,
        )
        self._process = self._manager.provisioner.process

    def shutdown(self, now: bool = True) -> None:
        """End the kernel and free its resources; safe to call twice.

        ``now=True`` kills the process at once. ``now=False`` asks it to shut down the way
        "Restart kernel" does (``atexit`` handlers run), and kills it only after a few seconds.
        """
        if self._manager is not None:
            self._client.stop_channels()
            self._manager.shutdown_kernel(now=now)
            self._manager = self._client = None
        if not self._process_log.closed:
            self._final_log = self.process_log
            self._process_log.close()

    @property
    def alive(self) -> bool:
        return self._manager is not None and self._manager.is_alive()

    @property
    def exit_code(self) -> int | None:
        """The kernel process's exit status once it has ended (``-9``: killed by ``shutdown()``), else ``None``."""
        return None if self._process is None else self._process.poll()

    @property
    def process_log(self) -> str:
        """What the kernel process wrote to its own stdout/stderr (its banner, fatal tracebacks)."""
        if self._final_log is not None:
            return self._final_log
        self._process_log.seek(0)
        return self._process_log.read().decode(errors="replace")

    def run(self, code: str, timeout: float = 10.0) -> CellRun:
        """Execute ``code`` as one cell; return when it finishes, the kernel dies, or ``timeout`` passes."""
        if self._client is None:
            raise RuntimeError("start the kernel first (use `with ThrowawayKernel() as kernel:`)")
        msg_id = self._client.execute(code)
        output: list[str] = []
        error = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._manager.is_alive():
                self._drain(output, wait=0.2)  # messages it sent just before it ended
                return CellRun(code, "kernel died", "".join(output), error)
            try:
                message = self._client.get_iopub_msg(timeout=POLL_INTERVAL)
            except queue.Empty:
                continue
            ours = message["parent_header"].get("msg_id") == msg_id
            kind, content = message["msg_type"], message["content"]
            if kind == "status" and ours and content["execution_state"] == "idle":
                return CellRun(code, "error" if error else "ok", "".join(output), error)
            if kind == "error" and ours:
                error = f"{content['ename']}: {content['evalue']}"
            else:
                output.append(_text_of(message))
        return CellRun(code, "timed out", "".join(output), error)

    def run_cells(self, cells: list[str], timeout: float = 10.0) -> list[CellRun]:
        """Run ``cells`` in order, like "Run All"; stop after the kernel dies or a cell times out."""
        runs = []
        for code in cells:
            runs.append(self.run(code, timeout))
            if runs[-1].status in ("kernel died", "timed out"):
                break
        return runs

    def _drain(self, output: list[str], wait: float) -> None:
        while True:
            try:
                output.append(_text_of(self._client.get_iopub_msg(timeout=wait)))
            except queue.Empty:
                return


def _text_of(message: dict) -> str:
    kind, content = message["msg_type"], message["content"]
    if kind == "stream":
        return content["text"]
    if kind in ("execute_result", "display_data"):
        return content["data"].get("text/plain", "") + "\n"
    return ""
