"""Graded checks for lessons/l03_websockets.py, run against a real uvicorn server.

The clients are real `websockets` and HTTP clients: a test client calling the app in-process would
skip the HTTP handshake that the Origin check and the 403 are about, and uvicorn's keep-alive pings
and shutdown that TODO 1 is about.
"""

import asyncio
import contextlib
import json
import logging
import time

import httpx
import pytest
import websockets
from starlette import status
from websockets.asyncio.client import connect

from course.grading import check
from course.server import captured_log
from course.sseclients import open_event_stream
from course.waiting import wait_for_async
from course.wsclients import ws_url

ORIGIN = "http://localhost:8000"
FOREIGN_ORIGIN = "https://evil.example"
MAX_BYTES = 1000
WAIT = 3.0  # generous upper bound for anything to happen on a busy 2-core machine
SETTLE = 1.5  # bound for what happens at once (a subscription, a count): shorter, so stubs fail fast
MAX_PUSH_DELAY = 0.5  # a push takes milliseconds; the margin is for a busy 2-core machine
PING_INTERVAL, PING_TIMEOUT = 0.2, 0.5  # uvicorn's keep-alive pings, shortened so TODO 1's check is quick
KEEPALIVE = 0.3  # the event stream's keep-alive interval in these checks (FastAPI's default is 15 s)
GOING_AWAY = {status.WS_1001_GOING_AWAY, status.WS_1012_SERVICE_RESTART}


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
    return lesson.create_app(allowed_origins={ORIGIN}, max_message_bytes=MAX_BYTES, keepalive_seconds=KEEPALIVE)


@pytest.fixture
def server(app, live_server):
    return live_server(app)


def open_ws(server, path, origin=ORIGIN, **options):
    return connect(ws_url(server, path), origin=origin, open_timeout=WAIT, close_timeout=WAIT, **options)


def lesson_log(lesson, level=logging.WARNING):
    """Warnings and errors from uvicorn and from the lesson's own logger: a client leaving is neither."""
    return captured_log("uvicorn.error", lesson.__name__, level=level)


async def subscribers_become(app, expected, timeout=SETTLE, *clients):
    """The number of push or SSE subscriptions, once it is ``expected``, or after ``timeout`` s, or as
    soon as one of the WebSocket ``clients`` was closed by the server (it will not subscribe then)."""
    events = app.state.events
    await wait_for_async(lambda: events.subscriber_count == expected
                         or any(ws.close_code is not None for ws in clients), timeout)
    return events.subscriber_count


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


async def publish(http, *texts):
    return [(await http.post("/events", json={"text": text})).json() for text in texts]


# TODO 1: push


@check(task=1, points=2, hint="TODO 1: a push client should get each event as JSON a moment after "
       "POST /events, without asking for it. Subscribe to the event log, then send what its queue "
       "gives you as soon as it gives it.")
def test_task1_push_delivers_an_event_within_moments(server, app):
    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            async with open_ws(server, "/events/push") as ws:
                subscribed = await subscribers_become(app, 1, SETTLE, ws)
                if subscribed != 1:
                    return subscribed, None, None, None
                [posted] = await publish(http, "deploy finished")
                try:
                    pushed = await asyncio.wait_for(ws.recv(), WAIT)
                except websockets.ConnectionClosed:
                    pushed = f"nothing: the server closed with {ws.close_code} {ws.close_reason!r}"
                delay = time.time() - posted["at"]
            return subscribed, posted, pushed, delay

    subscribed, posted, pushed, delay = run(server, scenario())
    assert subscribed == 1, f"a connected push client should be subscribed, {subscribed} subscriptions"
    assert isinstance(pushed, str) and pushed.startswith("{"), f"expected the event as JSON, received {pushed}"
    assert json.loads(pushed) == posted, f"pushed {pushed}, published {posted}"
    assert delay < MAX_PUSH_DELAY, f"the event arrived {delay:.2f} s after it was published: push it at once"


@check(task=1, points=1, hint="TODO 1: when a push client closes, its subscription should end at "
       "once, not at the next event, and quietly: its close arrives as something received, so the "
       "endpoint must be reading while it waits for events, and treat the client's leaving as "
       "the normal end.")
def test_task1_a_departing_push_client_is_unsubscribed_at_once(server, app, lesson):
    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            async with open_ws(server, "/events/push") as ws:
                while_connected = await subscribers_become(app, 1, SETTLE, ws)
                if while_connected != 1:
                    return while_connected, None, None
                await publish(http, "first")
                await asyncio.wait_for(ws.recv(), WAIT)
            after = await subscribers_become(app, 0)  # no further event: the close itself must end it
            still_serving = (await http.get("/events", params={"after": 1})).json()
        return while_connected, after, still_serving

    with lesson_log(lesson) as errors:
        while_connected, after, still_serving = run(server, scenario())
    assert while_connected == 1, f"a connected push client should be subscribed, {while_connected} subscriptions"
    assert after == 0, f"{after} subscription(s) left {SETTLE} s after the client closed"
    assert still_serving == {"events": []}
    assert not errors, f"the server logged when the push client left: {errors[0].getMessage()!r}"


@check(task=1, points=2, hint="TODO 1: a push client that also sends messages must keep getting "
       "events. If the endpoint never reads, uvicorn stops reading that connection once a message "
       "waits unread, the client's answers to its keep-alive pings go unread too, and the client "
       "is cut off with 1011 (keepalive ping timeout). Receive while you send.",
       nudge="Run two things at once for this client, one waiting for events and sending them, one "
       "receiving (and ignoring) what the client sends; asyncio has a way to run both and cancel "
       "the other when one fails.")
def test_task1_a_talking_push_client_outlives_the_ping_timeout(app, live_server):
    server = live_server(app, ws_ping_interval=PING_INTERVAL, ws_ping_timeout=PING_TIMEOUT)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            async with open_ws(server, "/events/push", ping_interval=None) as ws:  # the server pings
                if await subscribers_become(app, 1, SETTLE, ws) != 1:
                    return "no subscription"
                await ws.send("hello")  # a message the endpoint has no use for
                await ws.send("still there?")
                try:  # past several ping rounds: a connection cut off ends well before this
                    await asyncio.wait_for(ws.wait_closed(), PING_INTERVAL + PING_TIMEOUT + 0.5)
                    return f"the server closed the connection: {ws.close_code} {ws.close_reason!r}"
                except TimeoutError:
                    pass
                [posted] = await publish(http, "still pushing")
                try:
                    pushed = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                except websockets.ConnectionClosed:
                    return f"the server closed the connection: {ws.close_code} {ws.close_reason!r}"
                return "ok" if pushed == posted else f"pushed {pushed}, published {posted}"

    outcome = run(server, scenario())
    assert outcome == "ok", outcome


@check(task=1, points=2, hint="TODO 1: with push clients connected and idle, stopping the server "
       "should take a moment, even with uvicorn's default (no graceful-shutdown timeout). uvicorn "
       "tells each WebSocket endpoint that it is shutting down as a received disconnect (code "
       "1012): an endpoint that never receives waits for its next event forever, and so does the "
       "shutdown. End the push loop when either side ends.")
def test_task1_shutdown_is_prompt_with_idle_push_clients(app, live_server):
    server = live_server(app, timeout_graceful_shutdown=None)  # uvicorn's default: wait as long as it takes

    async def scenario():
        clients = [await open_ws(server, "/events/push") for _ in range(2)]
        try:
            if (subscribed := await subscribers_become(app, 2, SETTLE, *clients)) != 2:
                return f"{subscribed} of 2 push clients subscribed", None, None
            started = time.monotonic()
            await asyncio.to_thread(server.stop, WAIT)  # forces the exit after WAIT s
            took = time.monotonic() - started
            codes = []
            for ws in clients:
                await asyncio.wait_for(ws.wait_closed(), WAIT)
                codes.append(ws.close_code)
            return None, took, codes
        finally:
            for ws in clients:
                ws.transport.abort()

    problem, took, codes = run(server, scenario())
    assert problem is None, problem
    assert took < WAIT - 0.5 and not server.server.force_exit, \
        f"shutdown had not finished after {took:.1f} s with 2 idle push clients: uvicorn had to force it"
    assert set(codes) <= GOING_AWAY, f"the push clients were told {codes}, expected 1001 or 1012"


# TODO 2: count echo clients


@check(task=2, points=2, hint="TODO 2: the set of echo clients must follow every way of leaving: "
       "a normal close, a close with another code, a client that vanished, and a message too big. "
       "Take the client out wherever the connection ends, not only on one of those paths.")
def test_task2_the_client_count_follows_every_way_of_leaving(server, app):
    clients = app.state.clients

    async def count_becomes(expected):
        await wait_for_async(lambda: len(clients) == expected, SETTLE)
        return len(clients)

    async def scenario():
        polite, vanishing, going_away, too_big = [await open_ws(server, "/echo") for _ in range(4)]
        try:
            yield "4 connected", 4, await count_becomes(4)
            await polite.close()
            yield "after a normal close", 3, await count_becomes(3)
            vanishing.transport.abort()  # no close frame: the TCP connection just ends
            yield "after a client vanished", 2, await count_becomes(2)
            await going_away.close(code=status.WS_1001_GOING_AWAY, reason="tab closed")
            yield "after a close with code 1001", 1, await count_becomes(1)
            await too_big.send("x" * (MAX_BYTES + 1))
            with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
                await asyncio.wait_for(too_big.recv(), WAIT)  # an echo if TODO 3 is not done yet, then we close
            await too_big.close()
            yield "after a message too big", 0, await count_becomes(0)
        finally:
            for ws in (polite, going_away, too_big):
                await ws.close()

    async def first_wrong_count():
        async for moment, expected, counted in scenario():
            if counted != expected:
                return f"{moment}: {counted} clients counted, expected {expected}"
        return None

    wrong = run(server, first_wrong_count())
    assert wrong is None, wrong


@check(task=2, points=1, hint="TODO 2: a client leaving makes receive_text() raise "
       "WebSocketDisconnect. Left uncaught, uvicorn logs 'Exception in ASGI application' for every "
       "departure; logged as a warning or an error, it buries real problems. Leaving is how every "
       "WebSocket ends: handle it, and log it at INFO level with its close code.")
def test_task2_a_client_leaving_is_not_an_error(server, lesson):
    async def scenario():
        async with open_ws(server, "/echo") as ws:
            await ws.send("bye")
            await asyncio.wait_for(ws.recv(), WAIT)
        (await open_ws(server, "/echo")).transport.abort()

    with lesson_log(lesson) as errors:
        run(server, scenario())  # stopping the server waits for both handlers to finish
    assert not errors, f"the server logged {len(errors)} warning(s) or error(s) when clients left: " \
        f"{errors[0].getMessage()!r}"


# TODO 3: a size limit per endpoint


@check(task=3, points=2, hint="TODO 3: a message over max_message_bytes must close the WebSocket with "
       "the 'message too big' close code and a reason the client can read, and the endpoint must "
       "stop there (sending on a closed WebSocket is an error). A message of exactly "
       "max_message_bytes is still fine and must be echoed.")
def test_task3_an_oversized_message_closes_with_1009(server, lesson):
    async def scenario():
        return (await close_code_after_sending(server, "x" * MAX_BYTES),
                await close_code_after_sending(server, "x" * (MAX_BYTES + 1)))

    with lesson_log(lesson, level=logging.ERROR) as errors:
        at_limit, over_limit = run(server, scenario())
    assert at_limit == ("echo", "x" * MAX_BYTES), \
        f"a message of exactly {MAX_BYTES} bytes should be echoed, got {describe(at_limit)}"
    assert over_limit[:2] == ("closed", status.WS_1009_MESSAGE_TOO_BIG), \
        f"a message of {MAX_BYTES + 1} bytes should close with 1009, got {describe(over_limit)}"
    assert over_limit[2], "give the close a reason: the client sees it"
    assert not errors, f"the server logged an error after the 1009 close: {errors[0].getMessage()!r}"


@check(task=3, points=1, hint="TODO 3: the limit is in bytes, and 'é' is 2 bytes in UTF-8: "
       "a message of fewer characters than the limit can still be too big. Measure its encoded size.")
def test_task3_the_limit_counts_bytes_not_characters(server):
    message = "é" * (MAX_BYTES // 2 + 1)  # fewer characters than the limit, more bytes
    outcome = run(server, close_code_after_sending(server, message))
    assert outcome[:2] == ("closed", status.WS_1009_MESSAGE_TOO_BIG), \
        f"{len(message.encode())} bytes in {len(message)} characters should close with 1009, got {describe(outcome)}"


# TODO 4: the Origin rule


@check(task=4, points=2, hint="TODO 4: a handshake whose Origin is not allowed must be refused "
       "before accept(), with the policy-violation close code. Before accept() there is no WebSocket "
       "yet to carry a close frame, so uvicorn answers the handshake with HTTP 403 instead. An "
       "allowed origin must still get through, on both WebSocket endpoints.")
def test_task4_a_foreign_origin_is_refused_before_accept(server):
    async def scenario():
        return {(path, origin): await handshake_status(server, path, origin)
                for path in ("/echo", "/events/push") for origin in (FOREIGN_ORIGIN, ORIGIN)}

    statuses = run(server, scenario())
    expected = {(path, origin): 403 if origin == FOREIGN_ORIGIN else 101 for path, origin in statuses}
    wrong = [f"{path} from {origin}: {got}, expected {expected[path, origin]}"
             for (path, origin), got in statuses.items() if got != expected[path, origin]]
    assert not wrong, "; ".join(wrong)


LOOKALIKES = (
    "http://localhost:8000.evil.example",  # starts with the allowed origin
    "http://localhost:800",  # a part of it
    "http://localhost",  # another origin (port 80) on the same host
    "https://localhost:8000",  # another scheme
    "http://localhost:80001",
)


@check(task=4, points=2, hint="TODO 4: an origin is allowed only if it is exactly one of the allowed "
       "origins. A page on http://localhost:8000.evil.example is on evil.example; http://localhost "
       "(port 80) is another origin than http://localhost:8000. Comparing prefixes or parts of the "
       "text lets them in.")
def test_task4_only_an_exact_origin_gets_in(server):
    async def scenario():
        return {origin: await handshake_status(server, "/echo", origin) for origin in LOOKALIKES}

    statuses = run(server, scenario())
    let_in = [origin for origin, got in statuses.items() if got != 403]
    assert not let_in, f"accepted handshakes from {', '.join(let_in)}: only {ORIGIN} is allowed"


@check(task=4, points=1, hint="TODO 4: a handshake without an Origin header comes from something "
       "that is not a browser. It is allowed exactly when None is one of the allowed origins: "
       "refused by an app that does not list None, accepted by one that does.")
def test_task4_a_missing_origin_is_allowed_only_when_none_is_listed(lesson, live_server):
    strict = live_server(lesson.create_app(allowed_origins={ORIGIN}))
    open_to_scripts = live_server(lesson.create_app(allowed_origins={ORIGIN, None}))

    async def scenario():
        return (await handshake_status(strict, "/echo", None),
                await handshake_status(open_to_scripts, "/echo", None),
                await handshake_status(open_to_scripts, "/echo", FOREIGN_ORIGIN))

    try:
        missing_strict, missing_open, foreign_open = asyncio.run(scenario())
    finally:
        open_to_scripts.stop()
        strict.stop()
    assert missing_strict == 403, \
        f"no Origin, allowed_origins without None: expected HTTP 403, got {missing_strict}"
    assert missing_open == 101, \
        f"no Origin, allowed_origins with None: expected the handshake accepted (101), got {missing_open}"
    assert foreign_open == 403, f"{FOREIGN_ORIGIN} with None allowed: expected HTTP 403, got {foreign_open}"


# TODO 5: server-sent events


async def sse_outcome(stream, count):
    """The next ``count`` data events as (id, data dict), or a sentence saying what came instead."""
    got = []
    for _ in range(count):
        try:
            block = await stream.next_event(WAIT)
        except TimeoutError:
            return got, f"waited {WAIT} s for event {len(got) + 1} of {count}"
        if block is None:
            return got, f"the server ended the stream after {len(got)} of {count} events"
        got.append((block.id, json.loads(block.data)))
    return got, None


def as_sse(events):
    return [(str(event["id"]), event) for event in events]


@check(task=5, points=2, hint="TODO 5: GET /events/stream should send each new event as a server-sent "
       "event, in order, as it is published: the event as its data, its id as the event's id (the "
       "id is what a reconnecting browser sends back). A first connection, without Last-Event-ID, "
       "gets the events published from then on, not the old ones.")
def test_task5_the_stream_sends_each_event_in_order_with_its_id(server, app):
    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            await publish(http, "before anyone listened")
            async with open_event_stream(f"{server.url}/events/stream", timeout=WAIT) as stream:
                if (subscribed := await subscribers_become(app, 1)) != 1:
                    return None, [], f"{subscribed} subscriptions while a client streams"
                posted = await publish(http, "one", "two", "three")
                got, problem = await sse_outcome(stream, 3)
                return posted, got, problem

    posted, got, problem = run(server, scenario())
    assert problem is None, f"{problem}; received {got}"
    assert got == as_sse(posted), f"received (id, data) {got}, published {as_sse(posted)}"


@check(task=5, points=2, hint="TODO 5: a client reconnecting with Last-Event-ID: N must first get "
       "every event after N that it missed, then the new ones: none skipped, none twice. Start "
       "listening for new events before you read the missed ones, or what is published in between "
       "is lost.")
def test_task5_a_reconnect_resumes_after_last_event_id(server, app):
    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            posted = await publish(http, *(f"event {n}" for n in range(1, 6)))
            async with open_event_stream(f"{server.url}/events/stream", last_event_id=2,
                                         timeout=WAIT) as stream:
                missed, problem = await sse_outcome(stream, 3)
                if problem:
                    return posted, missed, problem
                if (subscribed := await subscribers_become(app, 1)) != 1:
                    return posted, missed, f"{subscribed} subscriptions after the missed events were sent"
                posted += await publish(http, "event 6")
                new, problem = await sse_outcome(stream, 1)
                return posted, missed + new, problem

    posted, got, problem = run(server, scenario())
    expected = as_sse(posted[2:])
    assert problem is None, f"with Last-Event-ID: 2, {problem}; received {got}, expected {expected}"
    assert got == expected, f"with Last-Event-ID: 2, received {got}, expected {expected}"


@check(task=5, points=2, hint="TODO 5: while no event comes, the stream should send a comment (a "
       "server-sent event with only a comment) every keepalive_seconds, so that proxies keep it open "
       "and a client that left is noticed; and an event published after a keep-alive must still "
       "arrive.")
def test_task5_an_idle_stream_sends_keepalive_comments(server, app):
    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            async with open_event_stream(f"{server.url}/events/stream", timeout=WAIT) as stream:
                started = time.perf_counter()
                comments = []
                with contextlib.suppress(TimeoutError):
                    while len(comments) < 2:
                        block = await stream.next(4 * KEEPALIVE)
                        if block is None or not block.is_comment:
                            return comments, None, f"instead of a keep-alive: {block}"
                        comments.append(block.arrived - started)
                if len(comments) < 2:
                    return comments, None, f"{len(comments)} keep-alive(s), then nothing for {4 * KEEPALIVE:.1f} s"
                [posted] = await publish(http, "after the silence")
                got, problem = await sse_outcome(stream, 1)
                return comments, (got, posted), problem

    comments, delivered, problem = run(server, scenario())
    assert problem is None, f"with keepalive_seconds={KEEPALIVE}: {problem}"
    assert comments[0] < 3 * KEEPALIVE, f"the first keep-alive came after {comments[0]:.2f} s"
    got, posted = delivered
    assert got == as_sse([posted]), f"after the keep-alives, received {got}, published {as_sse([posted])}"
