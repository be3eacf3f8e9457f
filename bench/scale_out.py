"""Lesson 6 measured: the Redis relay across 1, 2 and 4 uvicorn workers against one process without Redis,
and what a Redis restart costs a pub/sub relay and a stream relay.

    .venv/bin/python bench/scale_out.py                         # N = 100 and 1000; 1, 2, 4 workers; 30 rounds
    .venv/bin/python bench/scale_out.py --clients 100 --workers 1 2 --rounds 10
    .venv/bin/python bench/scale_out.py --only-restart          # just the messages lost across a restart

Part 1, time until all N clients have one message. Every server runs in a child process
(``course.children.serve_in_child``) on a private ``redis-server`` (``course.redis_server``):

* ``one process``  lesson 4's app (``l04_broadcast.create_app``), one uvicorn process, no Redis;
* ``relay, W workers``  lesson 6's app (``l06_scale_out.create_app``) under ``--workers W``.

The clients are bench/broadcast.py's lean raw-socket clients (a handshake, then a minimal frame
parser, no compression), spread over ``--client-procs`` processes, each reporting when the last
of its clients had the round's message on ``time.perf_counter()`` (the same clock in every process
on Linux); the sender is one more lean client. Keepalive pings are off. The load average is
printed: this machine may be shared, and a load above its CPU count makes the numbers noisy.

Part 2, messages lost across a Redis restart. A publisher sends a numbered message every 2 ms to
both a pub/sub channel (``PUBLISH``) and the lesson's stream (``publish``: ``XADD MAXLEN ~``);
Redis is killed and restarted on the same port (no persistence) in the middle. Two relays listen:
a pub/sub subscriber that reconnects and re-subscribes with the same backoff as the lesson's
relay, and the lesson's own ``Relay`` (``XREAD`` from its last id), feeding a recorder instead of
WebSocket clients. Lost = acknowledged by Redis (``PUBLISH``/``XADD`` returned) but never delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import sys
import time
from pathlib import Path

from course import fanout, targets

ROOT = Path(__file__).resolve().parent.parent


SERVER_SETTINGS = {"ws_ping_interval": None, "ws_per_message_deflate": False, "timeout_graceful_shutdown": 1}


# ---------------------------------------------------------------- part 1: time until all clients have it

async def time_to_all(server, clients: int, rounds: int, round_timeout: float, client_procs: int) -> dict:
    result = await fanout.measure(server.port, server.worker_pids()[0], clients, rounds, False, round_timeout,
                              client_procs)
    return fanout.summary(result)


def run_part1(args, redis_url: str, package: str) -> list[dict]:
    from course.children import serve_in_child
    from course.relay import relays_ready

    rows = []
    for clients in args.clients:
        configs = [("one process, no Redis", 1, f"{package}.l04_broadcast:create_app", {})]
        configs += [(f"relay, {w} worker{'s' if w > 1 else ''}", w, f"{package}.l06_scale_out:create_app",
                     {"redis_url": redis_url}) for w in args.workers]
        for label, workers, factory, kwargs in configs:
            server = serve_in_child(factory, name="bench-scale-out", workers=workers, factory_kwargs=kwargs,
                                    log_level="error", **SERVER_SETTINGS)
            try:
                if kwargs:  # every worker up, its relay reading Redis, before the clients connect
                    if not asyncio.run(relays_ready(server, workers=workers, timeout=60)):
                        raise RuntimeError(f"{label}: the workers' relays did not come up\n{server.log_text(3000)}")
                row = asyncio.run(time_to_all(server, clients, args.rounds, args.round_timeout, args.client_procs))
            finally:
                server.stop()
            rows.append({"clients": clients, "server": label, **row})
            print(f"  done: N={clients:<5} {label:22} {row['note']}; {fanout.load()}", flush=True)
    return rows


def print_part1(rows: list[dict], args) -> None:
    print(f"\nTime until all N clients have one message ({args.rounds} rounds, clients over "
          f"{args.client_procs} processes)")
    print(f"{'N':>5}  {'server':22} {'median ms':>9} {'p99 ms':>8} {'median / one process':>21}  note")
    for row in rows:
        base = next((r for r in rows if r["clients"] == row["clients"] and r["server"].startswith("one process")),
                    None)
        ratio = (f"{row['median'] / base['median']:.2f}x" if base and None not in (row["median"], base["median"])
                 else "-")
        print(f"{row['clients']:>5}  {row['server']:22} {fanout.ms(row['median']):>9} {fanout.ms(row['p99']):>8} "
              f"{ratio:>21}  {row['note']}")


# ---------------------------------------------------------------- part 2: messages lost across a restart

class Recorder:
    """Stands in for lesson 4's manager: keeps what the relay broadcasts."""

    def __init__(self) -> None:
        self.numbers: set[int] = set()

    def broadcast(self, message: str) -> None:
        import json

        self.numbers.add(int(json.loads(message)["text"].rsplit(" ", 1)[1]))


async def pubsub_relay(url: str, channel: str, received: set[int], first: float, cap: float) -> None:
    """A pub/sub subscriber that reconnects and re-subscribes with the lesson's backoff."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError

    delay = first
    while True:
        client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=1,
                                         retry=Retry(NoBackoff(), 1))
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                delay = first
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        received.add(int(message["data"]))
        except (RedisError, OSError):
            pass
        finally:
            await client.aclose()
        await asyncio.sleep(random.uniform(delay / 2, delay))
        delay = min(2 * delay, cap)


async def restart_losses(package: str, seconds: float, down_for: float, interval: float) -> dict:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError

    from course.redis_server import start_redis

    lesson = targets.load_lesson("l06_scale_out", package)
    logging.getLogger(lesson.__name__).setLevel(logging.ERROR)  # "Redis is unreachable" is the point here
    server = await asyncio.to_thread(start_redis, "bench-scale-out-restart")
    try:
        recorder = Recorder()
        relay = lesson.Relay(server.url, recorder)
        await relay.start()
        via_pubsub: set[int] = set()
        listener = asyncio.create_task(pubsub_relay(server.url, "bench:chat", via_pubsub,
                                                    lesson.BACKOFF_FIRST, lesson.BACKOFF_MAX))
        publisher = aioredis.Redis.from_url(server.url, decode_responses=True, socket_connect_timeout=0.5,
                                            retry=Retry(NoBackoff(), 1))
        acked_pubsub, acked_stream, receivers_zero = set(), set(), 0
        await asyncio.sleep(0.3)  # both relays are listening

        async def restart_midway():
            await asyncio.sleep(seconds / 3)
            await asyncio.to_thread(server.restart, down_for, kill=True)

        restarter = asyncio.create_task(restart_midway())
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            with contextlib.suppress(RedisError, OSError):
                receivers = await publisher.publish("bench:chat", str(n))
                acked_pubsub.add(n)
                receivers_zero += receivers == 0  # Redis took it and handed it to nobody
            with contextlib.suppress(RedisError, OSError):
                await lesson.publish(publisher, f"bench: {n}")
                acked_stream.add(n)
            n += 1
            await asyncio.sleep(interval)
        await restarter
        await asyncio.sleep(max(2.5, 2 * lesson.BACKOFF_MAX))  # let both relays catch up
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await relay.stop()
        await publisher.aclose()
        return {"sent": n, "pub/sub": (len(acked_pubsub), len(acked_pubsub - via_pubsub), receivers_zero),
                "stream": (len(acked_stream), len(acked_stream - recorder.numbers))}
    finally:
        await asyncio.to_thread(server.remove)


def print_part2(result: dict, down_for: float) -> None:
    acked, lost, zero = result["pub/sub"]
    s_acked, s_lost = result["stream"]
    print(f"\nMessages lost across a Redis restart (killed, down {down_for} s, no persistence; "
          f"{result['sent']} sent, one every few ms)")
    print(f"{'relay':34} {'acknowledged':>12} {'never delivered':>15}")
    print(f"{'pub/sub, re-subscribes on error':34} {acked:>12} {lost:>15}   ({zero} PUBLISHed to 0 subscribers)")
    print(f"{'stream, XREAD from the last id':34} {s_acked:>12} {s_lost:>15}")
    print("(sent but not acknowledged: Redis was down; the lesson's endpoint tells the sender instead)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--round-timeout", type=float, default=5.0)
    parser.add_argument("--client-procs", type=int, default=3, help="processes the N clients are spread over")
    parser.add_argument("--target", default="solutions", help="solutions (default), lessons or a directory")
    parser.add_argument("--only-restart", action="store_true", help="skip part 1")
    parser.add_argument("--restart-seconds", type=float, default=4.0)
    parser.add_argument("--down-for", type=float, default=1.0)
    args = parser.parse_args()
    fanout.raise_open_file_limit(max(args.clients) * 2 + 256)

    from course.redis_server import start_redis

    print(f"{os.cpu_count()} CPUs, {fanout.load()} at the start; target: {args.target}", flush=True)
    rows = []
    if not args.only_restart:
        redis_server = start_redis("bench-scale-out")
        try:
            rows = run_part1(args, redis_server.url, targets.package(args.target))
        finally:
            redis_server.remove()
    losses = asyncio.run(restart_losses(args.target, args.restart_seconds, args.down_for, 0.002))
    if rows:
        print_part1(rows, args)
    print_part2(losses, args.down_for)
    if max(os.getloadavg()) > (os.cpu_count() or 1):
        print("\nThis machine is busy (load average above its CPU count): the times are noisy.")
    print(fanout.load(), "at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
