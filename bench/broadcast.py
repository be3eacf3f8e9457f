"""How long until every client has a broadcast message: the usual manager, the lesson's, websockets.broadcast().

    .venv/bin/python bench/broadcast.py                  # N = 100 and 1000, 20 broadcasts each
    .venv/bin/python bench/broadcast.py --clients 1000 --rounds 30 --kinds lesson websockets
    .venv/bin/python bench/broadcast.py --clients 100 --rounds 10 --target lessons

The point is to measure the SERVER, so everything else is made cheap and kept out of its way:

* each server runs in its own process (this script with ``--serve``), on 127.0.0.1 and a free
  port, with keepalive pings off (no ping traffic during the rounds);
* the N clients are lean raw-socket clients (a handshake, then a minimal frame parser, no
  compression, no ``websockets`` machinery), spread over ``--client-procs`` processes;
* every round, each client process reports when the last of its clients had the message, on
  ``time.perf_counter()`` (CLOCK_MONOTONIC, the same clock in every process on Linux).

Servers:

* ``usual``      the tutorial ``UsualConnectionManager`` on uvicorn (``course.specimens.usual_broadcast``);
* ``lesson``     the lesson's ``ConnectionManager`` on uvicorn (``create_app`` of ``--target``);
* ``websockets`` a plain ``websockets`` server that calls ``websockets.broadcast()``;
* ``lesson-untimed`` (only with ``--kinds``) the lesson's manager with its writers' time limit
  removed: a diagnostic that splits the lesson's cost into task wake-ups and timeouts.

Where the time goes, read from one table: ``websockets`` is the floor (frame + ``transport.write``
per client); ``usual`` adds the ASGI path (FastAPI, Starlette, uvicorn) per send; ``lesson-untimed``
adds one writer-task wake-up per client (a ``Queue.get`` and a ``call_soon``); ``lesson`` adds the
``asyncio.timeout`` around each send (a timer armed and cancelled).

One round: the sender (one more lean client, in this process) sends a short text; the round's
time runs from that send until the last of the N clients has the message. Rounds are sequential.
Around the rounds the table reports the server process's CPU time per round and its share of
the wall time (near 100 %: the server is the bottleneck, which is what we want), and the load
average (this machine may be shared: a high load means noisy numbers).

"With one stuck client": before the N clients connect, a client that never reads
(``course.wsclients.stuck_client``) connects and a filler client broadcasts 4 MB of
random text, enough to fill the stuck client's socket buffers; then the N clients
connect and the rounds run as before. A configuration in which a round times out is
reported as stalled and its remaining rounds are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import types
from pathlib import Path

from course.fanout import load, measure, ms, raise_open_file_limit, summary

ROOT = Path(__file__).resolve().parent.parent

KINDS = ("usual", "lesson", "websockets", "lesson-untimed")
DEFAULT_KINDS = ("usual", "lesson", "websockets")


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

    async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


def serve(kind: str, target: str, profile: int = 0) -> None:
    if kind == "websockets":
        asyncio.run(serve_websockets())
        return
    import course
    from course.specimens.usual_broadcast import create_usual_app
    from course.targets import load_lesson

    if kind == "usual":
        app = create_usual_app()
    else:
        lesson = load_lesson("l04_broadcast", target)
        logging.getLogger(lesson.__name__).setLevel(logging.ERROR)  # "dropping a client" is expected here
        app = lesson.create_app()
        if kind == "lesson-untimed":  # where the time goes: the same manager, its sends without a time limit
            app.state.manager._write = types.MethodType(write_untimed, app.state.manager)
    settings = {"ws_ping_interval": None, "ws_per_message_deflate": False}
    if profile:
        profile_uvicorn(app, settings, profile)
        return
    server = course.serve_in_thread(app, name=f"bench-{kind}", **settings)
    print(f"PORT {server.port}", flush=True)
    sys.stdin.read()  # until the parent closes stdin
    server.stop(timeout=2)


def profile_uvicorn(app, settings: dict, top: int) -> None:
    """Serve on this thread under cProfile; at the end print the ``top`` functions by own time."""
    import cProfile
    import pstats
    import socket
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", **settings)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # uvicorn < 0.29 name; harmless otherwise
    print(f"PORT {sock.getsockname()[1]}", flush=True)

    def until_stdin_closes() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, server.serve(sockets=[sock]))
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(top)


async def write_untimed(manager, websocket, outbox) -> None:
    """The lesson's writer minus ``asyncio.timeout``: a diagnostic, not an answer (a stuck client stalls it)."""
    try:
        while True:
            await websocket.send_text(await outbox.get())
    except Exception:
        manager.disconnect(websocket)


@contextlib.contextmanager
def server_process(kind: str, target: str, profile: int = 0):
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--target", target,
                                "--profile", str(profile)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the {kind} server did not start: {line!r}")
        yield process, int(line.split()[1])
    finally:
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--round-timeout", type=float, default=3.0)
    parser.add_argument("--client-procs", type=int, default=3, help="processes the N clients are spread over")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(DEFAULT_KINDS))
    parser.add_argument("--no-stuck", action="store_true", help="skip the runs with a stuck client")
    parser.add_argument("--target", default="solutions", help="solutions (default), lessons or a directory")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="run uvicorn servers under cProfile; print their TOP functions by own time")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_open_file_limit(max(args.clients) * 2 + 256)
    if args.serve:
        serve(args.serve, args.target, args.profile)
        return 0

    print(f"{os.cpu_count()} CPUs, {load()} at the start; clients over {args.client_procs} processes", flush=True)
    rows = []
    for stuck in (False,) if args.no_stuck else (False, True):
        for clients in args.clients:
            for kind in args.kinds:
                with server_process(kind, args.target, args.profile) as (process, port):
                    result = asyncio.run(measure(port, process.pid, clients, args.rounds, stuck,
                                                 args.round_timeout, args.client_procs))
                rows.append({"stuck": "one stuck" if stuck else "none", "clients": clients, "kind": kind,
                             **summary(result)})
                print(f"  done: stuck client={rows[-1]['stuck']:9} N={clients:<5} {kind:14} {rows[-1]['note']}; "
                      f"clients' CPU {result['clients_cpu']:.2f} s, server's {result['server_cpu']:.2f} s; "
                      f"{load()}", flush=True)

    print(f"\nTime until all N clients have one broadcast ({args.rounds} rounds; target: {args.target})")
    print(f"{'stuck client':12} {'N':>5}  {'server':14} {'median ms':>9} {'p99 ms':>8} {'server CPU ms/round':>19} "
          f"{'server busy':>11}  note")
    for row in rows:
        print(f"{row['stuck']:12} {row['clients']:>5}  {row['kind']:14} {ms(row['median']):>9} {ms(row['p99']):>8} "
              f"{ms(row['cpu']):>19} {100 * row['busy']:>10.0f}%  {row['note']}")
    print()
    for stuck in ("none", "one stuck"):
        for clients in args.clients:
            by_kind = {row["kind"]: row for row in rows if row["stuck"] == stuck and row["clients"] == clients}
            lesson, floor = by_kind.get("lesson"), by_kind.get("websockets")
            if lesson and floor and None not in (lesson["median"], floor["median"]):
                print(f"lesson / websockets.broadcast(), N={clients}, stuck client {stuck}: "
                      f"median {lesson['median'] / floor['median']:.2f}x, "
                      f"server CPU per round {lesson['cpu'] / floor['cpu']:.2f}x")
    if max(os.getloadavg()) > (os.cpu_count() or 1):
        print("This machine is busy (load average above its CPU count): the medians are unreliable, "
              "compare the server CPU per round.")
    print(load(), "at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
