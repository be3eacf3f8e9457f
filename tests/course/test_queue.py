"""course.queue against the stock taskiq-redis stream broker, on the private Redis.

Each consumer is a broker's ``listen()`` generator in this process: taking a message from it is
a worker receiving a job; dropping the generator (and its heartbeats) is that worker dying.
"""

import asyncio
import time

import pytest
from redis.asyncio import Redis
from taskiq_redis import RedisStreamBroker

from course.queue import GROUP, QUEUE, DurableStreamBroker

IDLE = 0.4  # seconds: the brokers' idle time before a pending job may be taken over


def run(scenario):
    asyncio.run(asyncio.wait_for(scenario, 30))


async def take(gen, timeout):
    """The next message from a consumer, or None if none comes within ``timeout`` s."""
    task = asyncio.ensure_future(anext(gen))
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


def stock(url, name):
    return RedisStreamBroker(url, queue_name=QUEUE, consumer_group_name=GROUP, consumer_name=name,
                             consumer_id="0", idle_timeout=int(IDLE * 1000), xread_block=100)


def course_broker(url, name):
    return DurableStreamBroker(url, redeliver_after=IDLE, consumer_name=name)


async def send(url, count):
    async with Redis.from_url(url) as redis:
        for n in range(count):
            await redis.xadd(QUEUE, {b"data": f"job{n}".encode()})


async def pending_of(url):
    async with Redis.from_url(url, decode_responses=True) as redis:
        return {c["name"]: c["pending"] for c in await redis.xinfo_consumers(QUEUE, GROUP)}


async def die(broker, gen):
    """The worker vanishes: no ack, no more heartbeats."""
    for beat in list(getattr(broker, "_beats", ())):
        beat.cancel()
    await gen.aclose()


@pytest.mark.parametrize("kind, taken_over", [("stock", False), ("course", True)])
def test_a_dead_workers_job_on_a_quiet_queue(redis_url, kind, taken_over):
    make = stock if kind == "stock" else course_broker

    async def scenario():
        first, second = make(redis_url, "first"), make(redis_url, "second")
        await first.startup()
        await second.startup()
        try:
            await send(redis_url, 1)
            gen = first.listen()
            assert (await take(gen, 2)).data == b"job0"
            await die(first, gen)
            started = time.monotonic()
            other = second.listen()
            message = await take(other, IDLE * 4)
            if taken_over:
                assert message is not None and message.data == b"job0"
                assert time.monotonic() - started <= IDLE * 2.5
                await message.ack()
            else:
                assert message is None, "the stock broker took the job over on a quiet queue after all"
            await other.aclose()
        finally:
            await first.shutdown()
            await second.shutdown()

    run(scenario())


@pytest.mark.parametrize("kind, held", [("stock", 5), ("course", 1)])
def test_how_many_jobs_a_worker_holds(redis_url, kind, held):
    make = stock if kind == "stock" else course_broker

    async def scenario():
        worker = make(redis_url, "only")
        await worker.startup()
        try:
            await send(redis_url, 5)
            gen = worker.listen()
            assert await take(gen, 2) is not None  # it starts one job...
            assert (await pending_of(redis_url))["only"] == held  # ...and holds this many
            await die(worker, gen)
        finally:
            await worker.shutdown()

    run(scenario())


def test_a_running_job_stays_with_its_live_worker(redis_url):
    async def scenario():
        first, second = course_broker(redis_url, "first"), course_broker(redis_url, "second")
        await first.startup()
        await second.startup()
        try:
            await send(redis_url, 1)
            gen = first.listen()
            message = await take(gen, 2)
            other = second.listen()
            assert await take(other, IDLE * 4) is None, "a live worker's job was taken over"
            await message.ack()
            assert await pending_of(redis_url) == {"first": 0}
            await other.aclose()
            await gen.aclose()
        finally:
            await first.shutdown()
            await second.shutdown()

    run(scenario())
