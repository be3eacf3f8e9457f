"""The in-kernel server runner: re-runs, taken ports, stop(), both modes."""

import asyncio
import subprocess
import sys
import socket
import threading

import httpx
import pytest
from fastapi import FastAPI

from course.server import PortInUseError, running_servers, serve_in_thread, serve_on_loop


@pytest.fixture
def app():
    app = FastAPI()

    @app.get("/")
    def root():
        return {"ok": True}

    return app


def can_bind(port: int) -> bool:
    """What a new server does: bind with SO_REUSEADDR (TIME_WAIT connections don't block it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_thread_mode_serves_a_sync_client_on_loopback(app):
    server = serve_in_thread(app, name="t-sync")
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        assert httpx.get(server.url, timeout=5).json() == {"ok": True}
    finally:
        server.stop()


def test_rerun_with_same_name_replaces_the_old_server(app):
    first = serve_in_thread(app, name="t-rerun")
    second = serve_in_thread(app, name="t-rerun", port=first.port)  # same port: no "address in use"
    try:
        assert not first.running
        assert running_servers()["t-rerun"] is second
        assert httpx.get(second.url, timeout=5).json() == {"ok": True}
    finally:
        second.stop()


def test_a_taken_port_raises_a_clear_error(app):
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"Port {port} .* another program"):
            serve_in_thread(app, name="t-taken", port=port)
    assert "t-taken" not in running_servers()


def test_stop_frees_the_port_and_leaves_no_thread(app):
    server = serve_in_thread(app, name="t-stop")
    httpx.get(server.url, timeout=5)
    server.stop()
    assert can_bind(server.port)
    assert not any(t.name == "uvicorn:t-stop" for t in threading.enumerate())
    assert "t-stop" not in running_servers()


def test_loop_mode_serves_awaited_clients_and_reruns(app):
    async def scenario():
        first = await serve_on_loop(app, name="t-loop")
        second = await serve_on_loop(app, name="t-loop", port=first.port)
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(second.url)).json() == {"ok": True}
        await second.aclose()
        assert can_bind(second.port) and not second.running

    asyncio.run(scenario())


def test_threads_are_daemons_so_a_kernel_can_exit(app):
    server = serve_in_thread(app, name="t-daemon")
    try:
        assert server._thread.daemon
    finally:
        server.stop()


def test_a_process_with_a_running_server_exits_cleanly():
    """Like a kernel shutting down: no non-daemon thread keeps it alive, atexit stops the server."""
    script = (
        "from fastapi import FastAPI\n"
        "from course import serve_in_thread\n"
        "server = serve_in_thread(FastAPI(), name='left-running')\n"
        "print(server.port)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert can_bind(int(proc.stdout))


def test_captured_log_collects_a_background_task_error_and_can_wait_for_it():
    from fastapi import BackgroundTasks

    from course.server import captured_log

    app = FastAPI()

    def explode():
        raise ValueError("task failed")

    @app.post("/")
    def schedule(background_tasks: BackgroundTasks):
        background_tasks.add_task(explode)
        return {"accepted": True}

    server = serve_in_thread(app, name="t-log")
    try:
        with captured_log() as server_log:
            assert httpx.post(server.url, timeout=5).status_code == 200
            assert server_log.wait(1, timeout=5)
        assert server_log[0].exc_info[0] is ValueError
    finally:
        server.stop()
