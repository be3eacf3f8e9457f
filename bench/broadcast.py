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
import base64
import contextlib
import logging
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KINDS = ("usual", "lesson", "websockets", "lesson-untimed")
DEFAULT_KINDS = ("usual", "lesson", "websockets")
FILLER_MESSAGES = 64  # 64 x 64 kB = 4 MB: more than the kernel buffers between the server and a stuck client hold


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


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads, in ns resolution (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


# ---------------------------------------------------------------- lean clients

REQUEST = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")


def text_frame(text: str) -> bytes:
    """A masked client text frame (mask key 0: masking required, XOR with zeros is the identity)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


class LeanClient(asyncio.Protocol):
    """A WebSocket client that does the handshake, then only counts the text frames it receives."""

    def __init__(self, port: int, on_text) -> None:
        self.port, self.on_text = port, on_text
        self.buffer = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(REQUEST.format(port=self.port, key=key).encode())

    def connection_lost(self, exc) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.open.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(ConnectionError(bytes(buffer[:end]).decode(errors="replace")))
                return
            del buffer[:end + 4]
            self.open.set_result(None)
        while len(buffer) >= 2:
            size, start = buffer[1] & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            opcode = buffer[0] & 0x0F
            del buffer[:start + size]
            if opcode == 0x1:
                self.on_text(self)


async def open_lean(port: int, count: int, on_text, batch: int = 100) -> list[LeanClient]:
    loop = asyncio.get_running_loop()
    clients: list[LeanClient] = []
    for start in range(0, count, batch):
        made = await asyncio.gather(*(loop.create_connection(lambda: LeanClient(port, on_text), "127.0.0.1", port)
                                      for _ in range(min(batch, count - start))))
        opened = [protocol for _, protocol in made]
        await asyncio.wait_for(asyncio.gather(*(c.open for c in opened)), 20)
        clients += opened
    return clients


def client_process(port: int, count: int, pipe) -> None:
    """Open ``count`` lean clients; report "all my clients have text number k" with the time of the last one."""

    async def main() -> None:
        received: dict[int, int] = {}
        counts: dict[LeanClient, int] = {}

        def on_text(client: LeanClient) -> None:
            index = counts[client] = counts.get(client, 0) + 1
            received[index] = received.get(index, 0) + 1
            if received[index] == count:
                pipe.send((index, time.perf_counter()))
                del received[index]

        clients = await open_lean(port, count, on_text)
        pipe.send(("ready", os.getpid()))
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop"
        for client in clients:
            client.transport.abort()

    raise_open_file_limit(count + 256)
    asyncio.run(main())


# ---------------------------------------------------------------- one configuration

async def measure(port: int, server_pid: int, clients: int, rounds: int, stuck: bool, round_timeout: float,
                  client_procs: int) -> dict:
    from course.wsclients import incompressible_text, stuck_client

    url = f"ws://127.0.0.1:{port}/ws"
    loop = asyncio.get_running_loop()
    arrivals: asyncio.Queue = asyncio.Queue()
    async with contextlib.AsyncExitStack() as stack:
        if stuck:
            await stack.enter_async_context(stuck_client(url))
            filler = (await open_lean(port, 1, lambda client: None))[0]
            stack.callback(filler.transport.abort)
            big = incompressible_text(64_000)
            for _ in range(FILLER_MESSAGES):
                filler.transport.write(text_frame(big))
            await asyncio.sleep(0.3)  # let the server push what it can towards the stuck client
        sender = (await open_lean(port, 1, lambda client: None))[0]
        stack.callback(sender.transport.abort)

        context = multiprocessing.get_context("spawn")  # not fork: the child must not inherit our running loop
        shares = [clients // client_procs + (i < clients % client_procs) for i in range(client_procs)]
        pipes, procs = [], []
        for share in filter(None, shares):
            parent, child = context.Pipe()
            proc = context.Process(target=client_process, args=(port, share, child), daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)

        def stop_clients() -> None:
            for pipe in pipes:
                with contextlib.suppress(OSError):
                    pipe.send("stop")
            for proc in procs:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()

        stack.callback(stop_clients)
        for pipe in pipes:
            loop.add_reader(pipe.fileno(), lambda p=pipe: arrivals.put_nowait(p.recv()))
            stack.callback(loop.remove_reader, pipe.fileno())
        ready = [await asyncio.wait_for(arrivals.get(), 120) for _ in pipes]
        client_pids = [pid for _, pid in ready]

        times, stalled = [], None
        cpu_before, wall_before = cpu_seconds(server_pid), time.perf_counter()
        clients_cpu_before = sum(cpu_seconds(pid) for pid in client_pids)
        for round_ in range(1, rounds + 1):
            sent = time.perf_counter()
            sender.transport.write(text_frame(f"round {round_:06d}"))
            last = 0.0
            try:
                async with asyncio.timeout(round_timeout):
                    for _ in pipes:
                        index, at = await arrivals.get()
                        assert index == round_, f"a client process reported text {index} in round {round_}"
                        last = max(last, at)
            except TimeoutError:
                stalled = f"stalled: round {round_} not everywhere after {round_timeout} s"
                break
            times.append(last - sent)
        wall = time.perf_counter() - wall_before
        server_cpu = cpu_seconds(server_pid) - cpu_before
        clients_cpu = sum(cpu_seconds(pid) for pid in client_pids) - clients_cpu_before
    return {"times": times, "stalled": stalled, "server_cpu": server_cpu, "clients_cpu": clients_cpu, "wall": wall}


def summary(result: dict) -> dict:
    """Median and p99 of the round times (s) and the server's CPU per round (s), or why not."""
    times, rounds = result["times"], len(result["times"])
    row = {"median": None, "p99": None, "cpu": result["server_cpu"] / rounds if rounds else None,
           "busy": result["server_cpu"] / result["wall"], "note": result["stalled"] or f"{rounds} rounds"}
    if times and not result["stalled"]:
        row["median"] = statistics.median(times)
        row["p99"] = statistics.quantiles(times, n=100, method="inclusive")[98] if rounds > 1 else times[0]
    return row


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f}"


def raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


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
