"""Plumbing for lesson 6 (one feed across worker processes through Redis): clients and probes.

Used by notebook 06, lesson 6's graded checks and ``bench/scale_out.py``; a learner need not read it.

* :func:`workers_of` tells which worker process of a :class:`course.children.ChildServer` holds each
  client's connection, from the outside (the server's sockets, read with psutil), so the feed's
  messages need no debugging field.
* :func:`open_on_workers` opens clients until every worker holds at least ``per_worker`` of them.
* :func:`feed` parses a :class:`course.wsclients.Listener`'s JSON messages; :func:`wait_all`
  waits until every listener has a number of messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import psutil

from course.wsclients import Listener

__all__ = ["close_all", "code_of", "counts", "feed", "open_on_workers", "relays_ready", "texts", "time_to_all", "wait_all",
           "workers_of"]


def _server_side_ports(pid: int) -> dict[int, int]:
    """``{client port: pid}`` for the established TCP connections that process ``pid`` holds."""
    with contextlib.suppress(psutil.Error):
        return {conn.raddr.port: pid for conn in psutil.Process(pid).net_connections(kind="tcp")
                if conn.raddr and conn.status == psutil.CONN_ESTABLISHED}
    return {}


def workers_of(server, listeners: Iterable[Listener]) -> list[int | None]:
    """The PID of the worker that holds each listener's connection (None if none is found)."""
    ports: dict[int, int] = {}
    for pid in server.worker_pids():
        ports.update(_server_side_ports(pid))
    return [ports.get(listener.connection.local_address[1]) for listener in listeners]


async def open_on_workers(url: str, server, *, per_worker: int = 2, max_clients: int = 60,
                          **options: Any) -> tuple[list[Listener], list[int]]:
    """Open clients on ``url`` until each of ``server``'s workers holds ``per_worker`` of them.

    The kernel hands each new connection to whichever worker accepts first, so this may take a
    few more clients than ``per_worker * workers``; it stops at ``max_clients`` whatever happened.
    Returns the listeners and, for each, its worker's PID. ``options`` go to ``Listener.open``.
    """
    workers = server.worker_pids()
    listeners: list[Listener] = []
    while len(listeners) < max_clients:
        listeners.append(await Listener.open(url, **options))
        landed = Counter(pid for pid in workers_of(server, listeners) if pid is not None)
        if all(landed[pid] >= per_worker for pid in workers):
            break
    return listeners, workers_of(server, listeners)


async def relays_ready(server, workers: int = 2, timeout: float = 8.0) -> bool:
    """True once ``workers`` worker processes answered lesson 6's ``GET /relay`` with their relay reading
    Redis. Each request opens a new connection, so it may land on any worker."""
    import httpx

    seen: dict[int, bool] = {}
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=server.url, timeout=1, headers={"Connection": "close"}) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                state = (await http.get("/relay")).json()
                seen[state["pid"]] = state["connected"]
            if len(seen) >= workers and all(seen.values()):
                return True
            await asyncio.sleep(0.05)
    return False


def feed(listener: Listener) -> list[dict]:
    """The listener's messages, parsed as JSON (a message that is not JSON becomes ``{"raw": ...}``)."""
    parsed = []
    for raw in listener.messages:
        try:
            value = json.loads(raw)
        except ValueError:
            value = {"raw": raw}
        parsed.append(value if isinstance(value, dict) else {"raw": raw})
    return parsed


def texts(listener: Listener) -> list[str]:
    """The ``text`` of each feed message the listener got (errors and others left out)."""
    return [m["text"] for m in feed(listener) if "text" in m]


def counts(listeners: Iterable[Listener]) -> list[int]:
    return [len(listener.messages) for listener in listeners]


async def wait_all(listeners: Iterable[Listener], count: int, timeout: float) -> bool:
    """True once every listener has at least ``count`` messages; False after ``timeout`` s."""
    listeners = list(listeners)
    return all(await asyncio.gather(*(listener.wait_for(count, timeout) for listener in listeners)))


async def close_all(listeners: Iterable[Listener]) -> None:
    await asyncio.gather(*(listener.close() for listener in listeners), return_exceptions=True)


async def time_to_all(listeners: list[Listener], rounds: int, *, timeout: float = 2.0, text: str = "tick") -> list[float]:
    """Round after round, one listener (each in turn) sends a message; the seconds until *every*
    listener has it. Stops early (fewer times) at the first round that does not reach everyone."""
    times = []
    for round_ in range(rounds):
        before = counts(listeners)
        sent = time.perf_counter()
        await listeners[round_ % len(listeners)].send(f"{text} {round_}")
        arrived = await asyncio.gather(*(l.wait_for(n + 1, timeout) for l, n in zip(listeners, before)))
        if not all(arrived):
            break
        times.append(max(l.arrivals[n] for l, n in zip(listeners, before)) - sent)
    return times


def code_of(function) -> str:
    """``function``'s source without its docstring (the notebook shows the code, the file has the TODO text)."""
    import ast
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(function))
    body = ast.parse(source).body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines = source.splitlines()
        first, last = body[0].lineno - 1, body[0].end_lineno
        source = "\n".join(lines[:first] + lines[last:]) + "\n"
    return source
