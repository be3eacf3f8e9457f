"""Graded checks for lessons/l03_websockets.py, run against a real uvicorn server.

The clients are real `websockets` clients: a test client calling the app in-process would
skip the HTTP handshake that the Origin check and the 403 are about.
"""

import asyncio
import json
import time

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from course.grading import check
from course.server import captured_log
from course.wsclients import ws_url

ORIGIN = "http://localhost:8000"
FOREIGN_ORIGIN = "https://evil.example"
MAX_BYTES = 1000
WAIT = 3.0  # generous upper bound for anything to happen on a busy 2-core machine
SETTLE = 1.5  # bound for what happens at once (a subscription, a count): shorter, so stubs fail fast
MAX_PUSH_DELAY = 0.5  # a push takes milliseconds; the margin is for a busy 2-core machine


def run(server, scenario):
    """Run an async scenario to the end (or fail after a bound: no check hangs), then stop the server.

    Stopping before the asserts keeps the server thread quiet while pytest formats a failure:
    both may format a traceback, and Python 3.11 does that with ast.parse, which is not thread-safe.
    """
    async def bounded():
        async with asyncio.timeout(4 * WAIT):
            return await scenario

    try:
        return asyncio.run(bounded())
    finally:
        server.stop()


@pytest.fixture
def app(lesson):
    return lesson.create_app(allowed_origins={ORIGIN}, max_message_bytes=MAX_BYTES)


@pytest.fixture
def server(app, live_server):
    return live_server(app)


def open_ws(server, path, origin=ORIGIN):
    return connect(ws_url(server, path), origin=origin, open_timeout=WAIT, close_timeout=WAIT)


async def handshake_status(server, path, origin):
    """101 if the WebSocket was accepted, else the HTTP status the handshake got."""
    try:
        async with open_ws(server, path, origin=origin):
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


def describe(outcome):
    if outcome[0] == "echo":
        return f"an echo of {len(outcome[1])} characters"
    return f"a close with code {outcome[1]} ({outcome[2]!r})"


async def close_code_after_sending(server, message):
    """Send one message on /echo; return ("echo", reply) or ("closed", close code, reason)."""
    async with open_ws(server, "/echo") as ws:
        await ws.send(message)
        try:
            return ("echo", await asyncio.wait_for(ws.recv(), WAIT))
        except websockets.ConnectionClosed:
            return ("closed", ws.close_code, ws.close_reason)


@check(points=2, hint="TODO 1: in push_events, `with events.subscription() as new_events:` then loop: "
       "`await websocket.send_json(await new_events.get())`. The client must get the event a "
       "moment after POST /events, without asking for it.")
def test_task1_push_delivers_an_event_within_moments(server, app):
    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            async with open_ws(server, "/events/push") as ws:
                subscribed = await asyncio.to_thread(app.state.events.wait_for_subscribers, 1, SETTLE)
                if subscribed != 1:
                    return subscribed, None, None, None
                posted = (await http.post("/events", json={"text": "deploy finished"})).json()
                try:
                    pushed = await asyncio.wait_for(ws.recv(), WAIT)
                except websockets.ConnectionClosed:
                    pushed = f"nothing: the server closed with {ws.close_code} {ws.close_reason!r}"
                delay = time.time() - posted["at"]
            # One more event lets the push loop notice that the client left, so the server stops at once.
            await http.post("/events", json={"text": "goodbye"})
            return subscribed, posted, pushed, delay

    subscribed, posted, pushed, delay = run(server, scenario())
    assert subscribed == 1, f"a connected push client should be subscribed, {subscribed} subscriptions"
    assert isinstance(pushed, str) and pushed.startswith("{"), f"expected the event as JSON, received {pushed}"
    assert json.loads(pushed) == posted, f"pushed {pushed}, published {posted}"
    assert delay < MAX_PUSH_DELAY, f"the event arrived {delay:.2f} s after it was published: push it at once"


@check(points=1, hint="TODO 1: when a send fails because the client left, send_json raises "
       "WebSocketDisconnect: catch it inside the `with events.subscription()` block so the "
       "subscription ends and the handler returns quietly.")
def test_task1_a_departed_push_client_is_unsubscribed_at_the_next_event(server, app):
    events = app.state.events

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            async with open_ws(server, "/events/push") as ws:
                while_connected = await asyncio.to_thread(events.wait_for_subscribers, 1, SETTLE)
                if while_connected != 1:
                    return while_connected, None, None
                await http.post("/events", json={"text": "first"})
                await asyncio.wait_for(ws.recv(), WAIT)
            # The push loop is waiting for the next event: only its next send tells it the client left.
            await http.post("/events", json={"text": "second"})
            after = await asyncio.to_thread(events.wait_for_subscribers, 0, WAIT)
            still_serving = (await http.get("/events", params={"after": 1})).json()
        return while_connected, after, still_serving

    with captured_log() as errors:  # uvicorn's error log
        while_connected, after, still_serving = run(server, scenario())
    assert while_connected == 1, f"a connected push client should be subscribed, {while_connected} subscriptions"
    assert after == 0, f"{after} subscriptions left after the client went away and an event was pushed"
    assert [e["text"] for e in still_serving["events"]] == ["second"]
    assert not errors, f"the server logged an error when the push client left: {errors[0].getMessage()!r}"


@check(points=2, hint="TODO 2: wrap the echo loop in try/except WebSocketDisconnect/finally: add the "
       "websocket to `clients` after accept(), and call clients.remove(websocket) in `finally`, so "
       "it runs however the connection ends: a close with any code, or a client that vanished.")
def test_task2_the_client_count_follows_every_way_of_leaving(server, app):
    clients = app.state.clients

    async def count_becomes(expected):
        return await asyncio.to_thread(clients.wait_for_count, expected, SETTLE)

    async def scenario():
        polite, vanishing, going_away = [await open_ws(server, "/echo") for _ in range(3)]
        try:
            yield "3 connected", 3, await count_becomes(3)
            await polite.close()
            yield "after a normal close", 2, await count_becomes(2)
            vanishing.transport.abort()  # no close frame: the TCP connection just ends
            yield "after a client vanished", 1, await count_becomes(1)
            await going_away.close(code=1001, reason="tab closed")
            yield "after a close with code 1001", 0, await count_becomes(0)
        finally:
            for ws in (polite, going_away):
                await ws.close()

    async def first_wrong_count():
        async for moment, expected, counted in scenario():
            if counted != expected:
                return f"{moment}: {counted} clients counted, expected {expected}"
        return None

    wrong = run(server, first_wrong_count())
    assert wrong is None, wrong


@check(points=1, hint="TODO 2: a client leaving makes receive_text() raise WebSocketDisconnect. Left "
       "uncaught, uvicorn logs it as 'Exception in ASGI application' for every departure. Catch it "
       "(and log its .code at INFO level): leaving is how every WebSocket ends.")
def test_task2_a_client_leaving_is_not_an_error(server):
    async def scenario():
        async with open_ws(server, "/echo") as ws:
            await ws.send("bye")
            await asyncio.wait_for(ws.recv(), WAIT)
        (await open_ws(server, "/echo")).transport.abort()

    with captured_log() as errors:  # uvicorn's error log
        run(server, scenario())  # stopping the server waits for both handlers to finish
    assert not errors, f"the server logged {len(errors)} error(s) when clients left: {errors[0].getMessage()!r}"


@check(points=2, hint="TODO 3: in echo_messages, when len(message.encode()) > max_message_bytes, "
       "`await websocket.close(code=1009, reason=...)` and return. A message of exactly "
       "max_message_bytes is still fine and must be echoed.")
def test_task3_an_oversized_message_closes_with_1009(server):
    async def scenario():
        return (await close_code_after_sending(server, "x" * MAX_BYTES),
                await close_code_after_sending(server, "x" * (MAX_BYTES + 1)))

    at_limit, over_limit = run(server, scenario())
    assert at_limit == ("echo", "x" * MAX_BYTES), \
        f"a message of exactly {MAX_BYTES} bytes should be echoed, got {describe(at_limit)}"
    assert over_limit[:2] == ("closed", 1009), \
        f"a message of {MAX_BYTES + 1} bytes should close with 1009, got {describe(over_limit)}"
    assert over_limit[2], "give the close a reason: the client sees it"


@check(points=1, hint="TODO 3: the limit is in bytes, and 'é' is 2 bytes in UTF-8: measure "
       "len(message.encode()), not len(message).")
def test_task3_the_limit_counts_bytes_not_characters(server):
    message = "é" * (MAX_BYTES // 2 + 1)  # fewer characters than the limit, more bytes
    outcome = run(server, close_code_after_sending(server, message))
    assert outcome[:2] == ("closed", 1009), f"{len(message.encode())} bytes in {len(message)} characters " \
        f"should close with 1009, got {describe(outcome)}"


@check(points=2, hint="TODO 4: in refuse_foreign_origin, read websocket.headers.get('origin'); if it is "
       "not in allowed_origins, `await websocket.close(code=1008)` BEFORE accept() and return True. "
       "Before accept() there is no WebSocket yet to carry a close frame, so uvicorn answers the "
       "handshake with HTTP 403 instead. An allowed origin must still get through (return False).")
def test_task4_a_foreign_origin_is_refused_before_accept(server):
    async def scenario():
        return (await handshake_status(server, "/echo", FOREIGN_ORIGIN),
                await handshake_status(server, "/echo", ORIGIN))

    foreign, allowed = run(server, scenario())
    assert foreign == 403, f"a handshake from {FOREIGN_ORIGIN} should get HTTP 403, it got {foreign}"
    assert allowed == 101, f"a handshake from the allowed {ORIGIN} should be accepted (101), it got {allowed}"


@check(points=1, hint="TODO 4: a handshake with no Origin header at all must be refused too "
       "(websocket.headers.get('origin') is None then), and the push endpoint uses the same check.")
def test_task4_missing_origin_and_the_push_endpoint_are_covered(server):
    async def scenario():
        return (await handshake_status(server, "/echo", None),
                await handshake_status(server, "/events/push", FOREIGN_ORIGIN))

    missing, push_foreign = run(server, scenario())
    assert missing == 403, f"a handshake without Origin should get HTTP 403, it got {missing}"
    assert push_foreign == 403, f"/events/push from {FOREIGN_ORIGIN} should get HTTP 403, it got {push_foreign}"
