"""Child processes started by the course: servers with one or two workers, stopped and killed by PID."""

import os
import signal

import httpx
import psutil
import pytest

from course.children import ChildStartupError, running_children, serve_in_child, start_child
from course.waiting import wait_until


def test_a_child_server_serves_on_loopback_and_stops_by_pid():
    with serve_in_child("fastapi:FastAPI", name="t-one", factory_kwargs={"title": "child"}) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/openapi.json", timeout=10).json()["info"]["title"] == "child"
        assert server.worker_pids() == [server.pid]
    assert not server.alive and "t-one" not in running_children()


def test_two_workers_share_the_port_and_a_killed_worker_is_replaced():
    server = serve_in_child("fastapi:FastAPI", name="t-two", workers=2)
    try:
        for _ in range(5):
            assert httpx.get(server.url + "/openapi.json", timeout=10).status_code == 200
        assert wait_until(lambda: len(server.worker_pids()) == 2, timeout=10)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(), timeout=10)
        workers = server.worker_pids()
    finally:
        server.kill()
    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    assert wait_until(lambda: all(gone(pid) for pid in workers), timeout=5), "kill() left a worker running"



def test_a_factory_that_fails_is_reported_with_its_log():
    with pytest.raises(ChildStartupError, match="No module named 'no_such_module'"):
        serve_in_child("no_such_module:create_app", name="t-bad")


def test_the_same_name_replaces_the_old_child():
    first = start_child(["sleep", "30"], name="t-sleep")
    second = start_child(["sleep", "30"], name="t-sleep")
    try:
        assert not first.alive and second.alive
    finally:
        second.stop()
    assert second.returncode == -signal.SIGTERM
