"""WebSocket test clients for the broadcast lesson (notebook 04, its graded checks, bench/broadcast.py).

* :func:`stuck_client` completes a real WebSocket handshake and then never reads again,
  like a browser tab whose page froze or a phone that went into a tunnel.
* :class:`Listener` is a ``websockets`` client that records what it receives, and when.
* :func:`ws_url` turns a running server's ``http://`` URL into its ``ws://`` endpoint URL.
* :func:`incompressible_text` makes message text that compression cannot shrink away.

Which client is stuck, exactly. A ``websockets`` (17.4) client reads the socket in the
background into its own queue, whether or not the application calls ``recv()``, but only
until ``max_queue`` messages (16 by default) wait there; then it stops reading the socket.
So a ``websockets`` client that never calls ``recv()`` is a stuck client too, a little later:
after 16 messages plus whatever the kernel buffers between it and the server hold (with
64 kB messages on loopback, 150-170 messages). :class:`Listener` calls ``recv()`` all the
time (``async for``), so it never stalls. :func:`stuck_client` stops reading at the socket
right after the handshake, with a small receive buffer, so the server's send buffer fills
up as it would with a real frozen peer.

Compression. ``websockets`` clients (so :class:`Listener`) offer permessage-deflate by
default and uvicorn accepts it: ``"x" * 64_000`` then crosses the wire as about 100 bytes.
:func:`stuck_client` offers no extension, so it gets every byte. Where size is the point,
send :func:`incompressible_text`, or open the Listener with ``compression=None``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["Listener", "StuckClient", "incompressible_text", "stuck_client", "ws_url"]


def incompressible_text(size: int) -> str:
    """``size`` characters of random base64 (ASCII, so also ``size`` bytes of UTF-8).

    permessage-deflate shrinks it by only about a quarter (random bytes carry 6 bits per
    base64 character), where ``"x" * size`` shrinks to almost nothing.
    """
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode("ascii")[:size]


def ws_url(server, path: str = "/ws") -> str:
    """``ws://127.0.0.1:PORT/ws`` for a :class:`course.server.RunningServer` (or an ``http://`` URL)."""
    return str(getattr(server, "url", server)).replace("http://", "ws://", 1) + path


class StuckClient:
    """An open WebSocket connection whose reading side is frozen."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol) -> None:
        self._reader = reader
        self._protocol = protocol
        self._writer = writer
        self._draining: asyncio.Task[None] | None = None

    @property
    def closed_by_server(self) -> bool:
        """True once the server closed or reset the TCP connection."""
        return self._writer.transport.is_closing()

    @property
    def close_code(self) -> int | None:
        """The close code in the server's close frame, once :meth:`resume` has read that far."""
        return self._protocol.close_rcvd.code if self._protocol.close_rcvd else None

    def resume(self) -> None:
        """Start reading again: the frozen client thaws, parses and discards what arrives."""
        async def drain() -> None:
            while data := await self._reader.read(1 << 16):
                self._protocol.receive_data(data)
                self._protocol.events_received()  # messages are dropped; the close frame is kept

        if self._draining is None:
            self._writer.transport.resume_reading()
            self._draining = asyncio.create_task(drain(), name="stuck-client-drain")

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (unread data makes it a reset)."""
        self._writer.transport.abort()


@contextlib.asynccontextmanager
async def stuck_client(url: str, *, origin: str | None = None, receive_buffer: int = 4096,
                       timeout: float = 3.0) -> AsyncIterator[StuckClient]:
    """Connect to ``url``, complete the handshake, then stop reading; abort on exit.

    ``receive_buffer`` is the socket's SO_RCVBUF: small, so a few kilobytes fill it.
    """
    uri = parse_uri(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: sets the TCP window
    sock.setblocking(False)
    writer = client = None
    try:
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            protocol = ClientProtocol(uri, origin=origin)
            protocol.send_request(protocol.connect())
            writer.write(b"".join(protocol.data_to_send()))
            while protocol.state is State.CONNECTING:
                data = await reader.read(1024)
                if not data:
                    raise ConnectionError("the server closed the connection during the handshake")
                protocol.receive_data(data)
            if protocol.handshake_exc is not None:
                raise protocol.handshake_exc
        writer.transport.pause_reading()  # from now on, nothing is read: the kernel buffer fills, then TCP stalls
        client = StuckClient(reader, writer, protocol)
        yield client
    finally:
        if writer is not None:
            writer.transport.abort()
            if client is not None and client._draining is not None:
                client._draining.cancel()
        else:
            sock.close()


class Listener:
    """A ``websockets`` client that keeps every message it receives and its arrival time.

    ``await Listener.open(url)`` connects; ``messages`` and ``arrivals`` (``time.perf_counter()``)
    grow as messages come; ``await wait_for(count, timeout)`` waits until ``count`` have come.
    """

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.messages: list[str] = []
        self.arrivals: list[float] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read(), name="listener")

    @classmethod
    async def open(cls, url: str, **options: Any) -> Listener:
        """Connect with short timeouts (``options`` go to ``websockets.asyncio.client.connect``)."""
        options = {"open_timeout": 5, "close_timeout": 1, "max_size": None, **options}
        return cls(await connect(url, **options))

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):  # a close without handshake is still just the end
            async for message in self.connection:
                self.messages.append(message)
                self.arrivals.append(time.perf_counter())
                async with self._arrived:
                    self._arrived.notify_all()
        async with self._arrived:
            self._arrived.notify_all()

    @property
    def is_open(self) -> bool:
        return not self._reader.done()

    @property
    def close_code(self) -> int | None:
        """The close code the server sent (None while open; 1006 when the TCP connection just died)."""
        return self.connection.close_code

    async def wait_for(self, count: int, timeout: float) -> bool:
        """True once ``count`` messages have arrived; False after ``timeout`` s or if the connection closed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: len(self.messages) >= count or self._reader.done())
        return len(self.messages) >= count

    async def send(self, text: str) -> None:
        await self.connection.send(text)

    async def close(self) -> None:
        """Close with the normal closing handshake (bounded by close_timeout)."""
        await self.connection.close()
        await asyncio.wait({self._reader}, timeout=2)

    def abort(self) -> None:
        """Vanish without a closing handshake, like a laptop lid shut mid-conversation."""
        self.connection.transport.abort()


# --- Raw connections (notebook 03): the protocol typed out by hand, and bytes counted on the wire ---

import base64 as _base64
import hashlib as _hashlib
import os as _os
from dataclasses import dataclass as _dataclass

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's constant
TEXT, CLOSE = 0x1, 0x8  # frame opcodes


def expected_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``Sec-WebSocket-Key: key``."""
    return _base64.b64encode(_hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()


@_dataclass
class RawConnection:
    """A WebSocket spoken by hand over asyncio streams: the handshake and each frame's bytes, visible.

    ``await RawConnection.open(server, "/echo", origin=...)`` sends the upgrade request (with an
    ``Origin`` header unless ``origin`` is None) and reads the response head; ``response`` is
    its text. Then ``send_frame`` and ``read_frame`` exchange single frames.
    """

    key: str
    request: str
    response: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timeout: float = 3.0

    @classmethod
    async def open(cls, server, path: str, origin: str | None = None, timeout: float = 3.0) -> RawConnection:
        port = getattr(server, "port", None) or parse_uri(ws_url(server, "")).port
        key = _base64.b64encode(_os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"Origin: {origin}"] if origin else []
        request = "\r\n".join(lines) + "\r\n\r\n"
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(request.encode())
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        return cls(key, request, response.decode(), reader, writer, timeout)

    @property
    def status_line(self) -> str:
        return self.response.splitlines()[0]

    @property
    def headers(self) -> dict[str, str]:
        return {name.lower(): value for name, _, value in
                (line.partition(": ") for line in self.response.splitlines()[1:] if line)}

    def send_frame(self, opcode: int, payload: bytes = b"", announce: int | None = None) -> bytes:
        """Send one masked frame; ``announce`` puts another length in its header. Returns its bytes."""
        length = len(payload) if announce is None else announce
        if length < 126:
            size = bytes([0x80 | length])
        elif length < 2**16:
            size = bytes([0x80 | 126]) + length.to_bytes(2, "big")
        else:
            size = bytes([0x80 | 127]) + length.to_bytes(8, "big")
        mask = _os.urandom(4)  # FIN + opcode; MASK bit + length; 4-byte mask; masked payload
        frame = bytes([0x80 | opcode]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(frame)
        return frame

    async def read_frame(self) -> tuple[int, bytes, bytes]:
        """The next frame from the server (not masked): (opcode, payload, its raw bytes)."""
        head = await asyncio.wait_for(self.reader.readexactly(2), self.timeout)
        length = head[1] & 0x7F
        extra = {126: 2, 127: 8}.get(length, 0)
        size = await asyncio.wait_for(self.reader.readexactly(extra), self.timeout)
        length = int.from_bytes(size, "big") if extra else length
        payload = await asyncio.wait_for(self.reader.readexactly(length), self.timeout)
        return head[0] & 0x0F, payload, head + size + payload

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(self.writer.wait_closed(), self.timeout)


class ByteCountingProxy:
    """A TCP proxy on 127.0.0.1 in front of a server that counts the bytes each way.

    ``proxy = await ByteCountingProxy.start(server)``; point a client at ``proxy.url``; read
    ``proxy.down`` (server to client) and ``proxy.up`` (client to server); ``await proxy.aclose()``.
    Everything the client and server exchange counts: handshakes, HTTP headers, frames.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = self.down = 0
        self._server: asyncio.base_events.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, server) -> ByteCountingProxy:
        proxy = cls(server.port)
        proxy._server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
        return proxy

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(1 << 16):
                    setattr(self, direction, getattr(self, direction) + len(data))
                    writer.write(data)
                    await writer.drain()
            writer.close()

        tasks = [asyncio.create_task(pipe(client_reader, server_writer, "up")),
                 asyncio.create_task(pipe(server_reader, client_writer, "down"))]
        self._pipes.update(tasks)
        await asyncio.wait(tasks)
        self._pipes.difference_update(tasks)

    async def aclose(self) -> None:
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


__all__ += ["ByteCountingProxy", "CLOSE", "RawConnection", "TEXT", "WEBSOCKET_GUID", "expected_accept"]
