"""Processes the course starts on purpose: uvicorn servers with one or several workers, queue workers.

An in-kernel server (:mod:`course.server`) shares the kernel's process. Some lessons need the
opposite: a server whose memory can be read on its own, a web process that can be SIGKILLed
mid-load, ``uvicorn --workers 2``, a queue worker. Each is started here as a CHILD process:

* in its own process group (``start_new_session``), so :meth:`Child.kill` takes down the
  process and everything it forked (uvicorn's workers, taskiq's worker processes) by PID,
  never by name;
* with its output in a temporary log file (a pipe nobody reads could fill and block it);
* registered by ``name``: starting a child under a name that is running stops the old one
  first (re-running a notebook cell is safe), and every child is stopped when the kernel or
  test session exits.

:func:`start_child` runs any argv; :func:`serve_in_child` runs an app factory on uvicorn,
127.0.0.1 only, on a port the child picks and reports. Both return handles that also work as
context managers (the block's end stops the child).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

__all__ = ["Child", "ChildServer", "ChildStartupError", "free_port", "running_children", "serve_in_child",
           "start_child", "stop_all_children"]

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
_FACTORY_ENV, _KWARGS_ENV = "COURSE_CHILD_FACTORY", "COURSE_CHILD_KWARGS"


def free_port() -> int:
    """A port on 127.0.0.1 that is free right now, for a program that cannot bind port 0 and report it
    (redis-server, JupyterLab)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class ChildStartupError(RuntimeError):
    """The child exited, or did not report ready, during start-up. The message ends with its log."""


class Child:
    """A process (group) started by :func:`start_child`."""

    def __init__(self, name: str, process: subprocess.Popen, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} pid={self.pid} {'alive' if self.alive else 'exited'}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def signal(self, sig: int, *, group: bool = True) -> None:
        """Send ``sig`` to the child's whole process group (or to the child alone)."""
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the child to exit; its exit code, or None if it still runs after ``timeout``."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout)
        return None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM to the group (a graceful shutdown), SIGKILL after ``timeout`` s. Returns the exit code."""
        if _registry.get(self.name) is self:
            del _registry[self.name]
        if self.alive:
            self.signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.kill()
        self._kill_leftovers()
        return self.process.poll()

    def kill(self, timeout: float = 5.0) -> int | None:
        """SIGKILL to the whole group: no shutdown code runs, like a crash or the OOM killer."""
        self.signal(signal.SIGKILL)
        code = self.wait(timeout)
        self._kill_leftovers()
        return code

    def _kill_leftovers(self) -> None:
        # Processes of the group that outlived its leader (a worker whose parent was SIGKILLed).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def log_text(self, last: int = 20_000) -> str:
        """The child's stdout and stderr so far (the last ``last`` characters)."""
        try:
            return self.log_path.read_text(errors="replace")[-last:]
        except FileNotFoundError:
            return ""

    def descendants(self) -> list[psutil.Process]:
        """Every process below the child (uvicorn's workers, a worker's subprocesses)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.pid).children(recursive=True)
        return []


class ChildServer(Child):
    """A uvicorn server in a child process: :attr:`url`, :meth:`worker_pids`, memory readings."""

    def __init__(self, name: str, process: subprocess.Popen, log_path: Path, port: int) -> None:
        super().__init__(name, process, log_path)
        self.port = port
        self.url = f"http://{HOST}:{port}"

    def __str__(self) -> str:
        return self.url

    def worker_pids(self) -> list[int]:
        """The PIDs that serve requests: uvicorn's worker processes, or the child itself with one worker."""
        workers = [p.pid for p in self.descendants() if _is_worker(p)]
        return workers or [self.pid]

    def rss(self) -> int:
        """Resident memory of the serving process now, in bytes (one worker)."""
        return _status_bytes(self.pid, "VmRSS")

    def peak_rss(self) -> int:
        """The highest resident memory since start or the last :meth:`reset_peak`, in bytes."""
        return _status_bytes(self.pid, "VmHWM")

    def reset_peak(self) -> bool:
        """Make the kernel restart the peak from the current RSS (``clear_refs`` 5); False if not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def wait_idle(self, quiet: float = 0.3, timeout: float = 30.0) -> bool:
        """Wait until the process used (almost) no CPU for ``quiet`` s: its background work is over."""
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


_registry: dict[str, Child] = {}
_logs: list[Path] = []  # removed when this process exits


def running_children() -> dict[str, Child]:
    """The children this process started that are still registered, by name."""
    return dict(_registry)


def stop_all_children() -> None:
    """Stop every child this process started (also runs when the kernel or test session exits)."""
    for child in list(_registry.values()):
        child.stop(timeout=3)


@atexit.register
def _at_exit() -> None:
    stop_all_children()
    for log in _logs:
        log.unlink(missing_ok=True)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(extra or {})}


def start_child(argv: list[str], *, name: str, env: dict[str, str] | None = None, cwd: str | Path = ROOT) -> Child:
    """Start ``argv`` in its own process group, output to a log file; a running child of the same name
    is stopped first. ``env`` adds to (and overrides) this process's environment; the checkout is on
    ``PYTHONPATH``."""
    process, log_path = _launch(argv, name=name, env=env, cwd=cwd)
    return _register(Child(name, process, log_path))


def serve_in_child(factory: str, *, name: str = "child-server", workers: int = 1,
                   factory_kwargs: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                   start_timeout: float = 30.0, **uvicorn_config: Any) -> ChildServer:
    """Run ``factory(**factory_kwargs)`` (``"package.module:function"``, JSON-able kwargs) on uvicorn in a
    child process, with ``workers`` worker processes sharing one listening socket on 127.0.0.1.

    The child binds port 0 and reports the port it got; this returns once the socket listens
    (connections wait in its backlog until a worker accepts them). ``uvicorn_config`` goes to
    :class:`uvicorn.Config` (JSON-able values, e.g. ``timeout_graceful_shutdown=1``).
    """
    spec = json.dumps({"workers": workers, "config": uvicorn_config})
    child_env = {_FACTORY_ENV: factory, _KWARGS_ENV: json.dumps(factory_kwargs or {}), **(env or {})}
    read_port, write_port = os.pipe()
    try:
        process, log_path = _launch([sys.executable, "-m", "course.children", spec, str(write_port)],
                                    name=name, env=child_env, cwd=ROOT, pass_fds=(write_port,))
    finally:
        os.close(write_port)  # the child holds the only writing end now: EOF if it dies
    with os.fdopen(read_port, "rb") as port_pipe:
        ready, _, _ = select.select([port_pipe], [], [], start_timeout)
        line = port_pipe.readline().decode() if ready else ""
    if not line.startswith("port "):
        failed = ChildServer(name, process, log_path, 0)
        failed.kill()
        raise ChildStartupError(f"the child server {name!r} did not start:\n{failed.log_text(4000)}")
    return _register(ChildServer(name, process, log_path, int(line.split()[1])))


def _launch(argv: list[str], *, name: str, env: dict[str, str] | None, cwd: str | Path,
            pass_fds: tuple[int, ...] = ()) -> tuple[subprocess.Popen, Path]:
    previous = _registry.pop(name, None)
    if previous is not None:
        previous.stop()
    with tempfile.NamedTemporaryFile(prefix=f"course-{_slug(name)}-", suffix=".log", delete=False) as log_file:
        process = subprocess.Popen(argv, cwd=cwd, env=_env(env), stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=log_file, start_new_session=True, pass_fds=pass_fds)
    _logs.append(Path(log_file.name))
    return process, _logs[-1]


def _register(child):
    _registry[child.name] = child
    return child


def factory_from_env():
    """The app of a child server: the factory and kwargs that :func:`serve_in_child` put in the environment.
    (uvicorn's workers import the app by name, so the parameters travel through the environment.)"""
    module_name, _, function_name = os.environ[_FACTORY_ENV].partition(":")
    factory = getattr(importlib.import_module(module_name), function_name)
    return factory(**json.loads(os.environ.get(_KWARGS_ENV, "{}")))


def _child_main(spec_json: str, port_fd: str) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    spec = json.loads(spec_json)
    # IPPROTO_TCP so asyncio sets TCP_NODELAY (see course.server._bind).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    settings = {"log_level": "warning", "access_log": False, **spec["config"]}
    config = uvicorn.Config("course.children:factory_from_env", factory=True, host=HOST,
                            port=sock.getsockname()[1], workers=spec["workers"], **settings)
    if spec["workers"] > 1:  # each worker builds the app; here only check that the factory exists
        module_name, _, function_name = os.environ[_FACTORY_ENV].partition(":")
        getattr(importlib.import_module(module_name), function_name)
    else:
        config.load()  # an import error or a failing factory ends start-up before the port is reported
    with os.fdopen(int(port_fd), "w") as report:
        report.write(f"port {sock.getsockname()[1]}\n")
    server = uvicorn.Server(config)
    if spec["workers"] > 1:
        Multiprocess(config, sockets=[sock]).run()  # restarts a worker that dies
    else:
        server.run(sockets=[sock])


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _is_worker(process: psutil.Process) -> bool:
    # uvicorn starts its workers with multiprocessing's "spawn"; its resource tracker is not one.
    with contextlib.suppress(psutil.Error):
        return any("spawn_main" in part for part in process.cmdline())
    return False


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)[:40]


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
