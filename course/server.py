"""Run a FastAPI app on a real uvicorn server inside a Jupyter kernel (or a test).

Two ways to run, because a kernel already owns a running event loop:

* ``serve_in_thread(app)``: uvicorn gets its own loop in a daemon thread.
  Plain synchronous clients (``httpx.get``) work, and so does ``await``.
* ``await serve_on_loop(app)``: uvicorn shares the kernel's loop. Only
  ``await``-ed clients work; a synchronous ``httpx.get`` would block the very
  loop that has to answer it (notebook 00 shows that deadlock on purpose).

Both bind the socket themselves before uvicorn starts, so a port that is taken
raises :class:`PortInUseError` here instead of uvicorn calling ``sys.exit(3)``
inside the kernel. Starting a server under a name that is already running
stops the old one first, so re-running a cell is always safe.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = [
    "PortInUseError",
    "RunningServer",
    "ServerStartupError",
    "CapturedLog",
    "captured_log",
    "running_servers",
    "serve_in_thread",
    "serve_on_loop",
    "stop_all",
]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0


class PortInUseError(OSError):
    """The requested port is held by something that is not one of our servers."""


class ServerStartupError(RuntimeError):
    """uvicorn gave up during start-up (for example, the app's lifespan failed)."""


class _KernelFriendlyServer(uvicorn.Server):
    """uvicorn.Server that leaves signals alone and reports when it is ready."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self.loop: asyncio.AbstractEventLoop | None = None

    def capture_signals(self):  # noqa: D102 - the kernel owns SIGINT ("Interrupt kernel")
        return contextlib.nullcontext()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started:
            self._on_ready()


@dataclass
class RunningServer:
    """A started server: its ``url``, and ``stop()`` to free the port."""

    name: str
    mode: str
    url: str
    port: int
    server: _KernelFriendlyServer = field(repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _task: asyncio.Task | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.url

    @property
    def running(self) -> bool:
        if self._thread is not None:
            return self._thread.is_alive()
        return self._task is not None and not self._task.done()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting connections now, then let uvicorn shut down.

        The listening socket is closed before this returns, in both modes, so
        the port is free at once. In thread mode this also waits for the thread.
        """
        if _registry.get(self.name) is self:
            del _registry[self.name]
        self.server.should_exit = True
        if self._thread is not None:
            loop = self.server.loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # loop closed in between
                    loop.call_soon_threadsafe(_close_listeners, self.server)
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(timeout)
        else:
            _close_listeners(self.server)


    async def aclose(self, timeout: float = 5.0) -> None:
        """``stop()``, then wait until uvicorn has finished shutting down (both modes)."""
        self.stop(timeout)
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout)


_registry: dict[str, RunningServer] = {}


def running_servers() -> dict[str, RunningServer]:
    """The servers started by this process that are still registered, by name."""
    return dict(_registry)


def stop_all() -> None:
    """Stop every server this process started (also runs when the kernel exits)."""
    for running in list(_registry.values()):
        running.stop()


atexit.register(stop_all)


def _close_listeners(server: _KernelFriendlyServer) -> None:
    for listener in getattr(server, "servers", []):
        listener.close()


def _bind(port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets that say they are TCP, and
    # without it loop-mode responses (headers and body written separately) wait ~40 ms for delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        holder = next((r.name for r in _registry.values() if r.port == port), None)
        who = f"the course server named {holder!r}" if holder else "another program"
        raise PortInUseError(
            exc.errno,
            f"Port {port} on {HOST} is already taken by {who}. "
            "Stop it, pick another port, or pass port=0 to get any free port.",
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _prepare(app: Any, name: str, port: int, **config: Any):
    previous = _registry.pop(name, None)
    if previous is not None:
        previous.stop()
    sock = _bind(port)
    settings = {"log_level": "warning", "access_log": False, "timeout_graceful_shutdown": 2}
    settings.update(config)
    return sock, uvicorn.Config(app, host=HOST, port=sock.getsockname()[1], **settings)


async def _serve(server: _KernelFriendlyServer, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn's way to give up; must not end the kernel
        raise ServerStartupError(f"uvicorn stopped during start-up (exit code {exc.code}); see the log above") from None
    finally:
        sock.close()


def _register(name: str, mode: str, sock: socket.socket, server, **handle: Any) -> RunningServer:
    port = sock.getsockname()[1]
    running = RunningServer(name=name, mode=mode, url=f"http://{HOST}:{port}", port=port, server=server, **handle)
    _registry[name] = running
    return running


def serve_in_thread(app: Any, *, name: str = "app", port: int = 0, **config: Any) -> RunningServer:
    """Start ``app`` in a daemon thread with its own event loop; return once it accepts requests.

    Extra keyword arguments go to :class:`uvicorn.Config` (for example ``ws_max_size``).
    """
    sock, cfg = _prepare(app, name, port, **config)
    ready = threading.Event()
    server = _KernelFriendlyServer(cfg, on_ready=ready.set)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=cfg.get_loop_factory()) as runner:
                runner.run(_serve(server, sock))
        except BaseException as exc:  # reported to the caller, not lost in the thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name=f"uvicorn:{name}", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT) or failure:
        server.should_exit = True
        thread.join(1)
        sock.close()
        if failure:
            raise failure[0]
        raise ServerStartupError(f"server {name!r} did not start within {START_TIMEOUT} s")
    return _register(name, "thread", sock, server, _thread=thread)


async def serve_on_loop(app: Any, *, name: str = "app", port: int = 0, **config: Any) -> RunningServer:
    """Start ``app`` on the running event loop (the kernel's); return once it accepts requests.

    Use ``await``-ed clients only (``httpx.AsyncClient``, ``websockets``): a
    synchronous call from the same thread blocks the loop the server needs.
    """
    sock, cfg = _prepare(app, name, port, **config)
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    server = _KernelFriendlyServer(cfg, on_ready=lambda: ready.done() or ready.set_result(None))
    task = loop.create_task(_serve(server, sock), name=f"uvicorn:{name}")
    done, _ = await asyncio.wait({task, ready}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises ServerStartupError
        raise ServerStartupError(f"server {name!r} stopped during start-up")
    if ready not in done:
        server.should_exit = True
        raise ServerStartupError(f"server {name!r} did not start within {START_TIMEOUT} s")
    return _register(name, "loop", sock, server, _task=task)


class CapturedLog(list):
    """The log records :func:`captured_log` collected; ``wait()`` blocks until enough arrived."""

    def __init__(self) -> None:
        super().__init__()
        self._arrived = threading.Condition()

    def add(self, record: logging.LogRecord) -> None:
        with self._arrived:
            self.append(record)
            self._arrived.notify_all()

    def wait(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` records are here, or ``timeout`` seconds; say which."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self) >= count, timeout)


class _Collect(logging.Handler):
    def __init__(self, into: CapturedLog, level: int) -> None:
        super().__init__(level)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.add(record)


@contextlib.contextmanager
def captured_log(*names: str, level: int = logging.ERROR) -> Iterator[CapturedLog]:
    """Collect what the named loggers (default: ``uvicorn.error``, where uvicorn reports an
    exception from an endpoint or a background task) log at ``level`` or above, instead of
    printing it. Records keep their ``exc_info``: ``logging.Formatter().format(record)``
    gives the text with its traceback.
    """
    captured = CapturedLog()
    handler = _Collect(captured, level)
    loggers = [logging.getLogger(name) for name in names or ("uvicorn.error",)]
    propagate = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield captured
    finally:
        for logger, previous in zip(loggers, propagate):
            logger.removeHandler(handler)
            logger.propagate = previous
