"""A private Redis for a notebook, a test session or a benchmark.

:func:`start_redis` starts Debian's ``redis-server`` as a child process: on 127.0.0.1 only, on a
free port, with its own temporary ``--dir``, persistence off unless asked for, and stopped by its
PID when the kernel or the test session ends. It never touches a Redis the machine may run on
6379. Starting one under a name that is running stops the old one first (re-running a cell is safe).

Tests get the same server through the pytest fixtures at the bottom of this module
(``redis_server``: one per test session; ``redis_url``: emptied before each test).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from course.children import Child, free_port, start_child

__all__ = ["RedisServer", "RedisUnavailable", "redis_server_path", "start_redis"]

HOST = "127.0.0.1"
INSTALL_HINT = ("Debian's redis-server is needed here: as root, `apt-get install redis-server` "
                "(`make test` and `make lab` do it for you on Debian); macOS: `brew install redis`.")


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` binary on this machine."""


def redis_server_path() -> str | None:
    """Where ``redis-server`` is, or None."""
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if os.access(p, os.X_OK)), None)


class RedisServer:
    """A running private ``redis-server``: :attr:`url`, :meth:`client`, :meth:`stop`, :meth:`kill`,
    :meth:`restart` (same port, same folder: clients configured with the URL find it again)."""

    def __init__(self, name: str, port: int, directory: Path, persistence: bool, owns_directory: bool) -> None:
        self.name = name
        self.port = port
        self.dir = directory
        self.persistence = persistence
        self._owns_directory = owns_directory
        self.child: Child | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.name!r} {self.url} pid={self.pid} {state}>"

    def __str__(self) -> str:
        return self.url

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.alive

    def client(self, **options):
        """A ``redis.Redis`` client for this server (synchronous; ``redis.asyncio`` for async code)."""
        import redis

        return redis.Redis.from_url(self.url, **{"socket_timeout": 5, "decode_responses": True, **options})

    def ping(self) -> bool:
        """True if the server answers PING right now."""
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start (or start again) the server and wait until it answers PING."""
        binary = redis_server_path()
        if binary is None:
            raise RedisUnavailable(INSTALL_HINT)
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.persistence
                       else ["--appendonly", "no"])
        argv = [binary, "--bind", HOST, "--port", str(self.port), "--dir", str(self.dir),
                "--save", "", *persistence, "--protected-mode", "yes", "--daemonize", "no",
                "--logfile", str(self.dir / "redis.log")]
        self.child = start_child(argv, name=f"redis:{self.name}", cwd=self.dir)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if not self.child.alive or time.monotonic() > deadline:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:] if (self.dir / "redis.log").exists() else ""
                self.child.kill()
                raise RuntimeError(f"redis-server did not start on {HOST}:{self.port}:\n{log}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Shut the server down (SIGTERM: with persistence on, it writes its data first)."""
        if self.child is not None:
            self.child.stop(timeout)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, like a crashed host."""
        if self.child is not None:
            self.child.kill()

    def restart(self, down_for: float = 0.0, *, kill: bool = False) -> RedisServer:
        """Stop (or kill), stay down for ``down_for`` seconds, and start again on the same port."""
        self.kill() if kill else self.stop()
        time.sleep(down_for)
        return self.start()

    def remove(self) -> None:
        """Stop the server and delete its temporary folder."""
        self.stop()
        _servers.pop(self.name, None)
        if self._owns_directory:
            shutil.rmtree(self.dir, ignore_errors=True)


_servers: dict[str, RedisServer] = {}


def start_redis(name: str = "redis", *, persistence: bool = False, port: int = 0,
                directory: str | Path | None = None) -> RedisServer:
    """Start a private ``redis-server`` on 127.0.0.1 and return once it answers.

    ``port=0`` picks a free port; ``directory=None`` makes a temporary folder (removed when this
    process exits). ``persistence=True`` turns the append-only file on (every write is fsynced),
    so a restart keeps the data. Raises :class:`RedisUnavailable` when redis-server is not installed.
    """
    previous = _servers.pop(name, None)
    if previous is not None:
        previous.remove()
    owns = directory is None
    folder = Path(tempfile.mkdtemp(prefix=f"course-redis-{name}-")) if owns else Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(name, port or free_port(), folder, persistence, owns_directory=owns)
    try:
        server.start()
    except BaseException:
        server.remove()
        raise
    _servers[name] = server
    return server


def _remove_all() -> None:
    for server in list(_servers.values()):
        server.remove()


# Registered after course.children's own handler, so it runs first (atexit runs last-in, first-out).
atexit.register(_remove_all)


# --- pytest fixtures (tests/conftest.py lists this module in pytest_plugins) -----------------------

try:
    import pytest
except ImportError:  # a notebook without pytest still imports this module
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def redis_server():
        """One private Redis for the test session (each xdist worker has its own session)."""
        try:
            server = start_redis(f"pytest-{os.getpid()}")
        except RedisUnavailable as exc:
            if os.environ.get("CI"):
                pytest.fail(f"CI must run the Redis tests: {exc}", pytrace=False)
            pytest.skip(str(exc))
        yield server
        server.remove()

    @pytest.fixture
    def redis_url(redis_server):
        """The session's Redis, emptied before the test (and started again if a test stopped it)."""
        if not redis_server.running:
            redis_server.start()
        with contextlib.closing(redis_server.client()) as client:
            client.flushall()
        return redis_server.url
