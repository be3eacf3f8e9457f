"""The course's task queue: taskiq on a Redis stream, fixed so that a worker's death loses nothing.

taskiq-redis's ``RedisStreamBroker`` keeps every job in a Redis *stream* read through a *consumer
group*: a delivered job stays in the group's pending entries list (PEL) until the worker
acknowledges it (``XACK``), and a job left pending too long can be taken over by another worker
(``XAUTOCLAIM``). Measured on taskiq-redis 1.2.4, the stock broker still strands or repeats jobs:

1. it runs ``XAUTOCLAIM`` only right after ``XREADGROUP`` returned *new* messages: on a quiet
   queue a dead worker's job is never taken over;
2. each ``XREADGROUP`` fetches up to 100 messages: a worker that dies strands all it had fetched,
   even those it never started;
3. ``XAUTOCLAIM`` measures idle time from the delivery: a job that runs longer than the idle
   time on a healthy worker is taken over and started a second time elsewhere.

:class:`DurableStreamBroker` fixes the three, and nothing else:

1. every pass of its read loop first reclaims (``XAUTOCLAIM``) one job idle for longer than
   ``redeliver_after`` seconds, then waits for new ones for at most a quarter of that time;
2. it reads one message at a time, and the worker asks for one only when it has a free slot
   (``--max-async-tasks`` = ``concurrency``, ``--max-prefetch 0``): it holds no more jobs than it runs;
3. while a job runs, a heartbeat touches its pending entry every ``redeliver_after / 4`` seconds
   (``XCLAIM ... JUSTID`` to itself, which resets the idle time), so only a job whose worker
   stopped beating -- a dead worker, or one whose event loop is blocked -- is ever reclaimed (a
   worker's heartbeat never takes a job back from the worker that took it over).

A reclaimed job runs again from the start: delivery is *at least once*, so jobs must be idempotent.

The group is created at stream position ``0``, so jobs sent before any worker started are kept.

Run a worker (one process; :func:`worker_argv` builds this argv for a lesson module)::

    python -m course.queue solutions.l05_durable_work --redis-url redis://127.0.0.1:PORT/0 \\
        --db-path /tmp/jobs.db --redeliver-after 2 --concurrency 1

It imports the module (which declares its tasks with ``taskiq.shared_task``) and runs taskiq's own
worker loop (``taskiq.cli.worker.run.start_listen``) on a :class:`DurableStreamBroker`. Inside a task,
``state: TaskiqState = TaskiqDepends()`` gives ``state.redis`` (``redis.asyncio.Redis``, text
responses) and ``state.db_path`` (``pathlib.Path``). SIGTERM lets running jobs finish (at most
``--drain`` seconds); SIGKILL is a crash: its jobs are reclaimed after ``redeliver_after``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskiq import AckableMessage, TaskiqEvents, TaskiqState
from taskiq_redis import RedisStreamBroker

__all__ = ["DurableStreamBroker", "GROUP", "QUEUE", "queue_state", "send_again", "worker_argv"]

log = logging.getLogger("course.queue")

QUEUE = "course:jobs"  # the stream's key
GROUP = "course-workers"  # the consumer group every worker joins
READY_LOG = "listening"  # the worker's start-up log line ends with it (course.jobplots.drain_rate waits for it)

# "touch" resets the idle time of a pending entry (XCLAIM to ourselves; JUSTID keeps the delivery
# count), but only while the entry is still ours: a worker whose loop was blocked for too long
# must not take back a job another worker has taken over. "ack" acknowledges the entry whoever
# holds it now: the job is done, and the other worker's run of it is a duplicate. Both return 1
# if the entry was ours, 0 if another worker's, -1 if it was acknowledged already.
_PENDING_ENTRY = """
local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
local ours = -1
if #entry > 0 then ours = (entry[1][2] == ARGV[2]) and 1 or 0 end
if ARGV[4] == 'ack' then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
elseif ours == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
end
return ours
"""


class DurableStreamBroker(RedisStreamBroker):
    """A ``RedisStreamBroker`` that reclaims on a quiet queue, prefetches nothing, and keeps a
    running job's claim alive (see the module's docstring).

    ``redeliver_after``: seconds a pending job may go without a heartbeat before another worker
    takes it over. The web process uses the same class only to send (``kiq``).
    """

    def __init__(self, url: str, *, redeliver_after: float = 30.0, queue_name: str = QUEUE,
                 consumer_group_name: str = GROUP, consumer_name: str | None = None, **kwargs) -> None:
        if redeliver_after <= 0:
            raise ValueError("redeliver_after must be positive")
        self.redeliver_after = redeliver_after
        self.idle_ms = max(1, round(redeliver_after * 1000))
        self.beat_every = redeliver_after / 4
        super().__init__(
            url,
            queue_name=queue_name,
            consumer_group_name=consumer_group_name,
            consumer_name=consumer_name or f"worker-{uuid.uuid4().hex[:8]}",
            consumer_id="0",  # a group created after jobs were sent still gets them
            idle_timeout=self.idle_ms,
            xread_count=1,
            xread_block=max(10, min(2000, self.idle_ms // 4)),
            **kwargs,
        )
        self._beats: set[asyncio.Task[None]] = set()

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """One message per request: first a job whose worker stopped beating, else a new one."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                try:
                    reclaimed = await self._reclaim_one(redis)
                    fetched = None if reclaimed else await redis.xreadgroup(
                        self.consumer_group_name, self.consumer_name, {self.queue_name: ">"},
                        count=1, block=self.block, noack=False)
                except (ConnectionError, TimeoutError, RedisError) as exc:
                    await self._wait_for_redis(exc)
                    continue
                if reclaimed is not None:
                    yield reclaimed
                for _stream, messages in fetched or ():
                    for message_id, fields in messages:
                        yield self._ackable(message_id, fields)

    async def _wait_for_redis(self, exc: Exception) -> None:
        """Redis went away (or lost the group, e.g. restarted without persistence): wait, declare again."""
        log.warning("queue unavailable (%s: %s); trying again", type(exc).__name__, exc)
        await asyncio.sleep(min(1.0, self.redeliver_after / 4))
        with contextlib.suppress(ConnectionError, TimeoutError, RedisError):
            await self._declare_consumer_group()

    async def _reclaim_one(self, redis: Redis) -> AckableMessage | None:
        """Scan the pending entries once (XAUTOCLAIM looks at a few per call) for one idle too long."""
        cursor = "0-0"
        while True:
            cursor, claimed, *_ = await redis.xautoclaim(
                self.queue_name, self.consumer_group_name, self.consumer_name,
                min_idle_time=self.idle_ms, start_id=cursor, count=1)
            cursor = _text(cursor)
            if claimed:
                message_id, fields = claimed[0]
                log.warning("took over %s: its worker sent no heartbeat for %.1f s",
                            _text(message_id), self.redeliver_after)
                return self._ackable(message_id, fields)
            if cursor == "0-0":
                return None

    def _ackable(self, message_id: bytes, fields: dict) -> AckableMessage:
        beat = asyncio.create_task(self._heartbeat(message_id), name=f"heartbeat {_text(message_id)}")
        self._beats.add(beat)
        beat.add_done_callback(self._beats.discard)

        async def ack() -> None:
            beat.cancel()
            ours = await self._pending_entry(message_id, "ack")
            if ours == 0:
                log.warning("finished %s after another worker took it over: it runs twice", _text(message_id))
            elif ours < 0:
                log.warning("finished %s, which another worker had finished already: it ran twice", _text(message_id))

        return AckableMessage(data=fields[b"data"], ack=ack)

    async def _pending_entry(self, message_id: bytes, action: str) -> int:
        async with Redis(connection_pool=self.connection_pool) as redis:
            script = redis.register_script(_PENDING_ENTRY)
            return await script(keys=[self.queue_name],
                                args=[self.consumer_group_name, self.consumer_name, message_id, action])

    async def _heartbeat(self, message_id: bytes) -> None:
        """Keep the job's pending entry fresh while it runs here; stop if it is no longer ours."""
        while True:
            await asyncio.sleep(self.beat_every)
            try:
                ours = await self._pending_entry(message_id, "touch")
            except Exception as exc:  # Redis away for a moment: try again at the next beat
                log.warning("heartbeat for %s failed: %s", _text(message_id), exc)
                continue
            if ours != 1:
                log.warning("%s is no longer ours: another worker took it over", _text(message_id))
                return

    async def shutdown(self) -> None:
        for beat in list(self._beats):
            beat.cancel()
        await super().shutdown()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def queue_state(redis_url: str, queue_name: str = QUEUE, group: str = GROUP) -> dict:
    """What the queue holds now: ``length`` (entries in the stream), ``pending`` (delivered, not
    acknowledged), and per consumer its pending count and idle time in ms. Synchronous, for cells.

    (Redis 7.0 lists a consumer only once it has been given a message: an idle new worker is not there.)"""
    import redis

    with contextlib.closing(redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)) as client:
        if not client.exists(queue_name):
            return {"length": 0, "pending": 0, "consumers": {}}
        groups = {g["name"]: g for g in client.xinfo_groups(queue_name)}
        consumers = ({c["name"]: {"pending": c["pending"], "idle_ms": c["idle"]}
                      for c in client.xinfo_consumers(queue_name, group)} if group in groups else {})
        return {"length": client.xlen(queue_name), "pending": groups.get(group, {}).get("pending", 0),
                "consumers": consumers}


def send_again(redis_url: str, needle: str, queue_name: str = QUEUE) -> int:
    """Put a copy of every queued message that mentions ``needle`` (a job id) back on the queue.

    This is what a worker that dies after the work but before its ``XACK`` causes: the same job
    is delivered, and run, a second time. Returns how many messages were copied.
    """
    import redis

    with contextlib.closing(redis.Redis.from_url(redis_url, socket_timeout=5)) as client:
        copies = [fields for _id, fields in client.xrange(queue_name)
                  if needle.encode() in fields.get(b"data", b"")]
        for fields in copies:
            client.xadd(queue_name, fields)
    return len(copies)


def worker_argv(module: str, *, redis_url: str, db_path: str | Path, redeliver_after: float,
                concurrency: int = 1, drain: float = 5.0) -> list[str]:
    """The argv of one worker process for the tasks in ``module`` (run it with the checkout as cwd)."""
    return [sys.executable, "-m", "course.queue", module, "--redis-url", redis_url,
            "--db-path", str(db_path), "--redeliver-after", repr(float(redeliver_after)),
            "--concurrency", str(concurrency), "--drain", repr(float(drain))]


def main(argv: list[str] | None = None) -> None:
    from taskiq.cli.worker.args import WorkerArgs
    from taskiq.cli.worker.run import start_listen

    parser = argparse.ArgumentParser(prog="python -m course.queue", description="one queue worker process")
    parser.add_argument("module", help="the module that declares the tasks (taskiq.shared_task)")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--db-path", required=True, type=Path)
    parser.add_argument("--redeliver-after", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=1, help="jobs this worker runs at once")
    parser.add_argument("--drain", type=float, default=5.0, help="on SIGTERM, wait this long for running jobs")
    parser.add_argument("--log-level", default="INFO")
    options = parser.parse_args(argv)
    logging.basicConfig(level=options.log_level,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")

    broker = DurableStreamBroker(options.redis_url, redeliver_after=options.redeliver_after)
    broker.state.db_path = options.db_path

    @broker.on_event(TaskiqEvents.WORKER_STARTUP)
    async def open_redis(state: TaskiqState) -> None:
        state.redis = Redis.from_url(options.redis_url, decode_responses=True)

    @broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
    async def close_redis(state: TaskiqState) -> None:
        await state.redis.aclose()

    args = WorkerArgs.from_cli([
        "course.queue:unused", options.module,
        "--max-async-tasks", str(options.concurrency), "--max-prefetch", "0",
        "--ack-type", "when_saved", "--wait-tasks-timeout", str(options.drain),
        "--log-level", options.log_level,
    ])
    args.broker = broker  # taskiq takes a broker instance here as well as an import path
    log.info("worker %s: %s, redeliver after %.2f s, %d at once; %s",
             broker.consumer_name, options.module, options.redeliver_after, options.concurrency, READY_LOG)
    start_listen(args)


if __name__ == "__main__":
    main()
