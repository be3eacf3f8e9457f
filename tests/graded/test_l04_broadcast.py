"""Graded checks for lessons/l04_broadcast.py, run against a real uvicorn server on 127.0.0.1.

A real server, not TestClient: TestClient's WebSocket has no backpressure, and its sends
to a closed client succeed, so neither a stuck client nor a vanished one would show.

Where message size is the point, the healthy clients are opened without compression and the
messages are random text (``incompressible_text``): the stuck client offers no compression, so
it gets every byte of them.
"""

import asyncio
import time

from starlette import status

from course.grading import check
from course.server import captured_log
from course.waiting import wait_for_async
from course.wsclients import Listener, incompressible_text, stuck_client, ws_url

DELIVERY_WAIT = 1.0  # generous: delivery takes milliseconds (a stub run waits this out, so keep it short)
PAYLOAD = incompressible_text(64_000)  # a few dozen fill the buffers between the server and a stuck client
PLAIN = {"compression": None}  # healthy clients that get big messages: no deflate work on either side


def run(scenario):
    asyncio.run(asyncio.wait_for(scenario, 30))


async def open_listeners(url, count, **options):
    return [await Listener.open(url, **options) for _ in range(count)]


async def close_all(listeners):
    await asyncio.gather(*(listener.close() for listener in listeners), return_exceptions=True)


async def wait_all(listeners, count, timeout=DELIVERY_WAIT):
    return all(await asyncio.gather(*(listener.wait_for(count, timeout) for listener in listeners)))


def counts(listeners):
    return [len(listener.messages) for listener in listeners]


def record_calls(manager, method):
    """Call through ``manager.<method>`` and record the WebSocket of every call."""
    calls, original = [], getattr(manager, method)

    def recorded(websocket, *args, **kwargs):
        calls.append(websocket)
        return original(websocket, *args, **kwargs)

    setattr(manager, method, recorded)
    return calls


def on_server_loop(server, coroutine_function, timeout=5.0):
    """Run ``coroutine_function()`` on the server's own event loop and return its result."""
    return asyncio.run_coroutine_threadsafe(coroutine_function(), server.server.loop).result(timeout)


async def count_writers():
    await asyncio.sleep(0.01)  # a writer cancelled a moment ago finishes first
    return sum(task.get_name() == "ws-writer" and not task.done() for task in asyncio.all_tasks())


async def flood_until_dropped(app, sender, healthy, *, within=3.0, extra=10, interval=0.01):
    """Send big messages, one every ``interval`` s, until the manager has let go of one client
    (then ``extra`` more) or ``within`` seconds have passed.

    Every message must reach every healthy client before the next is sent. Returns
    (seconds until the drop or None, messages sent).
    """
    expected = len(app.state.manager) - 1
    started, dropped_after, dropped_at, sent = time.perf_counter(), None, 0, 0
    while (time.perf_counter() - started < within) if dropped_after is None else (sent < dropped_at + extra):
        await sender.send(f"{sent} {PAYLOAD}")
        sent += 1
        assert await wait_all(healthy, sent), f"healthy clients stalled at {counts(healthy)} of {sent} messages"
        if dropped_after is None and len(app.state.manager) == expected:
            dropped_after, dropped_at = time.perf_counter() - started, sent
        await asyncio.sleep(interval)
    return dropped_after, sent


def in_order(listener):
    return [int(message.split(" ", 2)[1]) for message in listener.messages]


@check(task=1, points=3, hint="TODO 1 (and the writer of TODO 2): every message must reach every client, "
       "the sender included, and each client's messages must arrive in the order they were sent. "
       "Symptom: a client gets nothing, or gets messages late or shuffled.")
def test_task1_every_client_gets_every_message_in_order(lesson, live_server):
    url = ws_url(live_server(lesson.create_app()))

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


@check(task=1, points=3, hint="TODO 1: a full outbox means that client does not keep up: drop() it and "
       "carry on with the other clients. Dropping changes the dict of outboxes, so the loop must not "
       "walk the live dict. Symptom: the stuck client stays registered, or the sender is cut off and "
       "the clients after the dropped one miss the message.",
       nudge="Run it with a client that never reads and a small max_pending: which clients got the "
             "message that found the full outbox? Does the sender's endpoint log a RuntimeError?")
def test_task1_a_full_outbox_drops_its_client_and_no_one_else(lesson, live_server):
    # The send timeout is far away, so only the full outbox can drop the stuck client.
    app = lesson.create_app(max_pending=8, send_timeout=60)
    url = ws_url(live_server(app))
    dropped = record_calls(app.state.manager, "drop")

    async def scenario():
        healthy = await open_listeners(url, 2, **PLAIN)
        async with stuck_client(url):  # in the middle of the manager's dict, not last
            healthy += await open_listeners(url, 2, **PLAIN)
            try:
                dropped_after, sent = await flood_until_dropped(app, healthy[0], healthy)
                assert dropped_after is not None, (
                    f"the stuck client was still registered after {sent} messages (max_pending=8)")
                assert len(dropped) == 1, f"drop() was called {len(dropped)} times, expected once"
                assert healthy[0].close_code is None, f"the sender was closed with code {healthy[0].close_code}"
                for client in healthy:
                    assert in_order(client) == list(range(sent)), "a healthy client missed or reordered messages"
            finally:
                await close_all(healthy)

    run(scenario())


@check(task=2, points=2, hint="TODO 2: the send timeout limits one send to a client, not the time a "
       "writer waits for the next message. Symptom: clients of a quiet room are dropped after "
       "send_timeout seconds although they read everything.")
def test_task2_a_quiet_room_keeps_its_clients(lesson, live_server):
    app = lesson.create_app(send_timeout=0.1)
    url = ws_url(live_server(app))
    dropped = record_calls(app.state.manager, "drop")

    async def scenario():
        clients = await open_listeners(url, 3)
        try:
            await clients[0].send("before the pause")
            assert await wait_all(clients, 1), f"messages received per client: {counts(clients)} of 1"
            await asyncio.sleep(0.35)  # three send timeouts of silence
            await clients[1].send("after the pause")
            assert await wait_all(clients, 2), f"after a quiet 0.35 s, clients received {counts(clients)} of 2"
            assert not dropped, f"{len(dropped)} clients that read everything were dropped"
            assert all(client.close_code is None for client in clients)
        finally:
            await close_all(clients)

    run(scenario())


@check(task=2, points=3, hint="TODO 2: a send to a client that stopped reading never finishes by itself "
       "(uvicorn waits for its buffer to drain). Give each send a time limit and drop() the client "
       "when it runs out. Symptom: with a roomy outbox, a client that never reads stays registered "
       "forever, its messages piling up in memory.")
def test_task2_a_send_that_hangs_drops_its_client(lesson, live_server):
    # The outbox is too roomy to fill here: only the send timeout can drop the stuck client.
    app = lesson.create_app(max_pending=100_000, send_timeout=0.3)
    url = ws_url(live_server(app))
    dropped = record_calls(app.state.manager, "drop")

    async def scenario():
        healthy = await open_listeners(url, 3, **PLAIN)
        try:
            async with stuck_client(url):
                dropped_after, sent = await flood_until_dropped(app, healthy[0], healthy)
            assert dropped, f"drop() was never called: the stuck client is still registered after {sent} messages, 3 s"
            assert dropped_after is not None, "drop() was called, but the stuck client is still registered"
        finally:
            await close_all(healthy)

    run(scenario())


@check(task=2, points=2, hint="TODO 2: a send to a client that already left raises WebSocketDisconnect "
       "(or WebSocketDisconnected): catch it in that client's writer and disconnect() that client only. "
       "Symptom: errors in the server log, or the sender and everyone else notice.")
def test_task2_clients_leaving_mid_broadcast_cost_the_others_nothing(lesson, live_server):
    url = ws_url(live_server(lesson.create_app()))

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

    with captured_log("uvicorn.error", "asyncio") as errors:
        run(scenario())
        time.sleep(0.2)  # a writer that died of an uncaught exception is reported when it is freed
    assert not errors, f"the server logged: {errors[0].getMessage()}"


@check(task=3, points=3, hint="TODO 3: disconnect() may be called several times for one client (by its "
       "endpoint, its writer, drop()), and must stop that client's writer task. Symptom: a KeyError "
       "in the server log, or writer tasks that outlive their clients and pile up.",
       nudge="Count the server's tasks named 'ws-writer' after clients come and go: it should equal "
             "the number of clients still connected.")
def test_task3_disconnect_is_idempotent_and_leaves_no_writer_behind(lesson, live_server):
    app = lesson.create_app()
    server = live_server(app)
    url = ws_url(server)
    manager = app.state.manager
    connected = record_calls(manager, "connect")

    async def disconnect_twice():
        before = await count_writers()
        manager.disconnect(connected[-1])
        manager.disconnect(connected[-1])
        await asyncio.sleep(0.05)  # let the cancelled writer finish
        return before, await count_writers(), connected[-1] in manager

    async def scenario():
        stayer, visitor = await open_listeners(url, 2)
        try:
            before, after, still_there = on_server_loop(server, disconnect_twice)
            await visitor.close()
            assert not still_there, "disconnect() did not forget the client"
            assert after == before - 1, f"disconnect() left {after} writer tasks running, expected {before - 1}"
            for cycle in range(20):
                visitors = await open_listeners(url, 4)
                await stayer.send(f"cycle {cycle}")
                await asyncio.gather(visitors[0].close(), visitors[1].close())
                visitors[2].abort()
                visitors[3].abort()
            await wait_for_async(lambda: len(manager) <= 1, timeout=DELIVERY_WAIT)  # aborts show a moment later
            assert len(manager) == 1, f"the manager still holds {len(manager)} connections, expected 1"
            writers = on_server_loop(server, count_writers)
            assert writers == 1, f"{writers} writer tasks are still running for 1 connected client"
        finally:
            await close_all([stayer, visitor])

    with captured_log("uvicorn.error", "asyncio") as errors:
        run(scenario())
    assert not errors, f"the server logged: {errors[0].getMessage()}"


@check(task=4, points=3, hint="TODO 4: dropping forgets the client at once and closes it with 1013 "
       "(Try Again Later) in a background task that nobody awaits. Symptom: a dropped client that "
       "reads again gets no close frame, or another code; or it stays registered.")
def test_task4_a_dropped_client_is_forgotten_and_told_to_try_again_later(lesson, live_server):
    app = lesson.create_app(send_timeout=0.3)
    url = ws_url(live_server(app))

    async def scenario():
        sender = await Listener.open(url, **PLAIN)
        try:
            async with stuck_client(url) as frozen:
                dropped_after, sent = await flood_until_dropped(app, sender, [sender], extra=0)
                assert dropped_after is not None, f"the stuck client was still registered after {sent} messages"
                frozen.resume()  # it reads again: what is on its way, then the close frame
                await wait_for_async(lambda: frozen.close_code is not None, timeout=3.0)
                assert frozen.close_code == status.WS_1013_TRY_AGAIN_LATER, (
                    f"the dropped client read close code {frozen.close_code}, expected "
                    f"{status.WS_1013_TRY_AGAIN_LATER} (None: no close frame within 3 s)")
        finally:
            await sender.close()

    run(scenario())
