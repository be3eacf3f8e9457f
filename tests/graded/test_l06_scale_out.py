"""Graded checks for lessons/l06_scale_out.py: a real ``uvicorn --workers 2`` in a child process,
on a real private redis-server (course.redis_server), with real WebSocket clients.

Which worker holds which client is read from the outside (course.relay.workers_of), so the
checks can make sure both workers have clients. The server is shared by the checks of this file;
Redis is emptied before each check (the ``redis_url`` fixture).
"""

import asyncio
import contextlib
import os
import time

import pytest
import redis.asyncio as aioredis
from websockets.exceptions import InvalidStatus

from course.children import serve_in_child
from course.grading import check
from course.relay import close_all, counts, feed, open_on_workers, relays_ready, texts, wait_all
from course.waiting import wait_for_async
from course.wsclients import Listener, stuck_client, ws_url

ALLOWED = "http://localhost:8000"
DELIVERY_WAIT = 2.0  # generous for two processes on a loaded machine; a stub run waits this out
STREAM = "course:l06:feed"  # the contract's stream name (the lesson's STREAM)


def run(scenario, timeout=40):
    asyncio.run(asyncio.wait_for(scenario, timeout))


@pytest.fixture(scope="module")
def server(lesson, redis_server):
    child = serve_in_child(f"{lesson.__name__}:create_app", name="l06-graded", workers=2,
                           factory_kwargs={"redis_url": redis_server.url, "allowed_origins": [ALLOWED]},
                           timeout_graceful_shutdown=1)
    asyncio.run(relays_ready(child, timeout=20))  # both workers up (their lifespans ran), whatever the relay does
    yield child
    child.stop()


@pytest.fixture
def url(server, redis_url):
    return ws_url(server)


def stream_key(lesson):
    return getattr(lesson, "STREAM", STREAM)


def id_key(entry_id):
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


async def both_workers(url, server, per_worker=2):
    """Clients named c0, c1, ... with at least ``per_worker`` on each worker."""
    listeners = []
    for attempt in range(3):
        listeners, pids = await open_on_workers(url, server, per_worker=per_worker, origin=ALLOWED)
        if len({pid for pid in pids if pid}) >= 2:
            return listeners
        await close_all(listeners)
    pytest.fail(f"could not place clients on both workers (landed on {pids})")


def assert_same_feed(listeners, expected_count):
    feeds = [[m for m in feed(listener) if "id" in m] for listener in listeners]
    first = feeds[0]
    assert len(first) == expected_count, f"client 0 got {len(first)} of {expected_count} messages"
    for index, other in enumerate(feeds[1:], 1):
        assert other == first, (f"client {index} got a different feed than client 0: "
                                f"{[m.get('id') for m in other][:5]}... vs {[m.get('id') for m in first][:5]}...")
    ids = [m["id"] for m in first]
    assert all(isinstance(i, str) for i in ids), f"ids must be strings: {ids[:3]}"
    keys = [id_key(i) for i in ids]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), f"ids do not increase: {ids[:10]}"
    return first


@check(task=2, points=4, hint="Every worker must deliver every message, whichever worker it was sent to: "
       "each worker follows the one stream from the last id it has seen and hands each entry to its own "
       "manager. If clients of one worker miss what the other's clients say, the messages do not go "
       "through Redis (or nobody reads it back); if some are missing or repeated, check how the last id moves.",
       nudge="Publish with XADD, follow with a blocking XREAD that starts after self.last_id, and update "
             "self.last_id after each entry you broadcast.")
def test_task1_2_every_client_on_every_worker_gets_every_message_in_order(lesson, server, url):
    async def scenario():
        clients = await both_workers(url, server)
        try:
            for round_ in range(6):
                for index, client in enumerate(clients):
                    await client.send(f"c{index}-m{round_}")
            expected = 6 * len(clients)
            delivered = await wait_all(clients, expected, DELIVERY_WAIT)
            assert delivered, f"messages per client (clients on two workers): {counts(clients)} of {expected}"
            first = assert_same_feed(clients, expected)
            got = [m["text"] for m in first]
            for index in range(len(clients)):
                mine = [t.split(": ", 1)[1] for t in got if t.split(": ", 1)[1].startswith(f"c{index}-m")]
                assert mine == [f"c{index}-m{r}" for r in range(6)], f"client {index}'s messages arrived as {mine}"
            assert all(": " in t for t in got), f"texts must read '<name>: <text>': {got[:3]}"
        finally:
            await close_all(clients)

    run(scenario())


@check(task=1, points=2, hint="The stream must stay bounded yet keep at least the last 1000 messages: "
       "let Redis trim it as it adds each entry, approximately, to about KEEP entries. A stream that grows "
       "for ever fills Redis' memory; one trimmed too hard cannot serve a client that was away.",
       nudge="XADD accepts a maximum length and an 'approximate' flag.")
def test_task1_publish_keeps_the_last_1000_and_no_more_than_about_that(lesson, redis_url):
    async def scenario():
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            ids = [await lesson.publish(client, f"bob: {n}") for n in range(1500)]
            length = await client.xlen(stream_key(lesson))
            newest = await client.xrevrange(stream_key(lesson), count=1)
        finally:
            await client.aclose()
        assert length > 0, "publish() added nothing to the stream"
        assert newest and newest[0][0] == ids[-1], f"publish() must return the new entry's id: {ids[-1]!r}"
        assert newest[0][1].get("text") == "bob: 1499", f"the entry's text field: {newest[0][1]}"
        assert length >= 1000, f"after 1500 messages the stream kept only {length}: at least 1000 must stay"
        assert length <= 1300, f"after 1500 messages the stream holds {length}: it is not trimmed"

    run(scenario())


@check(task=4, points=4, hint="A client that reconnects with ?after=<id> must first get every kept message "
       "after that id (not that one again, not only the first page), then the live ones, with nothing "
       "lost in between although messages keep arriving while it catches up.",
       nudge="Page through XRANGE with an exclusive start, and keep going until your position has reached "
             "the relay's last id, which can move while you send.")
def test_task4_resume_after_an_id_no_gap_no_duplicate(lesson, server, url, redis_url):
    async def scenario():
        direct = aioredis.Redis.from_url(redis_url, decode_responses=True)
        key = stream_key(lesson)
        resumed = None
        watcher = await Listener.open(url + "?name=watcher", origin=ALLOWED)
        try:
            async with direct.pipeline(transaction=False) as pipe:
                for n in range(1100):
                    pipe.xadd(key, {"text": f"old: {n}"})
                ids = await pipe.execute()
            assert await watcher.wait_for(1, DELIVERY_WAIT), "a live client got none of the messages added to the stream"
            assert await watcher.wait_for(1100, DELIVERY_WAIT * 2), (
                f"a live client got {len(watcher.messages)} of 1100 messages added to the stream")
            after = ids[40]

            keep_going = True

            async def chatter():  # messages keep arriving while the client catches up
                n = 0
                while keep_going:
                    await direct.xadd(key, {"text": f"new: {n}"})
                    n += 1
                    await asyncio.sleep(0.002)

            chat = asyncio.create_task(chatter())
            await asyncio.sleep(0.05)
            resumed = await Listener.open(f"{url}?name=back&after={after}", origin=ALLOWED)
            await asyncio.sleep(0.3)
            keep_going = False
            await chat
            await watcher.send("last one")
            heard = await wait_for_async(lambda: texts(watcher)[-1:] == ["watcher: last one"], DELIVERY_WAIT)
            assert heard, f"a live message did not come back: {watcher.messages[-1:]}"
            # The watcher, live all along, got everything (the stream itself is trimmed by now).
            expected = [m["id"] for m in feed(watcher) if "id" in m and id_key(m["id"]) > id_key(after)]
            await resumed.wait_for(len(expected), DELIVERY_WAIT * 2)
            got = [m.get("id") for m in feed(resumed)]
            assert got[:1] != [after], "the message with id `after` itself was sent again"
            missing = sorted(set(expected) - set(got), key=id_key)
            assert not missing, (f"the resumed client missed {len(missing)} of {len(expected)} messages, "
                                 f"first {missing[:3]} (got {len(got)})")
            assert got == expected, (f"the resumed client's ids are not the stream's, in order, once each: "
                                     f"{len(got)} received, {len(expected)} expected, "
                                     f"{len(got) - len(set(got))} duplicates")
            assert texts(resumed)[-1].endswith("last one"), f"the live message came last: {texts(resumed)[-2:]}"
        finally:
            await close_all([c for c in (watcher, resumed) if c is not None])
            await direct.aclose()

    run(scenario())


@check(task=3, points=4, hint="After Redis restarts, each worker's relay must try again, waiting a little "
       "longer each time (with some randomness), and read on from the last id it saw, so that what was "
       "published while it was away is not skipped. Clients should not notice beyond a short pause.",
       nudge="Catch the Redis errors inside a loop around finding the resume point and following; sleep a "
             "growing, capped, jittered delay; never go back to 'only new messages' after a failure.")
def test_task3_redis_restart_delivery_resumes_within_5_s_without_reconnecting(lesson, server, url, redis_server):
    async def scenario():
        clients = await both_workers(url, server)
        try:
            await clients[0].send("before")
            assert await wait_all(clients, 1, DELIVERY_WAIT), f"before the restart: {counts(clients)}"
            await asyncio.to_thread(redis_server.restart, 1.5)  # same port, empty: no persistence
            back = time.perf_counter()
            with redis_server.client() as direct:  # another worker publishing while the relays reconnect
                direct.xadd(stream_key(lesson), {"text": "other: while you were away"})
            delivered = await wait_all(clients, 2, 5.0)
            took = time.perf_counter() - back
            assert delivered, (f"5 s after Redis came back, messages per client: {counts(clients)} of 2 "
                               f"(the one published as Redis came back did not arrive)")
            assert all(client.is_open for client in clients), "clients were disconnected by the restart"
            await clients[-1].send("after")
            assert await wait_all(clients, 3, DELIVERY_WAIT), f"after the restart: {counts(clients)} of 3"
            assert_same_feed(clients, 3)
            assert took < 5.0, f"delivery resumed {took:.1f} s after Redis came back"
        finally:
            await close_all(clients)

    run(scenario())


@check(task=3, points=1, hint="A Redis restarted without persistence comes back with an empty stream, and its "
       "new entries may have ids below the last id the relay saw (a clock set back, ids given by hand). After "
       "each reconnect, ask where to read from (the lesson's resume point) instead of always reusing the last id.")
def test_task3_a_stream_lost_in_a_restart_is_read_from_its_start(lesson, server, url, redis_server):
    async def scenario():
        clients = await both_workers(url, server, per_worker=1)
        try:
            await clients[0].send("before")
            assert await wait_all(clients, 1, DELIVERY_WAIT), f"before the restart: {counts(clients)}"
            await asyncio.to_thread(redis_server.restart, 0.5)
            with redis_server.client() as direct:  # an entry older than anything the relays saw
                direct.xadd(stream_key(lesson), {"text": "clock: set back"}, id="5-0")
            got = await wait_all(clients, 2, 5.0)
            assert got, (f"an entry with a lower id in the new stream never arrived: {counts(clients)} messages "
                         f"per client")
            assert all(feed(c)[1] == {"id": "5-0", "text": "clock: set back"} for c in clients), (
                f"got {[feed(c)[1:] for c in clients]}")
        finally:
            await close_all(clients)

    run(scenario())


@check(task=1, points=2, hint="A message sent while Redis is down must not vanish: either it is delivered "
       "when Redis is back, or its sender is told ({\"error\": ...}). Do not swallow Redis' error in publish(): "
       "the endpoint reports it.")
def test_task1_a_message_sent_while_redis_is_down_is_delivered_later_or_reported(lesson, server, url,
                                                                                redis_server):
    async def scenario():
        clients = await both_workers(url, server, per_worker=1)
        sender = clients[0]
        try:
            await sender.send("hello")
            assert await wait_all(clients, 1, DELIVERY_WAIT), f"before Redis stopped: {counts(clients)}"
            await asyncio.to_thread(redis_server.stop)
            await sender.send("anyone there?")
            await sender.wait_for(2, 3.0)
            await asyncio.to_thread(redis_server.start)
            assert await relays_ready(server), "the relays did not reach Redis again within 8 s"
            reported = any("error" in m and isinstance(m["error"], str) for m in feed(sender))
            delivered = not reported and await wait_all(clients, 2, 5.0) and all(
                any(t.endswith("anyone there?") for t in texts(c)) for c in clients)
            assert reported or delivered, (f"the message sent while Redis was down was neither delivered "
                                           f"nor reported to its sender; the sender got {sender.messages[-2:]}")
            heard = lambda: all(any(t.endswith(": back") for t in texts(c)) for c in clients)  # noqa: E731
            await clients[-1].send("back")
            assert await wait_for_async(heard, 5.0), f"after Redis came back: {[texts(c)[-2:] for c in clients]}"
        finally:
            if not redis_server.running:
                redis_server.start()
            await close_all(clients)

    run(scenario())


@check(task=2, points=2, hint="A client that stops reading must not hold up the others: hand every entry "
       "to lesson 4's manager (its broadcast never waits for a client) instead of sending to clients yourself.")
def test_task2_a_client_that_does_not_read_does_not_slow_the_others(lesson, server, url):
    async def scenario():
        clients = await both_workers(url, server, per_worker=1)
        payload = os.urandom(12_000).hex()  # incompressible: the listeners negotiate deflate
        try:
            await clients[0].send("probe")
            assert await wait_all(clients, 1, DELIVERY_WAIT), f"nothing delivered at all: {counts(clients)}"
            async with stuck_client(url, origin=ALLOWED):
                started = time.perf_counter()
                for n in range(80):
                    await clients[0].send(f"{n} {payload}")
                delivered = await wait_all(clients, 81, 8.0)
                took = time.perf_counter() - started
            assert delivered, f"healthy clients got {counts(clients)} of 81 while one client did not read"
            assert took < 8.0, f"healthy clients needed {took:.1f} s for 80 messages"
        finally:
            await close_all(clients)

    run(scenario())


@check(task=2, points=1, hint="A handshake from a foreign Origin must be refused before accept() "
       "(lesson 3's rule), while an allowed one joins the feed and hears itself.")
def test_task2_foreign_origin_refused_allowed_origin_hears_itself(server, url):
    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            await Listener.open(url, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            await Listener.open(url, origin=ALLOWED + ".evil.example")
        friend = await Listener.open(url + "?name=friend", origin=ALLOWED)
        try:
            await friend.send("hi")
            assert await friend.wait_for(1, DELIVERY_WAIT), "an allowed client did not hear its own message"
            assert texts(friend) == ["friend: hi"], f"got {friend.messages}"
        finally:
            await friend.close()

    run(scenario())
