"""Graded checks for lessons/l04_broadcast.py, run against a real uvicorn server on 127.0.0.1.

A real server, not TestClient: TestClient's WebSocket has no backpressure, and its sends
to a closed client succeed, so neither a stuck client nor a vanished one would show.
"""

import asyncio
import time

import pytest
from websockets.exceptions import InvalidStatus

from course.grading import check
from course.wsclients import Listener, stuck_client, ws_url

ALLOWED = "http://localhost:8000"
DELIVERY_WAIT = 1.0  # generous: delivery takes milliseconds (a stub run waits this out, so keep it short)


def run(scenario):
    asyncio.run(asyncio.wait_for(scenario, 30))


@pytest.fixture
def app(lesson):
    return lesson.create_app(allowed_origins=[ALLOWED])


@pytest.fixture
def url(app, live_server):
    return ws_url(live_server(app))


async def open_listeners(url, count, **options):
    return [await Listener.open(url, origin=ALLOWED, **options) for _ in range(count)]


async def close_all(listeners):
    await asyncio.gather(*(listener.close() for listener in listeners), return_exceptions=True)


async def wait_all(listeners, count, timeout=DELIVERY_WAIT):
    return all(await asyncio.gather(*(listener.wait_for(count, timeout) for listener in listeners)))


def counts(listeners):
    return [len(listener.messages) for listener in listeners]


@check(points=3, hint="TODO 1 and 2: broadcast() must put_nowait the message into every client's outbox, "
       "and each client's writer task (_write) must loop: await outbox.get(), then await "
       "websocket.send_text(message). One writer per client keeps each client's messages in order.")
def test_task1_2_every_client_gets_every_message_in_order(url):
    async def scenario():
        clients = await open_listeners(url, 5)
        try:
            for round_ in range(10):
                for index, client in enumerate(clients):
                    await client.send(f"c{index}-m{round_}")
            expected = 5 * 10
            assert await wait_all(clients, expected), f"messages received per client: {counts(clients)} of {expected}"
            for receiver in clients:
                for sender_index in range(5):
                    mine = [m for m in receiver.messages if f"c{sender_index}-m" in m]
                    order = [int(m.rsplit("-m", 1)[1]) for m in mine]
                    assert order == list(range(10)), f"c{sender_index}'s messages arrived as {mine}"
        finally:
            await close_all(clients)

    run(scenario())


@check(points=3, hint="TODO 2: give each send at most send_timeout seconds (async with asyncio.timeout(...)) "
       "and drop() the client when it times out; TODO 1: a full outbox (asyncio.QueueFull) also means drop(). "
       "Nothing in broadcast() may await a client.")
def test_task1_2_a_client_that_never_reads_is_dropped_within_2_s(app, url):
    async def scenario():
        healthy = await open_listeners(url, 4)
        payload = "x" * 64_000  # big messages fill the stuck client's socket buffers quickly
        async with stuck_client(url, origin=ALLOWED):
            sender = healthy[0]
            started = time.perf_counter()
            dropped_after, dropped_at_message, sent = None, 0, 0
            try:
                async with asyncio.timeout(6):
                    while sent < 400 and (dropped_after is None or sent < 20 + dropped_at_message):
                        await sender.send(f"{sent} {payload}")
                        sent += 1
                        assert await wait_all(healthy, sent), (
                            f"healthy clients stalled at {counts(healthy)} of {sent} messages")
                        if dropped_after is None and len(app.state.manager) == len(healthy):
                            dropped_after, dropped_at_message = time.perf_counter() - started, sent
            finally:
                await close_all(healthy)
        assert dropped_after is not None, f"the stuck client was still registered after {sent} messages"
        assert dropped_after < 2.0, f"the stuck client was dropped only after {dropped_after:.2f} s"

    run(scenario())


@check(points=2, hint="TODO 2: a send to a client that already left raises WebSocketDisconnect (or "
       "WebSocketDisconnected): catch it in that client's writer and disconnect() that client only. "
       "The sender and everyone else must not notice.")
def test_task2_clients_leaving_mid_broadcast_cost_the_others_nothing(url):
    async def scenario():
        healthy = await open_listeners(url, 10)
        leavers = await open_listeners(url, 10)
        sender = healthy[0]
        try:
            sent = 0
            for burst in range(8):
                for _ in range(16):
                    await sender.send(f"burst{burst}-{sent}")
                    sent += 1
                if burst == 2:  # leave while messages are still being delivered
                    await asyncio.gather(*(leaver.close() for leaver in leavers[:5]))
                    for leaver in leavers[5:]:
                        leaver.abort()
                assert await wait_all(healthy, sent), f"healthy clients got {counts(healthy)} of {sent} messages"
            assert sender.close_code is None, f"the sender was disconnected with code {sender.close_code}"
            for client in healthy:
                numbers = [int(m.rsplit("-", 1)[1]) for m in client.messages]
                assert numbers == list(range(sent)), f"a healthy client missed or reordered messages: {numbers}"
        finally:
            await close_all(healthy + leavers)

    run(scenario())


@check(points=2, hint="TODO 3: disconnect() must forget the client (self._outboxes.pop(websocket, None), "
       "the same for self._writers) and cancel its writer task; calling it twice must be harmless.")
def test_task3_after_many_connects_and_disconnects_no_dead_connection_remains(app, url):
    async def scenario():
        sender = await Listener.open(url, origin=ALLOWED)
        try:
            for cycle in range(20):
                visitors = await open_listeners(url, 4)
                await sender.send(f"cycle {cycle}")
                await visitors[0].close()
                await visitors[1].close()
                visitors[2].abort()
                visitors[3].abort()
            manager = app.state.manager
            async with asyncio.timeout(DELIVERY_WAIT):
                while len(manager) > 1:  # the server sees aborted clients go a moment later
                    await asyncio.sleep(0.02)
        except TimeoutError:
            pass
        finally:
            await sender.close()
        assert len(app.state.manager) <= 1, f"the manager still holds {len(app.state.manager)} connections, expected 1"

    run(scenario())


@check(points=2, hint="TODO 4: before accept(), compare websocket.headers.get('origin') with the allowed "
       "origins and refuse a stranger with await websocket.close(code=POLICY_VIOLATION): the client gets HTTP 403.")
def test_task4_a_handshake_from_a_disallowed_origin_is_refused(url):
    async def scenario():
        for origin in ("https://evil.example", None):
            with pytest.raises(InvalidStatus) as refused:
                listener = await Listener.open(url, origin=origin)
                await listener.close()
            assert refused.value.response.status_code == 403, refused.value
        welcome = await Listener.open(url, origin=ALLOWED)
        await welcome.close()

    run(scenario())
