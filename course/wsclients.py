"""WebSocket test clients for the broadcast lesson (notebook 04, its graded checks, bench/broadcast.py).

* :func:`stuck_client` completes a real WebSocket handshake and then never reads again,
  like a browser tab whose page froze or a phone that went into a tunnel.
* :class:`Listener` is a ``websockets`` client that records what it receives, and when.
* :func:`ws_url` turns a running server's ``http://`` URL into its ``ws://`` endpoint URL.

A ``websockets`` client is a poor stand-in for a stuck client: it reads in the background
into its own queue, so the server keeps writing long after the application stopped
calling ``recv()``. This one stops reading at the socket, with a small receive buffer,
so the server's send buffer fills up as it would with a real frozen peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["Listener", "StuckClient", "stuck_client", "ws_url"]


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
