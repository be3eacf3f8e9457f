"""How long until every client has a broadcast message: the usual manager, the lesson's, websockets.broadcast().

    .venv/bin/python bench/broadcast.py                  # N = 100 and 1000, 20 broadcasts each
    .venv/bin/python bench/broadcast.py --clients 100 --rounds 10 --target lessons

Each server runs in its own subprocess (this script with ``--serve``), on 127.0.0.1 and a
free port, so the server and the clients do not share an event loop or a GIL; all clients
run on one event loop here. Servers:

* ``usual``      the tutorial ``UsualConnectionManager`` on uvicorn (``create_usual_app``);
* ``lesson``     the lesson's ``ConnectionManager`` on uvicorn (``create_app``);
* ``websockets`` a plain ``websockets`` server that calls ``websockets.broadcast()``.

One round: client 0 sends a short text; the round's time runs from that send until the
last of the N clients has the message. Rounds are sequential (the next starts when all
clients have the previous one, or after ``--round-timeout``).

"With one stuck client": before the N clients connect, a client that never reads
(``course.wsclients.stuck_client``) connects and a filler client broadcasts 4 MB of
large messages, enough to fill the stuck client's socket buffers; then the N clients
connect and the rounds run as before. A configuration in which a round times out is
reported as stalled and its remaining rounds are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KINDS = ("usual", "lesson", "websockets")
FILLER = "f" * 64_000
FILLER_MESSAGES = 64  # 4 MB: more than the kernel buffers between the server and a stuck client hold


# ---------------------------------------------------------------- servers (subprocess side)

async def serve_websockets() -> None:
    from websockets.asyncio.server import broadcast, serve
    from websockets.exceptions import ConnectionClosed

    connections = set()

    async def handler(websocket):
        name = "guest"
        connections.add(websocket)
        try:
            async for message in websocket:
                broadcast(connections, f"{name}: {message}")
        except ConnectionClosed:  # the bench aborts its clients
            pass
        finally:
            connections.discard(websocket)

    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


def serve(kind: str, target: str) -> None:
    if kind == "websockets":
        asyncio.run(serve_websockets())
        return
    import course

    lesson = importlib.import_module(f"{target}.l04_broadcast")
    logging.getLogger(lesson.__name__).setLevel(logging.ERROR)  # "dropping a client" is expected here
    app = lesson.create_usual_app() if kind == "usual" else lesson.create_app()
    server = course.serve_in_thread(app, name=f"bench-{kind}")
    print(f"PORT {server.port}", flush=True)
    sys.stdin.read()  # until the parent closes stdin
    server.stop(timeout=2)


@contextlib.contextmanager
def server_process(kind: str, target: str):
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--target", target],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the {kind} server did not start: {line!r}")
        yield f"ws://127.0.0.1:{int(line.split()[1])}/ws"
    finally:
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- clients (this process)

async def open_many(url: str, count: int, batch: int = 50):
    from course.wsclients import Listener

    listeners = []
    for start in range(0, count, batch):
        listeners += await asyncio.gather(*(Listener.open(url, open_timeout=20)
                                            for _ in range(min(batch, count - start))))
    return listeners


async def measure(url: str, clients: int, rounds: int, stuck: bool, round_timeout: float) -> dict:
    from course.wsclients import Listener, stuck_client

    async with contextlib.AsyncExitStack() as stack:
        if stuck:
            await stack.enter_async_context(stuck_client(url))
            filler = await Listener.open(url)
            for _ in range(FILLER_MESSAGES):
                await filler.send(FILLER)
            await asyncio.sleep(0.2)  # let the server push what it can towards the stuck client
            stack.callback(filler.abort)
        listeners = await open_many(url, clients)
        times, stalled = [], None
        try:
            for round_ in range(rounds):
                sent = time.perf_counter()
                await listeners[0].send(f"round {round_}")
                arrived = await asyncio.gather(*(l.wait_for(round_ + 1, round_timeout) for l in listeners))
                if not all(arrived):
                    stalled = f"stalled: {sum(arrived)}/{clients} had round {round_} after {round_timeout} s"
                    break
                times.append(max(l.arrivals[round_] for l in listeners) - sent)
        finally:
            for listener in listeners:  # abort: a clean close of 1000 clients would dominate the run time
                listener.abort()
    return {"times": times, "stalled": stalled}


def summary(result: dict) -> tuple[str, str, str]:
    times = result["times"]
    if result["stalled"]:
        return "-", "-", result["stalled"]
    median = statistics.median(times)
    p99 = statistics.quantiles(times, n=100, method="inclusive")[98] if len(times) > 1 else times[0]
    return f"{1000 * median:8.1f}", f"{1000 * p99:8.1f}", f"{len(times)} rounds"


def raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        print(f"raised the open-file limit from {soft} to {new}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--round-timeout", type=float, default=3.0)
    parser.add_argument("--target", choices=("solutions", "lessons"), default="solutions")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        raise_open_file_limit(max(args.clients) * 2 + 256)
        serve(args.serve, args.target)
        return 0
    raise_open_file_limit(max(args.clients) * 2 + 256)

    rows = []
    for stuck in (False, True):
        for clients in args.clients:
            for kind in KINDS:
                with server_process(kind, args.target) as url:
                    result = asyncio.run(measure(url, clients, args.rounds, stuck, args.round_timeout))
                rows.append((("one stuck" if stuck else "none"), clients, kind, *summary(result)))
                print(f"  done: stuck client={rows[-1][0]:9} N={clients:<5} {kind:10} {rows[-1][-1]}", flush=True)

    print(f"\nTime until all N clients have one broadcast ({args.rounds} rounds, ms; target: {args.target})")
    print(f"{'stuck client':12} {'N':>5}  {'server':10} {'median':>8} {'p99':>8}  note")
    for stuck, clients, kind, median, p99, note in rows:
        print(f"{stuck:12} {clients:>5}  {kind:10} {median:>8} {p99:>8}  {note}")
    for stuck in ("none", "one stuck"):
        for clients in args.clients:
            by_kind = {kind: median for s, n, kind, median, *_ in rows if s == stuck and n == clients}
            if "-" not in (by_kind["lesson"], by_kind["websockets"]):
                ratio = float(by_kind["lesson"]) / float(by_kind["websockets"])
                print(f"lesson / websockets.broadcast() median, N={clients}, stuck client {stuck}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
