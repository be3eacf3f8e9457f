"""Wait for a condition with a timeout: the one polling helper of the course.

Tests and notebooks wait on events with timeouts, never on long sleeps. When there is no event
to wait on (a row in a database, a file on disk, a counter in another thread), poll:

* :func:`wait_until` from synchronous code (a test, a notebook cell that is not ``await``-ing);
* :func:`wait_for_async` from a coroutine (a notebook cell using ``await``, an async test), so
  the event loop keeps running the servers and clients while we wait.

Both return the predicate's last value (truthy or not) instead of raising, so the caller decides
what a timeout means: ``assert wait_until(...)``, or carry on and show what happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.02) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy or
    ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def wait_for_async(predicate: Callable[[], T], timeout: float, interval: float = 0.02) -> T:
    """The same as :func:`wait_until`, sleeping with ``await asyncio.sleep`` so the loop runs meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


__all__ = ["wait_for_async", "wait_until"]
