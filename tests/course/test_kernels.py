"""The throwaway kernel used by notebook 00 for demos that would harm the notebook's own kernel."""

import signal
import time

from course.kernels import ThrowawayKernel


def test_cells_report_output_and_errors_and_a_graceful_shutdown_exits_cleanly():
    with ThrowawayKernel() as kernel:
        printed = kernel.run("print('hello'); 6 * 7")
        raised = kernel.run("1 / 0")
        assert kernel.alive and kernel.exit_code is None
        kernel.shutdown(now=False)  # what "Restart kernel" does: the kernel exits by itself
    assert (printed.status, printed.output) == ("ok", "hello\n42\n")
    assert (raised.status, raised.error) == ("error", "ZeroDivisionError: division by zero")
    assert not kernel.alive and kernel.exit_code == 0


def test_a_kernel_that_dies_is_noticed_at_once_and_its_exit_code_kept():
    with ThrowawayKernel() as kernel:
        started = time.monotonic()
        runs = kernel.run_cells([
            "import asyncio, sys",
            "asyncio.get_running_loop().call_soon(sys.exit, 3)",  # what uvicorn's sys.exit(3) in a task does
            "import time; time.sleep(1); print('never printed')",
            "print('never run')",
        ], timeout=20)
        waited = time.monotonic() - started
    assert [run.status for run in runs] == ["ok", "ok", "kernel died"]  # run_cells stops at the death
    assert "never printed" not in runs[-1].output
    assert waited < 10, "the death is noticed by polling the process, not by waiting for the timeout"
    assert kernel.exit_code == 3


def test_a_hung_cell_times_out_and_the_kernel_is_killed_on_leaving_the_block():
    with ThrowawayKernel() as kernel:
        hung = kernel.run("import time; time.sleep(30)", timeout=0.5)
    assert hung.status == "timed out"
    assert not kernel.alive and kernel.exit_code == -signal.SIGKILL
