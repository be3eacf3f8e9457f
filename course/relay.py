"""Plumbing for lesson 6 (one feed across worker processes through Redis): clients and probes.

Used by notebook 06, lesson 6's graded checks and ``bench/scale_out.py``; a learner need not read it.

* :func:`worker_of` tells which worker process of a :class:`course.children.ChildServer` holds a
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
from collections import Counter
from collections.abc import Iterable
from typing import Any

import psutil

from course.wsclients import Listener

__all__ = ["close_all", "counts", "feed", "open_on_workers", "texts", "wait_all", "worker_of", "workers_of"]


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


def worker_of(server, listener: Listener) -> int | None:
    """The PID of the worker process that holds ``listener``'s connection."""
    return workers_of(server, [listener])[0]


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
