"""Lean WebSocket clients spread over processes, and a loop that times a broadcast until every one has it.

``bench/broadcast.py`` and ``bench/scale_out.py`` measure the SERVER with these, so the clients must
cost as little as possible: each :class:`LeanClient` does the handshake, then parses frames with a
minimal parser (no compression, no ``websockets`` machinery); :func:`measure` spreads N of them over
several processes, sends one short text per round from one more client, and takes, per round, the
time until the last client has it (``time.perf_counter()``: CLOCK_MONOTONIC, the same clock in every
process on Linux), next to the server process's CPU time (:func:`cpu_seconds`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import os
import resource
import statistics
import time
from pathlib import Path

FILLER_MESSAGES = 64  # 64 x 64 kB = 4 MB: more than the kernel buffers between the server and a stuck client hold


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
